//! Local caches: the inode table (what is known about keys, and until when; the values it holds
//! are in `values`) and the on-disk data cache (blocks of object content).

pub mod data;
pub mod inode;
pub mod values;
