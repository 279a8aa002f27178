//! Open files: reads, writes, staging files, and the upload at close.
//!
//! Every inode with open handles has one [`OpenFile`], shared by its handles.
//!
//! Reading an unmodified file streams it from S3 through a [`Prefetcher`]: ranged GETs pinned
//! to the ETag seen at open (`If-Match`), so one read never mixes two versions; a sequential
//! reader gets a growing read-ahead fetched in parallel, a random reader exactly the bytes it
//! asked for. With the data cache on, blocks already on disk are read from there and whole
//! blocks fetched are kept (see [`super::fetch`]); a file with a staging file is read from it
//! and nothing of it is ever cached.
//!
//! Writing goes to a staging file under `<cache-dir>/staging/`. Opening an existing object for
//! writing without `O_TRUNC` fills the staging file from the object at the first write. The
//! upload — at `close`, or streamed while a large file is written front to back — lives in
//! [`super::upload`].
//!
//! Staging files share their file system with the data cache: a staging write that meets a full
//! disk (ENOSPC, EDQUOT) makes the cache give space back and is tried once more; if the disk is
//! still full the writer gets ENOSPC (never EIO).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::attr::{AttrChange, FileAttrs, S_IFREG};
use super::fetch::ObjectSource;
use super::prefetch::Prefetcher;
use super::upload::Streaming;
use super::{lock, name_str, now, FsError, FsResult, S3Fs};
use crate::cache::inode::{NodeAttr, NodeKind};
use crate::s3::storage::guess_content_type;
use crate::s3::{private, Metadata};

/// A staging file holding a file's new content.
#[derive(Debug)]
pub struct Staging {
    pub(super) file: File,
    pub(super) path: PathBuf,
}

/// The state of a file with open handles.
#[derive(Debug)]
pub struct OpenFile {
    pub(super) ino: u64,
    opens: u32,
    /// ETag of the version being read (and the base of a modification).
    pub(super) etag: Option<String>,
    /// Size of that version.
    pub(super) remote_size: u64,
    /// The object exists on the server (else it is new and only local until uploaded).
    pub(super) remote_exists: bool,
    pub(super) staging: Option<Staging>,
    pub(super) dirty: bool,
    /// Unlinked while open: never uploaded.
    pub(super) unlinked: bool,
    /// Created with O_EXCL: the first upload must not replace an object.
    pub(super) exclusive: bool,
    /// Metadata for the next upload, when changed while open (None: the object's own).
    pub(super) pending_meta: Option<Metadata>,
    /// The mtime was set explicitly while open (utimes): keep it at upload.
    pub(super) mtime_explicit: bool,
    pub(super) content_headers: Option<Vec<(String, String)>>,
    /// Where the content was saved after a failed upload.
    pub(super) saved: Option<PathBuf>,
    prefetch: Option<Prefetcher>,
    /// The staging file has only been written front to back from empty: this is where the
    /// next sequential write starts (None once any write or truncate broke the pattern).
    pub(super) seq_end: Option<u64>,
    /// The multipart upload being fed while the file is written (see [`super::upload`]).
    pub(super) stream: Option<Streaming>,
    /// No new streamed upload until the file is emptied or uploaded (one was given up).
    pub(super) stream_off: bool,
    /// Aborts of given-up streamed uploads, running in the background; joined at upload.
    pub(super) aborting: Vec<JoinHandle<()>>,
    /// The handle that emptied an existing object with `O_TRUNC`, while nothing has been
    /// written: its `flush` does not upload (see [`S3Fs::flush`]).
    pub(super) truncated_by: Option<u64>,
}

impl OpenFile {
    fn new(ino: u64) -> Self {
        OpenFile {
            ino,
            opens: 0,
            etag: None,
            remote_size: 0,
            remote_exists: false,
            staging: None,
            dirty: false,
            unlinked: false,
            exclusive: false,
            pending_meta: None,
            mtime_explicit: false,
            content_headers: None,
            saved: None,
            prefetch: None,
            seq_end: None,
            stream: None,
            stream_off: false,
            aborting: Vec::new(),
            truncated_by: None,
        }
    }

    /// Size of the local content, if this file has a staging file.
    pub fn local_size(&self) -> Option<u64> {
        let s = self.staging.as_ref()?;
        s.file.metadata().ok().map(|m| m.len())
    }

