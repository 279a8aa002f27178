//! Local caches: the inode table (what is known about keys, and until when; the values it holds
//! are in `values`) and the on-disk data cache (blocks of object content), with what it admits
//! ([`policy`]) and its write-behind queue ([`writer`]); symlink targets already read
//! ([`symlinks`]).

pub mod data;
pub mod inode;
pub mod policy;
pub mod symlinks;
pub mod values;
pub mod writer;
