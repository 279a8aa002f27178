//! Readers and the mount's own copies: a read never fails because this mount moved its object.
//!
//! Some changes the mount makes copy an object without changing its bytes: a metadata change
//! (`setxattr`, `chmod`, `utimes` on a closed file: a self-copy) and a rename (a copy to the new
//! key, then a delete). The copy may get a new ETag — a copy of a multipart object always does
//! — and the source key of a rename disappears. Reads are pinned to the key and ETag seen at
//! open (`If-Match`), so after such a copy the mount re-pins its open files to the copy
//! (`S3Fs::open_readers_follow`, after the inode table learnt the new ETag and key). That cannot
//! be atomic with the copy on the server: a ranged GET in flight while the copy lands — the
//! reader's own, or a read-ahead part — meets a 412 (or a 404 at a renamed source), and the
//! reader holds its file while it waits for that GET, so the re-pinning comes too late for it.
//!
//! So each such copy is registered here, with the keys it touches (a file's source and
//! destination keys, or a directory's two prefixes ending in `/`), from before the copy is
//! sent until the open files have been re-pinned. A read that fails lets go of its file and
//! waits ([`OwnCopies::wait_for`]) for the copies in flight that cover its key; then, if its
//! file's key or ETag moved meanwhile, it tries again (the bytes are the same: only a copy of
//! the version it was pinned to re-pins it; `S3Fs::read`). A change made by another client
//! moves nothing, so it still fails the read (EIO, documented), as before.

use parking_lot::{Condvar, Mutex};

use super::gate::covers;

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Copies in flight: id and the keys (or `dir/` prefixes) they touch.
    in_flight: Vec<(u64, Vec<String>)>,
}

/// The copies this mount has in flight (see the module documentation).
#[derive(Debug, Default)]
pub struct OwnCopies {
    state: Mutex<State>,
    done: Condvar,
}

impl OwnCopies {
    /// Register a copy touching `keys` (keys, or directory prefixes ending in `/`); it is in
    /// flight until the returned guard is dropped, which is after the open files are re-pinned.
    pub fn begin(&self, keys: &[&str]) -> CopyInFlight<'_> {
        let mut g = self.state.lock();
        g.next_id += 1;
        let id = g.next_id;
        g.in_flight
            .push((id, keys.iter().map(|k| k.to_string()).collect()));
        CopyInFlight { copies: self, id }
    }

    /// True if a copy in flight covers `key`.
    pub fn any_for(&self, key: &str) -> bool {
        let g = self.state.lock();
        g.in_flight
            .iter()
            .any(|(_, keys)| keys.iter().any(|k| covers(k, key)))
    }

    /// Wait until the copies now in flight that cover `key` are over (not for copies begun
    /// later, so a stream of them cannot hold a reader forever). True if there were any.
    pub fn wait_for(&self, key: &str) -> bool {
        let mut g = self.state.lock();
        let waited: Vec<u64> = g
            .in_flight
            .iter()
            .filter(|(_, keys)| keys.iter().any(|k| covers(k, key)))
            .map(|(id, _)| *id)
            .collect();
        while g.in_flight.iter().any(|(id, _)| waited.contains(id)) {
            self.done.wait(&mut g);
        }
        !waited.is_empty()
    }
}

/// A copy in flight (see [`OwnCopies::begin`]).
#[derive(Debug)]
pub struct CopyInFlight<'a> {
    copies: &'a OwnCopies,
    id: u64,
}

impl Drop for CopyInFlight<'_> {
    fn drop(&mut self) {
        let mut g = self.copies.state.lock();
        g.in_flight.retain(|(id, _)| *id != self.id);
        drop(g);
        self.copies.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_reader_waits_only_for_copies_covering_its_key() {
        let copies = OwnCopies::default();
        assert!(!copies.wait_for("d/f"), "nothing in flight");
        let over = AtomicBool::new(false);
        std::thread::scope(|s| {
            let copy = copies.begin(&["d/", "e/"]);
            let other = copies.begin(&["x/f"]);
            // Keys no copy covers never wait.
            assert!(!copies.wait_for("dx/f"));
            assert!(!copies.wait_for("x/f2"));
            let reader = s.spawn(|| (copies.wait_for("e/sub/f"), over.load(Ordering::SeqCst)));
            std::thread::sleep(std::time::Duration::from_millis(50));
            over.store(true, Ordering::SeqCst);
            drop(copy);
            let (waited, after) = reader.join().unwrap();
            assert!(after || !waited, "returned while the copy was in flight");
            // The copy over, only the other one is left.
            assert!(!copies.wait_for("d/f"));
            drop(other);
            assert!(!copies.wait_for("x/f"));
        });
    }
}