    /// True if there are changes not yet uploaded.
    pub fn is_dirty(&self) -> bool {
        self.dirty && !self.unlinked
    }
}

impl S3Fs {
    fn open_file(&self, ino: u64) -> Arc<Mutex<OpenFile>> {
        lock(&self.files)
            .entry(ino)
            .or_insert_with(|| Arc::new(Mutex::new(OpenFile::new(ino))))
            .clone()
    }

    fn handle_file(&self, fh: u64) -> FsResult<Arc<Mutex<OpenFile>>> {
        let ino = lock(&self.handles)
            .get(&fh)
            .copied()
            .ok_or_else(|| FsError::new(libc::EBADF, format!("unknown file handle {fh}")))?;
        let f = lock(&self.files).get(&ino).cloned();
        f.ok_or_else(|| FsError::new(libc::EBADF, format!("file handle {fh} has no open file")))
    }

    /// `open`: revalidates stale attributes (close-to-open consistency).
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        let kind = self.kind_of(ino)?;
        if kind == NodeKind::Dir {
            return Err(FsError::new(libc::EISDIR, "is a directory"));
        }
        let acc = flags & libc::O_ACCMODE;
        let writable = acc != libc::O_RDONLY;
        if writable || flags & libc::O_TRUNC != 0 {
            self.check_writable()?;
        }
        // Close-to-open: a new open looks at the server unless the attributes are fresh.
        // (Before taking the file's lock: getattr consults an open file's state itself.)
        let attrs = self.getattr(ino)?;
        let f = self.open_file(ino);
        let mut of = lock(&f);
        // A concurrent last `release` may have dropped this Arc from the map after we took it:
        // its handles would then find no open file (EBADF). Start again with the current one.
        let current = lock(&self.files)
            .get(&ino)
            .is_some_and(|x| Arc::ptr_eq(x, &f));
        if !current {
            drop(of);
            return self.open(ino, flags);
        }
        if of.opens == 0 {
            let etag = self.table().get(ino).and_then(|n| n.attr.etag.clone());
            if of.etag != etag {
                of.prefetch = None;
            }
            of.remote_exists = etag.is_some();
            of.etag = etag;
            of.remote_size = attrs.size;
        }
        let fh = self.new_fh();
        if writable && flags & libc::O_TRUNC != 0 {
            self.ensure_staging(&mut of, false)?;
            if let Some(s) = &of.staging {
                s.file
                    .set_len(0)
                    .map_err(|e| FsError::new(libc::EIO, format!("staging: {e}")))?;
            }
            self.after_truncate(&mut of, 0);
            of.dirty = true;
            if of.remote_exists {
                of.truncated_by = Some(fh);
            }
        }
        of.opens += 1;
        drop(of);
        lock(&self.handles).insert(fh, ino);
        Ok(fh)
    }

    fn forget_open_file_if_unused(&self, ino: u64) {
        let mut files = lock(&self.files);
        // try_lock: never wait for a file's lock while holding the map (lock order).
        let unused = files
            .get(&ino)
            .is_some_and(|f| f.try_lock().is_ok_and(|of| of.opens == 0));
        if unused {
            files.remove(&ino);
        }
    }

    /// `create`: a new, empty, dirty file (uploaded at close even if nothing is written).
    pub fn create(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        mode: u32,
        flags: i32,
    ) -> FsResult<(FileAttrs, u64)> {
        self.check_writable()?;
        let name_s = name_str(name)?;
        if !super::dir::valid_component(name_s) {
            return Err(FsError::new(libc::EINVAL, format!("{name_s:?}")));
        }
        match self.lookup(parent, name) {
            Ok(a) if flags & libc::O_EXCL != 0 => {
                let _ = a;
                return Err(FsError::new(libc::EEXIST, format!("{name_s} exists")));
            }
            Ok(a) => {
                let fh = self.open(a.ino, flags)?;
                return Ok((self.getattr(a.ino)?, fh));
            }
            Err(e) if e.errno == libc::ENOENT => {}
            Err(e) => return Err(e),
        }
        let key = format!("{}{name_s}", self.key_of(parent)?);
        let mtime = now();
        let attr = NodeAttr::created(0, mtime, mode, None);
        let ino = {
            let mut t = self.table();
            // Not "fresh" from the server's point of view, but the open file is the truth.
            t.upsert_child(parent, name_s, NodeKind::File, attr.clone(), self.expiry())
        };
        let f = self.open_file(ino);
        let mut of = lock(&f);
        of.remote_exists = false;
        of.etag = None;
        of.remote_size = 0;
        of.exclusive = flags & libc::O_EXCL != 0;
        let mut meta = Metadata::new();
        meta.insert("mode", ((mode & 0o7777) | S_IFREG).to_string());
        of.pending_meta = Some(meta);
        of.content_headers = Some(vec![("content-type".into(), guess_content_type(&key))]);
        self.ensure_staging(&mut of, false)?;
        of.dirty = true;
        of.opens += 1;
        drop(of);
        let fh = self.new_fh();
        lock(&self.handles).insert(fh, ino);
        Ok((self.to_attrs(ino, NodeKind::File, &attr), fh))
    }

    /// Create the staging file; with `fill`, copy the object's current content into it.
    fn ensure_staging(&self, of: &mut OpenFile, fill: bool) -> FsResult<()> {
        if of.staging.is_some() {
            return Ok(());
        }
        let tmp = tempfile::Builder::new()
            .prefix("s3mount-")
            .permissions(private::file_permissions())
            .tempfile_in(&self.staging_dir)
            .map_err(|e| {
                FsError::new(errno_of(&e), format!("cannot create a staging file: {e}"))
            })?;
        let (mut file, path) = tmp
            .keep()
            .map_err(|e| FsError::new(libc::EIO, format!("cannot keep the staging file: {e}")))?;
        if fill && of.remote_exists {
            let key = self.key_of(of.ino)?;
            let mut result = self.storage.download(&self.obj(&key), &mut file);
            if let Err(e) = &result {
                let full = matches!(e.errno(), libc::ENOSPC | libc::EDQUOT);
                if full && self.make_room_for_staging(of.remote_size) {
                    result = file
                        .set_len(0)
                        .and_then(|()| std::io::Seek::rewind(&mut file))
                        .map_err(|e| crate::s3::StorageError::io(path.display(), e))
                        .and_then(|()| self.storage.download(&self.obj(&key), &mut file));
                }
            }
            match result {
                Ok(info) => {
                    of.etag = info.etag.clone();
                    of.remote_size = info.size;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e.into());
                }
            }
        }
        // A file that starts empty and is then written front to back may be uploaded while
        // it is written (see `upload::after_write`).
        let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(false);
        of.seq_end = empty.then_some(0);
        of.staging = Some(Staging { file, path });
        Ok(())
    }

    /// `read`.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let f = self.handle_file(fh)?;
        let mut of = lock(&f);
        if let Some(s) = &of.staging {
            let mut buf = vec![0u8; size as usize];
            let n = read_full_at(&s.file, &mut buf, offset)
                .map_err(|e| FsError::new(libc::EIO, format!("staging read: {e}")))?;
            buf.truncate(n);
            return Ok(buf);
        }
        let key = self.key_of(of.ino)?;
        let obj = self.obj(&key);
        let (etag, remote_size) = (of.etag.clone(), of.remote_size);
        if !of
            .prefetch
            .as_ref()
            .is_some_and(|p| p.is_for(&obj, &etag, remote_size))
        {
            let src = ObjectSource::new(
                self.storage.clone(),
                obj,
                etag,
                remote_size,
                self.data_cache.clone(),
            );
            of.prefetch = Some(Prefetcher::new(src));
        }
        let Some(prefetcher) = of.prefetch.as_mut() else {
            return Err(FsError::new(libc::EIO, "no prefetcher"));
        };
        let result = prefetcher.read(&self.prefetch_pool, offset, size);
        if result.is_err() {
            log::debug!(
                "read of inode {} failed (pinned to ETag {:?}, {} bytes)",
                of.ino,
                of.etag,
                of.remote_size
            );
            // Make the next open look at the server again (the object may have changed).
            of.prefetch = None;
            if let Some(n) = self.table().get_mut(of.ino) {
                n.attr_expires = std::time::Instant::now();
                n.meta = None;
            }
        }
        result
    }

    /// `write` into the staging file.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.check_writable()?;
        let f = self.handle_file(fh)?;
        let mut of = lock(&f);
        self.ensure_staging(&mut of, true)?;
        let s = of
            .staging
            .as_ref()
            .ok_or_else(|| FsError::new(libc::EIO, "no staging file"))?;
        let mut result = s.file.write_all_at(data, offset);
        if result.as_ref().is_err_and(is_disk_full) && self.make_room_for_staging(data.len() as u64)
        {
            result = s.file.write_all_at(data, offset);
        }
        // Bytes written before a failure are in the file: it is dirty either way.
        of.dirty = true;
        result.map_err(|e| FsError::new(errno_of(&e), format!("staging write: {e}")))?;
        of.truncated_by = None;
        let queue = self.after_write(&mut of, offset, offset + data.len() as u64);
        drop(of);
        // Back-pressure of a streamed upload, without holding the file's lock.
        if let Some(q) = queue {
            q.wait_for_room();
        }
        Ok(data.len() as u32)
    }

    /// `flush` (each `close`): upload if dirty — except when the descriptor that truncated an
    /// existing object with `O_TRUNC` is closed before anything was written. A shell redirect
    /// (`cmd > file`) and `dd of=file` open the file, `dup2` it to stdout and close the
    /// original descriptor before writing: uploading then would replace the object with an
    /// empty one for as long as the program writes (and for good if it never finishes). The
    /// truncation is uploaded with the data at the next `close`, or at the last `release`.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let f = self.handle_file(fh)?;
        let mut of = lock(&f);
        if of.truncated_by == Some(fh) {
            log::debug!("flush of handle {fh}: truncated and nothing written yet; upload deferred");
            return Ok(());
        }
        self.upload_if_dirty(&mut of)
    }

    /// `fsync`: upload if dirty.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let f = self.handle_file(fh)?;
        let mut of = lock(&f);
        self.upload_if_dirty(&mut of)
    }

    /// `release`: the last one uploads what is still dirty and drops the staging file.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let f = self.handle_file(fh)?;
        lock(&self.handles).remove(&fh);
        let mut of = lock(&f);
        of.opens = of.opens.saturating_sub(1);
        if of.opens > 0 {
            return Ok(());
        }
        let result = self.upload_if_dirty(&mut of);
        if let Some(s) = of.staging.take() {
            let _ = std::fs::remove_file(&s.path);
        }
        let ino = of.ino;
        // Still holding the file's lock (lock order: file → map), so an `open` that already
        // took this Arc from the map sees it is gone and takes a new one (see `open`).
        {
            let mut files = lock(&self.files);
            if files.get(&ino).is_some_and(|x| Arc::ptr_eq(x, &f)) {
                files.remove(&ino);
            }
        }
        drop(of);
        result
    }

    /// `truncate` (setattr size): through the open file, or a one-off staging + upload.
    pub(crate) fn truncate(&self, ino: u64, size: u64) -> FsResult<()> {
        let existing = lock(&self.files).get(&ino).cloned();
        let (f, temporary) = match existing {
            Some(f) => (f, false),
            None => {
                let fh = self.open(ino, libc::O_RDWR)?;
                let f = self.handle_file(fh)?;
                lock(&self.handles).remove(&fh);
                (f, true)
            }
        };
        let mut of = lock(&f);
        // The last `release` (asynchronous after `close`) may have run since the lookup: then
        // nobody would upload the change, so do it here as for a temporary open.
        let orphan = !temporary && of.opens == 0;
        let result = (|| {
            self.ensure_staging(&mut of, size > 0)?;
            if let Some(s) = &of.staging {
                s.file
                    .set_len(size)
                    .map_err(|e| FsError::new(errno_of(&e), format!("truncate: {e}")))?;
            }
            self.after_truncate(&mut of, size);
            of.truncated_by = None;
            of.dirty = true;
            if temporary || orphan {
                self.upload_if_dirty(&mut of)?;
            }
            Ok(())
        })();
        if temporary {
            of.opens = of.opens.saturating_sub(1);
        }
        if (temporary || orphan) && of.opens == 0 {
            if let Some(s) = of.staging.take() {
                let _ = std::fs::remove_file(&s.path);
            }
            drop(of);
            self.forget_open_file_if_unused(ino);
        }
        result
    }

    /// If `ino` is open with unsaved changes, apply an attribute change to its pending upload.
    pub(crate) fn fold_into_open_file(&self, ino: u64, change: &AttrChange) -> FsResult<bool> {
        self.edit_pending_metadata(ino, |meta, cur_mode| {
            change.apply_to(meta, S_IFREG, cur_mode);
            Ok(())
        })
        .inspect(|&done| {
            if done {
                let open = lock(&self.files).get(&ino).cloned();
                if let (Some(f), true) = (open, change.mtime.is_some()) {
                    lock(&f).mtime_explicit = true;
                }
                let mut t = self.table();
                if let Some(n) = t.get_mut(ino) {
                    if let Some(m) = change.mode {
                        n.attr.mode = Some(m & 0o7777);
                    }
                    if let Some(u) = change.uid {
                        n.attr.uid = Some(u);
                    }
                    if let Some(g) = change.gid {
                        n.attr.gid = Some(g);
                    }
                    if let Some(m) = change.mtime {
                        n.attr.mtime = m;
                    }
                }
            }
        })
    }

    /// Edit the metadata of the pending upload of a dirty open file. `Ok(false)` if the file is
    /// not open with changes (the caller then changes the object in place).
    pub(crate) fn edit_pending_metadata(
        &self,
        ino: u64,
        edit: impl FnOnce(&mut Metadata, u32) -> FsResult<()>,
    ) -> FsResult<bool> {
        let f = lock(&self.files).get(&ino).cloned();
        let Some(f) = f else { return Ok(false) };
        let mut of = lock(&f);
        if !of.is_dirty() {
            return Ok(false);
        }
        if of.pending_meta.is_none() {
            let (m, h) = if of.remote_exists {
                let om = self.object_meta(ino)?;
                (om.metadata, Some(om.content_headers))
            } else {
                (Metadata::new(), None)
            };
            of.pending_meta = Some(m);
            if of.content_headers.is_none() {
                of.content_headers = h;
            }
        }
        let cur_mode = self.attrs_of(ino).map(|a| a.perm as u32).unwrap_or(0o644);
        let mut meta = of.pending_meta.clone().unwrap_or_default();
        edit(&mut meta, cur_mode)?;
        if meta.encoded_size() > crate::s3::meta::MAX_USER_METADATA_BYTES {
            return Err(FsError::new(libc::E2BIG, "user metadata over 2 KB"));
        }
        of.pending_meta = Some(meta);
        // A multipart upload's metadata is fixed when it is created.
        self.abandon_stream(
            &mut of,
            "metadata changed while the file was being uploaded",
        );
        Ok(true)
    }

    /// The pending metadata of a dirty open file, if any.
    pub(crate) fn pending_metadata(&self, ino: u64) -> Option<Metadata> {
        let f = lock(&self.files).get(&ino).cloned()?;
        let of = lock(&f);
        if of.is_dirty() {
            of.pending_meta.clone()
        } else {
            None
        }
    }

    /// After a metadata-only self-copy: the content is the same but the ETag may not be (a
    /// copy of a multipart object gets a new one), so readers pinned to the old ETag follow it
    /// instead of failing their next ranged GET with 412 → EIO.
    pub(crate) fn follow_self_copy(&self, ino: u64, old: Option<&str>, new: Option<String>) {
        let f = lock(&self.files).get(&ino).cloned();
        if let (Some(f), Some(new)) = (f, new) {
            let mut of = lock(&f);
            if old.is_some() && of.etag.as_deref() == old {
                of.etag = Some(new);
            }
        }
    }

    /// At a forced stop: keep every open file's unsaved changes under `unsaved/`, without
    /// uploading them — a writer may be in the middle of the file, and a half-written object
    /// must never reach the server. Returns how many files were kept.
    pub fn save_open_files(&self) -> usize {
        let files: Vec<_> = lock(&self.files).values().cloned().collect();
        let mut kept = 0;
        for f in files {
            let mut of = lock(&f);
            if !of.is_dirty() {
                continue;
            }
            let Some(key) = self.table().key_of(of.ino) else {
                continue;
            };
            let _ = self.save_unsaved(
                &mut of,
                &key,
                FsError::new(libc::EIO, "s3mount stopped with the file still open"),
            );
            kept += 1;
        }
        kept
    }

    /// Upload a dirty open file now (before a rename or a copy reads the object).
    pub(crate) fn flush_inode(&self, ino: u64) -> FsResult<()> {
        let f = lock(&self.files).get(&ino).cloned();
        if let Some(f) = f {
            let mut of = lock(&f);
            self.upload_if_dirty(&mut of)?;
        }
        Ok(())
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn errno_of(e: &std::io::Error) -> i32 {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => libc::ENOSPC,
        Some(libc::EDQUOT) => libc::EDQUOT,
        _ => libc::EIO,
    }
}
