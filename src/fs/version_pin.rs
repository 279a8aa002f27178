//! The object version an open file reads, and what is tied to it.
//!
//! A [`VersionPin`] lives inside an [`OpenFile`](super::open_file::OpenFile), under its lock,
//! and holds:
//! - the version: the ETag and size seen at open (ranged GETs are pinned to it with
//!   `If-Match`, so one read never mixes two versions), and whether an object exists at all;
//! - its read-ahead ([`Prefetcher`]), dropped when the file is pinned to another version;
//! - the handles still open on a version another client replaced, which a later `open` left
//!   for the new one ([`VersionPin::repin`]): their reads fail rather than mix the two.
//!
//! When the pin moves is decided by `S3Fs` in [`super::file`] (open: close-to-open, and
//! `S3Fs::repin_if_replaced`) and [`super::metadata`] (the mount's own copies, which readers
//! follow: [`VersionPin::follow_etag`]); the open file moves it itself when its content is
//! uploaded or copied into its staging file.

use super::buffers::ReadData;
use super::error::FsResult;
use super::fetch::ObjectSource;
use super::prefetch::{PrefetchPool, Prefetcher};
use crate::s3::ObjectRef;

/// The version an open file reads. See the module documentation.
#[derive(Debug, Default)]
pub struct VersionPin {
    /// ETag of the version being read (and the base of a modification).
    etag: Option<String>,
    /// Size of that version.
    size: u64,
    /// The object exists on the server (else it is new and only local until uploaded).
    exists: bool,
    prefetch: Option<Prefetcher>,
    /// Handles opened on a version another client has replaced since (a later `open` read the
    /// new one): their reads fail, never mixing the two (see [`VersionPin::repin`]).
    outdated: Vec<u64>,
}

impl VersionPin {
    /// At the first open: read the version with `etag` (None: no object yet) of `size` bytes.
    /// Read-ahead of another version is dropped.
    pub fn pin(&mut self, etag: Option<String>, size: u64) {
        if self.etag != etag {
            self.prefetch = None;
        }
        self.exists = etag.is_some();
        self.etag = etag;
        self.size = size;
    }

    /// An `open` found a newer version (`etag`, `size`) than the one read, put there by another
    /// client: the file reads it from now on, and the handles open until now (`handles`) were
    /// reading the old one, which they can no longer read — their reads fail with EIO, as the
    /// old version's `If-Match` would, rather than going on in the new version's bytes.
    pub fn repin(&mut self, etag: String, size: u64, handles: Vec<u64>) {
        self.outdated.extend(handles);
        self.pin(Some(etag), size);
    }

    /// True if handle `fh` reads a version another client has replaced (see
    /// [`VersionPin::repin`]).
    pub fn is_outdated(&self, fh: u64) -> bool {
        self.outdated.contains(&fh)
    }

    /// True while a handle reads a version another client has replaced.
    pub fn has_outdated_handles(&self) -> bool {
        !self.outdated.is_empty()
    }

    /// Handle `fh` is closed.
    pub(super) fn forget_handle(&mut self, fh: u64) {
        self.outdated.retain(|&h| h != fh);
    }

    /// A file just created: no object yet.
    pub(super) fn start_new(&mut self) {
        self.exists = false;
        self.etag = None;
        self.size = 0;
    }

    /// The object's content was copied into the staging file: it was this version (`etag`,
    /// `size`), the base of the modification.
    pub(super) fn filled_from(&mut self, etag: Option<String>, size: u64) {
        self.etag = etag;
        self.size = size;
    }

    /// The file's content was uploaded as this version (`etag`, `len` bytes).
    pub(super) fn uploaded(&mut self, etag: Option<String>, len: u64) {
        self.exists = true;
        self.etag = etag;
        self.size = len;
    }

    /// ETag of the version read (and the base of a modification).
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// Size of that version.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The object exists on the server.
    pub fn exists(&self) -> bool {
        self.exists
    }

    /// After a copy of the object onto itself or a rename's copy: the same content with a new
    /// ETag, which reads pinned to `old` follow.
    pub fn follow_etag(&mut self, old: Option<&str>, new: String) {
        if old.is_some() && self.etag.as_deref() == old {
            self.etag = Some(new);
        }
    }

    /// Read `[offset, offset + size)` of the pinned version (of inode `ino`) through the
    /// read-ahead, which `source` makes when there is none for that version yet (an object,
    /// ETag and size). On failure the read-ahead is dropped: the next read starts afresh.
    pub fn read(
        &mut self,
        ino: u64,
        obj: ObjectRef,
        pool: &PrefetchPool,
        offset: u64,
        size: u32,
        source: impl FnOnce(ObjectRef, Option<String>, u64) -> ObjectSource,
    ) -> FsResult<ReadData> {
        let (etag, remote_size) = (self.etag.clone(), self.size);
        let prefetcher = match &mut self.prefetch {
            Some(p) if p.is_for(&obj, &etag, remote_size) => p,
            slot => slot.insert(Prefetcher::new(source(obj, etag, remote_size))),
        };
        let result = prefetcher.read(pool, offset, size);
        if result.is_err() {
            log::debug!(
                "read of inode {ino} failed (pinned to ETag {:?}, {} bytes)",
                self.etag,
                self.size
            );
            self.prefetch = None;
        }
        result
    }
}
