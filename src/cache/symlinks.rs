//! Symlink targets already read. A symlink is an object whose body is its target, so the
//! target changes only with the object's ETag: kept by key and ETag, `readlink` — which the
//! kernel calls at every path resolution through the link and for every link of an `ls -l`,
//! since the mount does not let it cache targets — is answered without a GET while the inode
//! table's ETag for the key is the one read. A target under an older ETag is never served.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

/// How many targets are kept (the least recently used goes first): at most 4 KiB each, so a
/// few MiB at worst, and the links a program keeps resolving stay.
const CAPACITY: usize = 2048;

/// A target, with the ETag of the object it was read from.
type Versioned = (String, Box<[u8]>);

/// Symlink targets by key, each with the ETag of the object it was read from.
pub struct SymlinkTargets {
    targets: Mutex<LruCache<String, Versioned>>,
}

impl Default for SymlinkTargets {
    fn default() -> Self {
        let cap = NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN);
        SymlinkTargets {
            targets: Mutex::new(LruCache::new(cap)),
        }
    }
}

impl std::fmt::Debug for SymlinkTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymlinkTargets").finish_non_exhaustive()
    }
}

impl SymlinkTargets {
    /// The target of `key` as its version `etag` holds it, if read before.
    pub fn get(&self, key: &str, etag: &str) -> Option<Vec<u8>> {
        let mut t = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        match t.get(key) {
            Some((e, target)) if e == etag => Some(target.to_vec()),
            _ => None,
        }
    }

    /// Keep `target`, read from the version `etag` of `key` (in place of any other version's).
    pub fn put(&self, key: &str, etag: &str, target: &[u8]) {
        let mut t = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        t.put(key.to_string(), (etag.to_string(), target.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_served_only_for_the_version_it_was_read_from() {
        let s = SymlinkTargets::default();
        assert_eq!(s.get("l", "e1"), None);
        s.put("l", "e1", b"../a");
        assert_eq!(s.get("l", "e1").as_deref(), Some(&b"../a"[..]));
        assert_eq!(s.get("l", "e2"), None);
        s.put("l", "e2", b"../b");
        assert_eq!(s.get("l", "e1"), None);
        assert_eq!(s.get("l", "e2").as_deref(), Some(&b"../b"[..]));
        assert_eq!(s.get("m", "e2"), None);
    }

    #[test]
    fn the_least_recently_used_target_goes_first() {
        let s = SymlinkTargets::default();
        for i in 0..=CAPACITY {
            s.put(&format!("l{i}"), "e", b"t");
        }
        assert_eq!(s.get("l0", "e"), None);
        assert!(s.get(&format!("l{CAPACITY}"), "e").is_some());
    }
}
