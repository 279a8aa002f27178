//! Local caches: the inode table (what is known about keys, and until when) and the on-disk
//! data cache (blocks of object content).

pub mod data;
pub mod inode;
