//! One open file: the state shared by all handles of an inode, with the methods that touch only
//! that state.
//!
//! An [`OpenFile`] owns:
//! - the version it reads ([`VersionPin`], see [`super::version_pin`]): the ETag and size seen
//!   at open, its read-ahead, and the handles left on a version another client replaced;
//! - its [`Staging`] file under `<cache-dir>/staging/`, holding the new content once the file
//!   is written or truncated (reads then come from it);
//! - its streamed upload ([`Streaming`]): a multipart upload fed while the file is written front
//!   to back, given up by anything that would change bytes already sent or its headers;
//! - what its next upload carries when changed while open: metadata and content headers;
//! - flags: dirty, unlinked, created with `O_EXCL`, mtime set explicitly, and the handle whose
//!   `O_TRUNC` defers its `flush`;
//! - a server-side copy into it under way ([`PendingCopy`], see [`super::copy`]): its content
//!   is then the bytes the copy's ranges covered, not yet in the staging file.
//!
//! What needs the server, the inode table or the cache directory is done by `S3Fs` in
//! [`super::file`] (open, read, write, close), [`super::upload`] (the upload, the streamed
//! upload's policy, the copy kept after a failed upload) and [`super::metadata`] (metadata
//! changes folded into the pending upload).
//!
//! Staging files share their file system with the data cache: a staging write that meets a full
//! disk (ENOSPC, EDQUOT) asks for room (the cache gives space back) and is tried once more; if
//! the disk is still full the writer gets ENOSPC (never EIO).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::copy::PendingCopy;
use super::error::{FsError, FsResult};
pub use super::staging::{errno_of, Staging};
use super::staging::{is_disk_full, punch_or_make_room, read_full_at, write_some_at};
use super::upload_plan::{Streaming, UploadPlan};
use super::version_pin::VersionPin;
use crate::s3::stream::UploadQueue;
use crate::s3::Metadata;

/// The state of a file with open handles. See the module documentation.
#[derive(Debug)]
pub struct OpenFile {
    ino: u64,
    opens: u32,
    /// The version read (and the base of a modification).
    version: VersionPin,
    staging: Option<Staging>,
    dirty: bool,
    /// Unlinked while open: never uploaded.
    unlinked: bool,
    /// Unlinked while open, its object kept on the server until the last close: the key.
    kept_key: Option<String>,
    /// Created with O_EXCL: the first upload must not replace an object.
    exclusive: bool,
    /// Metadata for the next upload, when changed while open (None: the object's own).
    pending_meta: Option<Metadata>,
    /// The mtime was set explicitly while open (utimes): keep it at upload.
    mtime_explicit: bool,
    content_headers: Option<Vec<(String, String)>>,
    /// Where the content was saved after a failed upload.
    saved: Option<PathBuf>,
    /// A shared `flock` on that copy while the staging file can still be written (see
    /// `unsaved::hold_copy`): `--recover` leaves it alone until then.
    saved_lock: Option<std::fs::File>,
    /// The staging file has only been written front to back from empty: this is where the
    /// next sequential write starts (None once any write or truncate broke the pattern).
    seq_end: Option<u64>,
    /// The multipart upload being fed while the file is written.
    stream: Option<Streaming>,
    /// No new streamed upload until the file is emptied or uploaded (one was given up, or
    /// failed to start).
    stream_off: bool,
    /// Aborts of given-up streamed uploads, running in the background; joined at upload.
    aborting: Vec<JoinHandle<()>>,
    /// The handle that emptied an existing object with `O_TRUNC`, while nothing has been
    /// written: its `flush` does not upload (see `S3Fs::flush`).
    truncated_by: Option<u64>,
    /// A server-side copy into this file, recorded by `copy_file_range` and not made yet.
    copy: Option<PendingCopy>,
}

impl OpenFile {
    /// Nothing open yet for `ino`.
    pub fn new(ino: u64) -> Self {
        OpenFile {
            ino,
            opens: 0,
            version: VersionPin::default(),
            staging: None,
            dirty: false,
            unlinked: false,
            kept_key: None,
            exclusive: false,
            pending_meta: None,
            mtime_explicit: false,
            content_headers: None,
            saved: None,
            saved_lock: None,
            seq_end: None,
            stream: None,
            stream_off: false,
            aborting: Vec::new(),
            truncated_by: None,
            copy: None,
        }
    }

