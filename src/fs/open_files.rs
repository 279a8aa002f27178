//! The open files of the mount: inode → [`OpenFile`] (one per inode with open handles, shared
//! by all its handles, so a read through one descriptor sees a write through another) and file
//! handle → inode.
//!
//! **Lock order** — the one rule for every lock the file system takes; a thread takes a lock
//! only while it holds none listed after it:
//! 1. a directory listing (`listing::Listing`);
//! 2. one `OpenFile` (never two at once; its `version_pin::VersionPin` is inside it, under the
//!    same lock). It may be held across requests for that one file (an upload at close, a
//!    download at open-for-write), and an upload holding it may wait at the rename gate: so
//!    nothing takes an `OpenFile` while its own rename holds the gate closed. `stat`, lookups
//!    and listings never wait for it: they read the size it publishes each time it is let go
//!    ([`FileCell::local_size`]);
//! 3. the rename gate's state (`gate::RenameGate`), which computes a write's key under it;
//! 4. the inode table (`S3Fs::table`): short sections, never across a request;
//! 5. this registry's maps: only to look up, insert or remove. Nothing waits for an `OpenFile`
//!    while holding them (`forget_if_unused` only tries its lock);
//! 6. the registry of the mount's own copies in flight (`own_copies::OwnCopies`): only to
//!    register or end one. A copy in flight re-pins open files (it takes their locks) before
//!    it ends, so a reader waits for copies holding no lock at all, its file's included;
//! 7. the objects kept for files unlinked while open (`unlinked::KeptObjects`): only to look
//!    up, insert or remove (a listing copies what it needs before taking the table).

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::error::{FsError, FsResult};
use super::open_file::OpenFile;

/// An open file, shared by its handles.
pub type SharedFile = Arc<FileCell>;

/// [`FileCell::local_size`]'s "none" (the file reads from the server).
const NO_SIZE: u64 = u64::MAX;

/// An open file's lock, and its size as the mount holds it, published each time the lock is
/// let go: `stat` and listings read it without waiting for an upload or a read that holds the
/// lock (a size that changes only under the lock is the same at its last release as for
/// anyone who would wait for it).
#[derive(Debug)]
pub struct FileCell {
    file: Mutex<OpenFile>,
    /// [`OpenFile::local_size`] when the lock was last let go; [`NO_SIZE`]: none.
    size: AtomicU64,
}

impl FileCell {
    fn new(ino: u64) -> Self {
        FileCell {
            file: Mutex::new(OpenFile::new(ino)),
            size: AtomicU64::new(NO_SIZE),
        }
    }

    /// Take the file's lock.
    pub fn lock(&self) -> FileGuard<'_> {
        FileGuard {
            file: self.file.lock(),
            size: &self.size,
        }
    }

    /// Take the file's lock if nobody holds it.
    pub fn try_lock(&self) -> Option<FileGuard<'_>> {
        self.file.try_lock().map(|file| FileGuard {
            file,
            size: &self.size,
        })
    }

    /// The size of the file as the mount holds it (its staging file, a copy into it), as it
    /// was when its lock was last let go; `None` if the mount holds no content of it.
    pub fn local_size(&self) -> Option<u64> {
        Some(self.size.load(Ordering::Acquire)).filter(|&s| s != NO_SIZE)
    }
}

/// The lock of an open file; publishes its size when let go.
pub struct FileGuard<'a> {
    file: MutexGuard<'a, OpenFile>,
    size: &'a AtomicU64,
}

impl Deref for FileGuard<'_> {
    type Target = OpenFile;
    fn deref(&self) -> &OpenFile {
        &self.file
    }
}

impl DerefMut for FileGuard<'_> {
    fn deref_mut(&mut self) -> &mut OpenFile {
        &mut self.file
    }
}

