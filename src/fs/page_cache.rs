//! What the kernel's page cache holds of each file: which object version its pages came from.
//!
//! The kernel keeps a file's pages across `close` and `open`, but drops them at every `open`
//! unless the reply says `FOPEN_KEEP_CACHE`. Kept blindly, they could be of a version the
//! server no longer has; dropped always, every re-read goes through FUSE again. So each inode
//! remembers the ETag of the version its pages were filled from, and an `open` keeps them only
//! when it reads that same version — the ETag seen at open, revalidated by a HEAD once the
//! attributes are older than the metadata TTL (close-to-open consistency): a changed object
//! has a new ETag, and its first open drops the pages.
//!
//! Pages that may hold anything else than a version on the server — the file was written or
//! truncated through the mount, or opened while it had local changes — belong to no version
//! ([`KernelPages::changed`]): the next `open` drops them. So does the first `open` of an
//! inode, and of an object without an ETag. When the kernel forgets an inode, its pages go with
//! it ([`KernelPages::forget`]).

use std::collections::HashMap;

use parking_lot::Mutex;

/// Inode → ETag of the version the kernel's pages of it came from.
#[derive(Debug, Default)]
pub struct KernelPages {
    by_ino: Mutex<HashMap<u64, String>>,
}

impl KernelPages {
    /// `ino` is opened to read version `etag` (`None`: no version on the server, or local
    /// content). True if the kernel may keep the pages it has (they are of that version); from
    /// now on its pages are of `etag`.
    pub fn open(&self, ino: u64, etag: Option<&str>) -> bool {
        let mut map = self.by_ino.lock();
        match etag {
            Some(e) => match map.insert(ino, e.to_string()) {
                Some(had) => had == e,
                None => false,
            },
            None => {
                map.remove(&ino);
                false
            }
        }
    }

    /// The content of `ino` changed through the mount (or it has local changes): its pages are
    /// of no version on the server.
    pub fn changed(&self, ino: u64) {
        self.by_ino.lock().remove(&ino);
    }

    /// The kernel forgot `ino`, and its pages with it.
    pub fn forget(&self, ino: u64) {
        self.by_ino.lock().remove(&ino);
    }

    /// How many inodes have pages of a known version (for tests and status).
    pub fn len(&self) -> usize {
        self.by_ino.lock().len()
    }

    /// True if no inode has pages of a known version.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_kept_only_for_the_version_they_came_from() {
        let k = KernelPages::default();
        assert!(!k.open(1, Some("e1")), "first open: nothing to keep");
        assert!(k.open(1, Some("e1")), "same version: keep");
        assert!(!k.open(1, Some("e2")), "changed on the server: drop");
        assert!(k.open(1, Some("e2")));
        assert!(!k.open(2, Some("e2")), "another inode has its own pages");
        // Written through the mount: no version's pages any more.
        k.changed(1);
        assert!(!k.open(1, Some("e2")));
        assert!(k.open(1, Some("e2")));
        // Opened with local changes: dropped, and not kept by the open after it either.
        assert!(!k.open(1, None));
        assert!(!k.open(1, Some("e2")));
        // Forgotten by the kernel.
        k.forget(1);
        k.forget(2);
        assert!(k.is_empty());
        assert!(!k.open(1, Some("e2")));
    }
}
