//! Keeps writes and renames of the same keys apart.
//!
//! A rename copies the source keys and then deletes them. An upload of one of those keys that
//! lands between its copy and the delete would be deleted with the source: a `close()` that
//! reported success would have lost its data. (The kernel serializes writes with the rename of
//! the file itself, but not with the rename of a directory above it, and not a `close()`.)
//! Any other write of a name under a directory being renamed races it the same way: the
//! kernel locks the parent of the directory, not the directory, so a file renamed, unlinked or
//! made inside it (or moved into it) between the rename's listing and its deletes would stay
//! behind under the old prefix, come back under the new one, or bring the old directory back.
//!
//! So a rename registers the keys it moves and writes — a file's key, or a directory's prefix
//! ending in `/`, for its source and its destination — after waiting for writes in flight
//! under them and for other renames touching them to finish; a write of a key (an upload, a
//! metadata copy, the PUT or DELETE of a name) under a registered key waits until the rename
//! is over and then takes its key again, which by then is the new one. A rename whose keys
//! moved while it waited (another rename moved a directory above them) gives its registration
//! back and starts again with the new keys. Neither side holds the gate's mutex while it waits
//! for anything else, and a write computes its key under the gate's mutex (gate → inode table,
//! in the lock order of [`super::open_files`]), so a key moved by a rename is never used after
//! the move.

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    /// Sources and destinations of renames in progress.
    renaming: Vec<String>,
    /// Keys being written.
    writing: Vec<String>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct RenameGate {
    state: Mutex<State>,
    changed: Condvar,
}

/// True if `key` is `source` or lies under it (when `source` is a directory prefix).
pub(super) fn covers(source: &str, key: &str) -> bool {
    key == source || (source.ends_with('/') && key.starts_with(source))
}

/// True if one of two renamed keys lies under the other (or they are the same).
fn overlap(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

impl RenameGate {
    /// Register a rename of `keys` (its source and destination) once no write under them is in
    /// flight and no other rename touches them; it lasts as long as the returned guard.
    pub fn rename(&self, keys: &[&str]) -> RenameGuard<'_> {
        let mut g = self.state.lock();
        while keys.iter().any(|key| {
            g.writing.iter().any(|k| covers(key, k)) || g.renaming.iter().any(|r| overlap(r, key))
        }) {
            self.changed.wait(&mut g);
        }
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        g.renaming.extend(keys.iter().cloned());
        RenameGuard { gate: self, keys }
    }

    /// Register a write of one key: `key_of` gives its current key (`None`: nothing to write),
    /// asked again after any rename that covered it. The write lasts as long as the ticket.
    pub fn write(&self, key_of: impl Fn() -> Option<String>) -> Option<(String, WriteTicket<'_>)> {
        let mut g = self.state.lock();
        loop {
            let key = key_of()?;
            if g.renaming.iter().any(|s| covers(s, &key)) {
                self.changed.wait(&mut g);
                continue;
            }
            g.writing.push(key.clone());
            return Some((key.clone(), WriteTicket { gate: self, key }));
        }
    }

    fn remove(&self, from: fn(&mut State) -> &mut Vec<String>, item: &str) {
        let mut g = self.state.lock();
        let list = from(&mut g);
        if let Some(i) = list.iter().position(|k| k == item) {
            list.swap_remove(i);
        }
        drop(g);
        self.changed.notify_all();
    }
}

/// A rename in progress (see [`RenameGate::rename`]).
#[derive(Debug)]
pub struct RenameGuard<'a> {
    gate: &'a RenameGate,
    keys: Vec<String>,
}

impl Drop for RenameGuard<'_> {
    fn drop(&mut self) {
        for key in &self.keys {
            self.gate.remove(|s| &mut s.renaming, key);
        }
    }
}

/// A write in progress (see [`RenameGate::write`]).
#[derive(Debug)]
pub struct WriteTicket<'a> {
    gate: &'a RenameGate,
    key: String,
}

impl Drop for WriteTicket<'_> {
    fn drop(&mut self) {
        self.gate.remove(|s| &mut s.writing, &self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn covers_files_exactly_and_directories_by_prefix() {
        assert!(covers("d/f", "d/f"));
        assert!(!covers("d/f", "d/foo"));
        assert!(covers("d/", "d/f"));
        assert!(covers("d/", "d/sub/f"));
        assert!(!covers("d/", "dx/f"));
    }

    #[test]
    fn an_upload_under_a_rename_waits_and_takes_the_new_key() {
        let gate = RenameGate::default();
        let key = Mutex::new("d0/f".to_string());
        let moved = AtomicBool::new(false);
        std::thread::scope(|s| {
            let guard = gate.rename(&["d0/", "d3/"]);
            let uploader = s.spawn(|| {
                let (k, _t) = gate.write(|| Some(key.lock().clone())).expect("a key");
                (k, moved.load(Ordering::SeqCst))
            });
            // The rename moves the key, then ends.
            std::thread::sleep(std::time::Duration::from_millis(50));
            *key.lock() = "d3/f".to_string();
            moved.store(true, Ordering::SeqCst);
            drop(guard);
            let (k, after_move) = uploader.join().unwrap();
            assert_eq!(k, "d3/f");
            assert!(after_move, "the upload went ahead during the rename");
        });
    }

    #[test]
    fn a_rename_waits_for_uploads_under_it() {
        let gate = RenameGate::default();
        let uploaded = AtomicBool::new(false);
        std::thread::scope(|s| {
            let ticket = gate.write(|| Some("d0/sub/f".to_string())).unwrap();
            let renamer = s.spawn(|| {
                let _g = gate.rename(&["d0/", "d3/"]);
                uploaded.load(Ordering::SeqCst)
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            uploaded.store(true, Ordering::SeqCst);
            drop(ticket);
            assert!(
                renamer.join().unwrap(),
                "the rename began during the upload"
            );
            // Unrelated keys never wait.
            let _g = gate.rename(&["d0/", "d3/"]);
            assert!(gate.write(|| Some("other/f".to_string())).is_some());
            assert!(gate.write(|| None).is_none());
        });
    }

    #[test]
    fn renames_touching_the_same_keys_wait_for_each_other() {
        let gate = RenameGate::default();
        let dir_moved = AtomicBool::new(false);
        std::thread::scope(|s| {
            let dir = gate.rename(&["d/", "n/"]);
            // A file renamed inside the directory, and one moved into its new name.
            let inside = s.spawn(|| {
                let _g = gate.rename(&["d/a", "d/a2"]);
                dir_moved.load(Ordering::SeqCst)
            });
            let into = s.spawn(|| {
                let _g = gate.rename(&["e/x", "n/x"]);
                dir_moved.load(Ordering::SeqCst)
            });
            // Unrelated renames never wait.
            drop(gate.rename(&["e/y", "f/y"]));
            std::thread::sleep(std::time::Duration::from_millis(50));
            dir_moved.store(true, Ordering::SeqCst);
            drop(dir);
            assert!(inside.join().unwrap(), "a rename inside went ahead");
            assert!(into.join().unwrap(), "a rename into it went ahead");
        });
    }
}