    /// The inode.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    // ---- handles ----------------------------------------------------------------------------

    /// One more handle.
    pub fn add_open(&mut self) {
        self.opens += 1;
    }

    /// One handle fewer (`fh`); true if it was the last.
    pub fn close_handle(&mut self, fh: u64) -> bool {
        self.version.forget_handle(fh);
        self.opens = self.opens.saturating_sub(1);
        self.opens == 0
    }

    /// No handle is open.
    pub fn is_unused(&self) -> bool {
        self.opens == 0
    }

    // ---- the version on the server ----------------------------------------------------------

    /// The version the file reads.
    pub fn version(&self) -> &VersionPin {
        &self.version
    }

    /// The version the file reads, to pin it, move it or read it.
    pub fn version_mut(&mut self) -> &mut VersionPin {
        &mut self.version
    }

    /// True if the file holds nothing of its own — no staging file, copy, streamed upload or
    /// unlink — and reads the version of an object: a version another client replaced can
    /// then be left for the new one (see [`VersionPin::repin`]).
    pub fn reads_the_server_only(&self) -> bool {
        self.version.exists()
            && self.staging.is_none()
            && self.copy.is_none()
            && self.stream.is_none()
            && !self.unlinked
            && !self.dirty
    }

    /// A file just created (no object yet), with the metadata and content headers of its
    /// first upload; with `exclusive` (`O_EXCL`) that upload must not replace an object.
    pub fn start_new(
        &mut self,
        exclusive: bool,
        metadata: Metadata,
        content_headers: Vec<(String, String)>,
    ) {
        self.version.start_new();
        self.exclusive = exclusive;
        self.pending_meta = Some(metadata);
        self.content_headers = Some(content_headers);
    }

    // ---- the staging file -------------------------------------------------------------------

    /// The staging file, if there is one.
    pub fn staging(&self) -> Option<&Staging> {
        self.staging.as_ref()
    }

    /// Take `staging` as the file's content. `filled_from`: the version (ETag, size) it was
    /// filled with, if the object's content was copied into it. A file that starts empty may
    /// then be uploaded while it is written front to back.
    pub fn attach_staging(&mut self, staging: Staging, filled_from: Option<(Option<String>, u64)>) {
        if let Some((etag, size)) = filled_from {
            self.version.filled_from(etag, size);
        }
        let empty = staging
            .file()
            .metadata()
            .map(|m| m.len() == 0)
            .unwrap_or(false);
        self.seq_end = empty.then_some(0);
        if self.unlinked {
            // See `unlinked_for_good`.
            let _ = std::fs::remove_file(staging.path());
        }
        self.staging = Some(staging);
    }

    /// Delete the staging file (its content is uploaded or given up).
    pub fn remove_staging(&mut self) {
        // Nothing writes into a kept copy any more: `--recover` may take it.
        self.saved_lock = None;
        if let Some(s) = self.staging.take() {
            let _ = std::fs::remove_file(s.path());
        }
    }

    /// Size of the local content, if this file has a staging file (or a server-side copy
    /// under way: the bytes its ranges covered).
    pub fn local_size(&self) -> Option<u64> {
        if let Some(c) = &self.copy {
            return Some(c.covered);
        }
        let s = self.staging.as_ref()?;
        s.file().metadata().ok().map(|m| m.len())
    }

    // ---- a server-side copy into the file ---------------------------------------------------

    /// The file's content is empty and only local: a staging file of 0 bytes (a new file, or
    /// one truncated), no streamed upload, no copy under way, not unlinked. A whole-object
    /// copy into it can then be made on the server.
    pub fn is_empty_and_local(&self) -> bool {
        self.copy.is_none()
            && self.stream.is_none()
            && !self.unlinked
            && self
                .staging
                .as_ref()
                .and_then(|s| s.file().metadata().ok())
                .is_some_and(|m| m.len() == 0)
    }

    /// The file can be the source of a server-side copy: not unlinked, and no copy into it
    /// still under way (its object would not be its content yet).
    pub fn copy_source_ok(&self) -> bool {
        !self.unlinked && self.copy.is_none()
    }

    /// The copy under way into this file, if any.
    pub fn pending_copy(&mut self) -> Option<&mut PendingCopy> {
        self.copy.as_mut()
    }