impl Drop for FileGuard<'_> {
    fn drop(&mut self) {
        // Still locked: the field unlocks after this.
        let size = self.file.local_size().unwrap_or(NO_SIZE);
        self.size.store(size, Ordering::Release);
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct OpenFiles {
    files: Mutex<HashMap<u64, SharedFile>>,
    handles: Mutex<HashMap<u64, u64>>,
}

impl OpenFiles {
    /// The open file of `ino`, if it has one.
    pub fn get(&self, ino: u64) -> Option<SharedFile> {
        self.files.lock().get(&ino).cloned()
    }

    /// The open file of `ino`, made if it has none.
    pub fn get_or_insert(&self, ino: u64) -> SharedFile {
        self.files
            .lock()
            .entry(ino)
            .or_insert_with(|| Arc::new(FileCell::new(ino)))
            .clone()
    }

    /// True if `f` is still the open file of `ino` (a last `release` may have dropped it from
    /// the map after it was taken).
    pub fn is_current(&self, ino: u64, f: &SharedFile) -> bool {
        self.files
            .lock()
            .get(&ino)
            .is_some_and(|x| Arc::ptr_eq(x, f))
    }

    /// Drop `f` from the map if it is still the open file of `ino`. Called by the last
    /// `release` while it holds `f`'s lock, so an `open` that already took `f` sees it is gone
    /// (see [`OpenFiles::is_current`]) and takes a new one.
    pub fn remove(&self, ino: u64, f: &SharedFile) {
        let mut files = self.files.lock();
        if files.get(&ino).is_some_and(|x| Arc::ptr_eq(x, f)) {
            files.remove(&ino);
        }
    }

    /// Drop the open file of `ino` if no handle is open on it (and nobody holds its lock).
    pub fn forget_if_unused(&self, ino: u64) {
        let mut files = self.files.lock();
        // try_lock: never wait for a file's lock while holding the map (lock order).
        let unused = files
            .get(&ino)
            .is_some_and(|f| f.try_lock().is_some_and(|of| of.is_unused()));
        if unused {
            files.remove(&ino);
        }
    }

    /// The size of `ino`'s open file as the mount holds it ([`FileCell::local_size`]); `None`
    /// if it has no open file, or one without content of its own.
    pub fn local_size(&self, ino: u64) -> Option<u64> {
        self.files.lock().get(&ino)?.local_size()
    }

    /// True if `ino` has an open file.
    pub fn is_open(&self, ino: u64) -> bool {
        self.files.lock().contains_key(&ino)
    }

    /// True if any of `inos` has an open file.
    pub fn any_open<'a>(&self, mut inos: impl Iterator<Item = &'a u64>) -> bool {
        let files = self.files.lock();
        inos.any(|ino| files.contains_key(ino))
    }

    /// Every open file (a snapshot).
    pub fn all(&self) -> Vec<SharedFile> {
        self.files.lock().values().cloned().collect()
    }

    /// The inodes with open files (a snapshot).
    pub fn inos(&self) -> Vec<u64> {
        self.files.lock().keys().copied().collect()
    }

    /// Handle `fh` is open on `ino`.
    pub fn add_handle(&self, fh: u64, ino: u64) {
        self.handles.lock().insert(fh, ino);
    }

    /// The handles open on `ino`.
    pub fn handles_of(&self, ino: u64) -> Vec<u64> {
        let handles = self.handles.lock();
        handles
            .iter()
            .filter(|&(_, &i)| i == ino)
            .map(|(&fh, _)| fh)
            .collect()
    }

    /// Handle `fh` is closed.
    pub fn remove_handle(&self, fh: u64) {
        self.handles.lock().remove(&fh);
    }

    /// The open file of handle `fh`; EBADF if there is none.
    pub fn by_handle(&self, fh: u64) -> FsResult<SharedFile> {
        let ino = self
            .handles
            .lock()
            .get(&fh)
            .copied()
            .ok_or_else(|| FsError::new(libc::EBADF, format!("unknown file handle {fh}")))?;
        self.get(ino)
            .ok_or_else(|| FsError::new(libc::EBADF, format!("file handle {fh} has no open file")))
    }
}
