//! Local caches: the inode table (what is known about keys, and until when).

pub mod inode;