    /// Record a copy into this (empty) file: it is the content from now on, to be uploaded.
    pub fn start_copy(&mut self, copy: PendingCopy) {
        self.copy = Some(copy);
        self.dirty = true;
        self.truncated_by = None;
    }

    /// Take the copy under way (to make it, or to fetch what it covered into the staging
    /// file).
    pub fn take_copy(&mut self) -> Option<PendingCopy> {
        self.copy.take()
    }

    /// Bytes `[offset, offset + size)` of the staging file (fewer at its end); `None` without
    /// one.
    pub fn read_staging(&self, offset: u64, size: u32) -> Option<FsResult<Vec<u8>>> {
        let s = self.staging.as_ref()?;
        let mut buf = vec![0u8; size as usize];
        Some(match read_full_at(s.file(), &mut buf, offset) {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => Err(FsError::new(libc::EIO, format!("staging read: {e}"))),
        })
    }

    /// Write `data` at `offset` into the staging file; the bytes written. On a full disk,
    /// `make_room(bytes)` is asked to free space and the rest is tried once more if it did;
    /// when the disk is still full part way, the write is short, as on a disk: the bytes
    /// before that point are in the file, and the caller must say so (the next write gets
    /// ENOSPC). An error only when nothing was written.
    pub fn write_staging(
        &mut self,
        offset: u64,
        data: &[u8],
        make_room: impl FnOnce(u64) -> bool,
    ) -> FsResult<usize> {
        let s = self
            .staging
            .as_ref()
            .ok_or_else(|| FsError::new(libc::EIO, "no staging file"))?;
        let (mut written, mut failed) = write_some_at(s.file(), data, offset);
        if failed.as_ref().is_some_and(is_disk_full) && make_room((data.len() - written) as u64) {
            let (more, again) = write_some_at(s.file(), &data[written..], offset + written as u64);
            written += more;
            failed = again;
        }
        if written > 0 {
            self.content_changed();
        }
        match failed {
            Some(e) if written == 0 => {
                Err(FsError::new(errno_of(&e), format!("staging write: {e}")))
            }
            Some(e) => {
                log::debug!("staging write: {e} after {written} of {} bytes", data.len());
                Ok(written)
            }
            None => Ok(written),
        }
    }

    /// Make `[offset, end)` of the staging file a hole: dirty, as after a write. A full disk
    /// asks `make_room` and tries once more; EOPNOTSUPP: the local file system has no holes.
    pub fn punch_staging(
        &mut self,
        offset: u64,
        end: u64,
        make_room: impl FnOnce(u64) -> bool,
    ) -> FsResult<()> {
        let s = self
            .staging
            .as_ref()
            .ok_or_else(|| FsError::new(libc::EIO, "no staging file"))?;
        punch_or_make_room(s.file(), offset, end.saturating_sub(offset), make_room)?;
        self.content_changed();
        Ok(())
    }

    /// Truncate (or extend) the staging file to `size`: the file is dirty, and a streamed
    /// upload that already sent bytes past `size` is given up.
    pub fn truncate_staging(&mut self, size: u64) -> FsResult<()> {
        if let Some(s) = &self.staging {
            s.file()
                .set_len(size)
                .map_err(|e| FsError::new(errno_of(&e), format!("truncate: {e}")))?;
        }
        if self.stream.as_ref().is_some_and(|s| size < s.shipped_end()) {
            self.give_up_stream("truncated below what was already sent");
        }
        if size == 0 {
            self.seq_end = Some(0);
            self.stream_off = false;
        } else if self.seq_end != Some(size) {
            self.seq_end = None;
        }
        self.content_changed();
        Ok(())
    }

    /// Handle `fh` emptied the existing object with `O_TRUNC` and nothing is written yet: its
    /// `flush` does not upload (see `S3Fs::flush`).
    pub fn defer_flush_of(&mut self, fh: u64) {
        self.truncated_by = Some(fh);
    }

    /// True if the `flush` of handle `fh` is deferred (see [`OpenFile::defer_flush_of`]).
    pub fn flush_deferred(&self, fh: u64) -> bool {
        self.truncated_by == Some(fh)
    }

    // ---- changes ----------------------------------------------------------------------------

    /// A write, a truncate or a punch changed the staged content: dirty, a deferred `flush`
    /// uploads after all, and an explicit `utimes` gives way to the change's mtime, as on a
    /// disk.
    fn content_changed(&mut self) {
        self.dirty = true;
        self.truncated_by = None;
        self.mtime_explicit = false;
    }

