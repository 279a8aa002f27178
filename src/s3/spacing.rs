//! Copies spaced from the write before them on the same key.
//!
//! Some servers order the versions of an object by a clock of millisecond resolution and let a
//! copy that lands in the same millisecond as the write before it lose to that write. Garage
//! 2.5, measured through the mount: `mkfifo` (a PUT) then `touch -h -d` (a metadata self-copy,
//! sent within the millisecond) kept the PUT's metadata for 60 of 300 FIFOs — the copy said
//! done, and the mtime was gone at the next mount; with 3 ms between them, 0 of 300. The same
//! goes for `chmod` right after the `close` that uploaded a file (`cp -p`, `rsync`), and for a
//! change right after a rename's copy. A delete is such a write too: `mv a T; mv T a; mv b T`
//! (xfstests generic/736) copied `b` onto `T` within the millisecond of the delete of `T`, the
//! delete won, and the next rename found `T` gone — after `b` had been deleted. So a copy onto
//! a key is sent at least [`SPACING`] after the last write or delete of that key this process
//! saw complete; only copies wait, at most that long, and only when they follow a write that
//! closely.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The least time between a completed write of a key and a copy onto it.
pub const SPACING: Duration = Duration::from_millis(2);

/// Keys remembered before the ones older than [`SPACING`] are dropped.
const PRUNE_ABOVE: usize = 1024;

/// When each key was last written (recently), shared by a bucket's clones.
#[derive(Debug, Default)]
pub struct RecentWrites {
    at: Mutex<HashMap<String, Instant>>,
}

impl RecentWrites {
    /// `key` was just written (a PUT, a copy, a multipart completion or a delete succeeded).
    pub fn written(&self, key: &str) {
        let mut at = self.at.lock();
        if at.len() >= PRUNE_ABOVE {
            at.retain(|_, t| t.elapsed() < SPACING);
        }
        at.insert(key.to_string(), Instant::now());
    }

    /// How long a copy onto `key` must wait now (zero if its last write is old enough).
    pub fn wait_for(&self, key: &str) -> Duration {
        self.at
            .lock()
            .get(key)
            .map_or(Duration::ZERO, |t| SPACING.saturating_sub(t.elapsed()))
    }

    /// Whether a write of `key` is remembered (for tests: [`Self::wait_for`] depends on time).
    #[cfg(test)]
    pub fn remembers(&self, key: &str) -> bool {
        self.at.lock().contains_key(key)
    }

    /// Wait until a copy onto `key` may be sent.
    pub fn space(&self, key: &str) {
        let wait = self.wait_for(key);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_right_after_a_write_of_its_key_waits_the_rest_of_the_spacing() {
        let r = RecentWrites::default();
        assert_eq!(r.wait_for("k"), Duration::ZERO, "never written");
        r.written("k");
        let w = r.wait_for("k");
        assert!(w > Duration::ZERO && w <= SPACING, "{w:?}");
        assert_eq!(r.wait_for("other"), Duration::ZERO, "per key");
        let t = Instant::now();
        r.space("k");
        assert!(t.elapsed() >= w, "waited");
        assert_eq!(r.wait_for("k"), Duration::ZERO);
    }

    #[test]
    fn old_entries_are_dropped_once_many_keys_were_written() {
        let r = RecentWrites::default();
        for i in 0..PRUNE_ABOVE {
            r.written(&format!("k{i}"));
        }
        std::thread::sleep(SPACING);
        r.written("last");
        assert_eq!(r.at.lock().len(), 1);
    }
}
