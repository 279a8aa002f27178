//! Keeps uploads and renames of the same keys apart.
//!
//! A rename copies the source keys and then deletes them. An upload of one of those keys that
//! lands between its copy and the delete would be deleted with the source: a `close()` that
//! reported success would have lost its data. (The kernel serializes writes with the rename of
//! the file itself, but not with the rename of a directory above it, and not a `close()`.)
//!
//! So a rename registers its source — a file's key, or a directory's prefix ending in `/` —
//! after waiting for uploads in flight under it to finish; an upload under a registered source
//! waits until the rename is over and then takes its key again, which by then is the new one.
//! Neither side holds the gate's mutex while it waits for anything else, and an upload computes
//! its key under the gate's mutex (gate → inode table, in the lock order of
//! [`super::open_files`]), so a key moved by a rename is never used after the move.

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    /// Sources of renames in progress.
    renaming: Vec<String>,
    /// Keys being uploaded.
    uploading: Vec<String>,
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

impl RenameGate {
    /// Register a rename of `source` once no upload under it is in flight; it lasts as long as
    /// the returned guard.
    pub fn rename(&self, source: &str) -> RenameGuard<'_> {
        let mut g = self.state.lock();
        while g.uploading.iter().any(|k| covers(source, k)) {
            self.changed.wait(&mut g);
        }
        g.renaming.push(source.to_string());
        RenameGuard {
            gate: self,
            source: source.to_string(),
        }
    }

    /// Register an upload: `key_of` gives the object's current key (`None`: nothing to upload),
    /// asked again after any rename that covered it. The upload lasts as long as the ticket.
    pub fn upload(
        &self,
        key_of: impl Fn() -> Option<String>,
    ) -> Option<(String, UploadTicket<'_>)> {
        let mut g = self.state.lock();
        loop {
            let key = key_of()?;
            if g.renaming.iter().any(|s| covers(s, &key)) {
                self.changed.wait(&mut g);
                continue;
            }
            g.uploading.push(key.clone());
            return Some((key.clone(), UploadTicket { gate: self, key }));
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
    source: String,
}

impl Drop for RenameGuard<'_> {
    fn drop(&mut self) {
        self.gate.remove(|s| &mut s.renaming, &self.source);
    }
}

/// An upload in progress (see [`RenameGate::upload`]).
#[derive(Debug)]
pub struct UploadTicket<'a> {
    gate: &'a RenameGate,
    key: String,
}

impl Drop for UploadTicket<'_> {
    fn drop(&mut self) {
        self.gate.remove(|s| &mut s.uploading, &self.key);
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
            let guard = gate.rename("d0/");
            let uploader = s.spawn(|| {
                let (k, _t) = gate.upload(|| Some(key.lock().clone())).expect("a key");
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
            let ticket = gate.upload(|| Some("d0/sub/f".to_string())).unwrap();
            let renamer = s.spawn(|| {
                let _g = gate.rename("d0/");
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
            let _g = gate.rename("d0/");
            assert!(gate.upload(|| Some("other/f".to_string())).is_some());
            assert!(gate.upload(|| None).is_none());
        });
    }
}