    /// The content changed (a new file: it is uploaded at close even if nothing is written).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// True if there are changes not yet uploaded.
    pub fn is_dirty(&self) -> bool {
        self.dirty && !self.unlinked
    }

    /// Unlinked while open: never uploaded, and a streamed upload of it is given up. Marked
    /// before the name is removed on the server, so that no upload of it can start meanwhile
    /// and bring the name back; until that removal is done
    /// ([`OpenFile::unlinked_for_good`]) the staging file keeps its place in the cache dir, so
    /// that a removal that fails gives the file back as it was ([`OpenFile::unlink_failed`]).
    pub fn mark_unlinked(&mut self) {
        self.unlinked = true;
        self.give_up_stream("unlinked while open");
    }

    /// The name is gone from the server: the staging file leaves the cache dir (the
    /// descriptors keep it open), so nothing of it is recovered after a crash.
    pub fn unlinked_for_good(&mut self) {
        if let Some(s) = self.staging.as_ref().filter(|_| self.unlinked) {
            let _ = std::fs::remove_file(s.path());
        }
    }

    /// The unlink (or the rename over the file) that marked it failed: the name stays, and
    /// with it the file's upload at close — without this, writes through its descriptors, or
    /// through a later open of the name, were never uploaded while `close` said success.
    pub fn unlink_failed(&mut self) {
        self.unlinked = false;
    }

    /// True once unlinked (or replaced by a rename) while open.
    pub fn is_unlinked(&self) -> bool {
        self.unlinked
    }

    /// Unlinked while open, the object at `key` stays for the descriptors until the last close.
    pub fn keep_object(&mut self, key: String) {
        self.kept_key = Some(key);
    }

    /// The key of the object kept for this unlinked file, if any.
    pub fn kept_key(&self) -> Option<&str> {
        self.kept_key.as_deref()
    }

    /// The object kept for this unlinked file is no longer needed (fetched, or the last close).
    pub fn take_kept_key(&mut self) -> Option<String> {
        self.kept_key.take()
    }

    /// Created with `O_EXCL` and not uploaded yet: the upload must not replace an object.
    pub fn exclusive(&self) -> bool {
        self.exclusive
    }

    /// Metadata of the next upload, when set or changed while open.
    pub fn pending_metadata(&self) -> Option<&Metadata> {
        self.pending_meta.as_ref()
    }

    /// Content headers of the next upload, when known.
    pub fn content_headers(&self) -> Option<&Vec<(String, String)>> {
        self.content_headers.as_ref()
    }

    /// The mtime was set explicitly while open: the upload keeps it.
    pub fn mtime_explicit(&self) -> bool {
        self.mtime_explicit
    }

    /// True if a metadata change must start from the object's metadata (none is pending).
    pub fn needs_base_metadata(&self) -> bool {
        self.pending_meta.is_none()
    }

    /// The file is clean and its object's metadata and content headers are the base of the
    /// next change (after an upload; after a change in place, `S3Fs::rebase_open_file`): what
    /// the last upload carried is no base any more.
    pub fn forget_base_metadata(&mut self) {
        self.pending_meta = None;
        self.content_headers = None;
    }

    /// The metadata (and content headers, unless already known) a change starts from.
    pub fn set_base_metadata(
        &mut self,
        metadata: Metadata,
        content_headers: Option<Vec<(String, String)>>,
    ) {
        self.pending_meta = Some(metadata);
        if self.content_headers.is_none() {
            self.content_headers = content_headers;
        }
    }

    /// New metadata for the next upload (`mtime_explicit`: it sets the mtime). A streamed
    /// upload is given up: a multipart upload's metadata is fixed when it is created.
    pub fn set_pending_metadata(&mut self, metadata: Metadata, mtime_explicit: bool) {
        self.pending_meta = Some(metadata);
        if mtime_explicit {
            self.mtime_explicit = true;
        }
        self.give_up_stream("metadata changed while the file was being uploaded");
    }

    /// Keep what an upload carries (or tried to) for the next one: a retry at `release`, the
    /// note of an unsaved copy, or the upload at close after a streamed one started.
    pub fn keep_plan(&mut self, plan: &UploadPlan) {
        self.pending_meta = Some(plan.metadata.clone());
        self.content_headers = Some(plan.content_headers.clone());
    }

    /// The object is on the server with this content (`len` bytes, `etag`) and `plan`'s
    /// headers: the file is clean. The next change starts again from the object's metadata
    /// (`S3Fs::object_meta`: what this upload recorded, trusted for the TTL, then a HEAD), not
    /// from `plan`, which another client's `setfattr` or `chmod` since would leave behind.
    pub fn uploaded(&mut self, len: u64, etag: Option<String>) {
        self.dirty = false;
        self.exclusive = false;
        self.version.uploaded(etag, len);
        self.stream_off = false;
        self.truncated_by = None;
        self.forget_base_metadata();
    }

    /// Where the content was saved after a failed upload, if it was.
    pub fn saved(&self) -> Option<&Path> {
        self.saved.as_deref()
    }

    /// The content was saved at `path` after a failed upload; `lock` holds it from
    /// `--recover` while the file is open.
    pub fn set_saved(&mut self, path: PathBuf, lock: Option<std::fs::File>) {
        self.saved = Some(path);
        self.saved_lock = lock;
    }

    /// The saved copy, which a successful upload makes unnecessary.
    pub fn take_saved(&mut self) -> Option<PathBuf> {
        self.saved_lock = None;
        self.saved.take()
    }

    // ---- the streamed upload ----------------------------------------------------------------

    /// After a write of `[offset, end)` into the staging file: keeps track of whether the file
    /// is written front to back, and gives the streamed upload up if the write changed bytes
    /// already sent. Returns how far the file is written front to back, if it still is.
    pub fn wrote(&mut self, offset: u64, end: u64) -> Option<u64> {
        self.seq_end = match self.seq_end {
            Some(e) if e == offset => Some(end),
            _ => None,
        };
        if self
            .stream
            .as_ref()
            .is_some_and(|s| offset < s.shipped_end())
        {
            self.give_up_stream("a write changed bytes already sent");
            return None;
        }
        self.seq_end
    }

    /// True if a streamed upload may start now that `written` bytes are written front to back
    /// (more than `threshold`, none running, none given up).
    pub fn may_start_stream(&self, written: u64, threshold: u64) -> bool {
        self.stream.is_none() && !self.stream_off && written > threshold
    }

    /// A streamed upload is about to be started: none is tried again unless this one starts
    /// (a failed start is not retried at every write). False if the file is not to be
    /// uploaded at all.
    pub fn claim_stream_start(&mut self) -> bool {
        self.stream_off = true;
        !self.unlinked
    }

    /// The streamed upload started: its headers are fixed for the upload at close too.
    pub fn set_stream(&mut self, s: Streaming) {
        self.keep_plan(s.plan());
        self.stream = Some(s);
        self.stream_off = false;
    }

    /// Hand the streamed upload the parts complete up to `written`. Returns its queue for the
    /// writer to wait on (after releasing the file's lock); gives the upload up if a part
    /// failed.
    pub fn feed_stream(&mut self, written: u64) -> Option<Arc<UploadQueue>> {
        let s = self.stream.as_mut()?;
        match s.ship_up_to(written) {
            Ok(()) => Some(s.queue()),
            Err(e) => {
                self.give_up_stream(&format!("a part failed ({e})"));
                None
            }
        }
    }

    /// The streamed upload, to complete it.
    pub fn take_stream(&mut self) -> Option<Streaming> {
        self.stream.take()
    }

    /// Give up the streamed upload, if any (aborted in the background; the whole file is
    /// uploaded at close instead), and start no other until the file is emptied or uploaded.
    pub fn give_up_stream(&mut self, why: &str) {
        if let Some(s) = self.stream.take() {
            self.give_up(s, why);
        }
    }

    /// Give up `s`, taken with [`OpenFile::take_stream`] (see [`OpenFile::give_up_stream`]).
    pub fn give_up(&mut self, s: Streaming, why: &str) {
        log::info!(
            "{}: {why}: aborting the streamed upload; the whole file is uploaded at close",
            s.key()
        );
        self.stream_off = true;
        if let Some(h) = s.abort_in_background() {
            self.aborting.push(h);
        }
    }

    /// Wait for the aborts of given-up streamed uploads.
    pub fn join_aborts(&mut self) {
        for h in self.aborting.drain(..) {
            let _ = h.join();
        }
    }
}
