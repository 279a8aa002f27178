//! Open files: reads, writes, staging files, and the upload at close.
//!
//! Every inode with open handles has one [`OpenFile`], shared by its handles.
//!
//! Reading an unmodified file streams it from S3 through a [`Prefetcher`]: ranged GETs pinned
//! to the ETag seen at open (`If-Match`), so one read never mixes two versions; a sequential
//! reader gets a growing read-ahead fetched in parallel, a random reader exactly the bytes it
//! asked for.
//!
//! Writing goes to a staging file under `<cache-dir>/staging/`. Opening an existing object for
//! writing without `O_TRUNC` fills the staging file from the object at the first write. At
//! `flush` (every `close`), `fsync` and the last `release`, a dirty file is uploaded — one PUT,
//! or a parallel multipart upload when large — with the object's existing metadata and content
//! headers plus pending changes, so overwriting content never drops metadata. `close` returns
//! only once the object is on the server, and fails with EIO if the upload failed after retries;
//! the staging file is then hard-linked under `<cache-dir>/unsaved/` (with a `.key` note naming
//! the object) and stays there until a later upload of the same file succeeds.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::attr::{format_mtime, AttrChange, FileAttrs, S_IFREG};
use super::prefetch::Prefetcher;
use super::{lock, name_str, now, FsError, FsResult, S3Fs};
use crate::cache::inode::{NodeAttr, NodeKind, ObjectMeta};
use crate::s3::storage::guess_content_type;
use crate::s3::{Metadata, PutOptions};

/// A staging file holding a file's new content.
#[derive(Debug)]
pub struct Staging {
    file: File,
    path: PathBuf,
}

/// The state of a file with open handles.
#[derive(Debug)]
pub struct OpenFile {
    ino: u64,
    opens: u32,
    /// ETag of the version being read (and the base of a modification).
    etag: Option<String>,
    /// Size of that version.
    remote_size: u64,
    /// The object exists on the server (else it is new and only local until uploaded).
    remote_exists: bool,
    staging: Option<Staging>,
    dirty: bool,
    /// Unlinked while open: never uploaded.
    pub unlinked: bool,
    /// Created with O_EXCL: the first upload must not replace an object.
    exclusive: bool,
    /// Metadata for the next upload, when changed while open (None: the object's own).
    pending_meta: Option<Metadata>,
    /// The mtime was set explicitly while open (utimes): keep it at upload.
    mtime_explicit: bool,
    content_headers: Option<Vec<(String, String)>>,
    /// Where the content was saved after a failed upload.
    saved: Option<PathBuf>,
    prefetch: Option<Prefetcher>,
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
        if writable && flags & libc::O_TRUNC != 0 {
            self.ensure_staging(&mut of, false)?;
            if let Some(s) = &of.staging {
                s.file
                    .set_len(0)
                    .map_err(|e| FsError::new(libc::EIO, format!("staging: {e}")))?;
            }
            of.dirty = true;
        }
        of.opens += 1;
        drop(of);
        let fh = self.new_fh();
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
            .tempfile_in(&self.staging_dir)
            .map_err(|e| {
                FsError::new(errno_of(&e), format!("cannot create a staging file: {e}"))
            })?;
        let (mut file, path) = tmp
            .keep()
            .map_err(|e| FsError::new(libc::EIO, format!("cannot keep the staging file: {e}")))?;
        if fill && of.remote_exists {
            let key = self.key_of(of.ino)?;
            match self.storage.download(&self.obj(&key), &mut file) {
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
            of.prefetch = Some(Prefetcher::new(obj, etag, remote_size));
        }
        let Some(prefetcher) = of.prefetch.as_mut() else {
            return Err(FsError::new(libc::EIO, "no prefetcher"));
        };
        let result = prefetcher.read(&self.prefetch_pool, &self.storage, offset, size);
        if result.is_err() {
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
        s.file
            .write_all_at(data, offset)
            .map_err(|e| FsError::new(errno_of(&e), format!("staging write: {e}")))?;
        of.dirty = true;
        Ok(data.len() as u32)
    }

    /// `flush` (each `close`): upload if dirty.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let f = self.handle_file(fh)?;
        let mut of = lock(&f);
        self.upload_if_dirty(&mut of)
    }

    /// `fsync`: upload if dirty.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh)
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

    /// Upload the staging file if it has changes.
    pub(crate) fn upload_if_dirty(&self, of: &mut OpenFile) -> FsResult<()> {
        if !of.is_dirty() {
            return Ok(());
        }
        // Not while a rename is moving this key (it would delete the upload with its source).
        let ino = of.ino;
        let Some((key, _uploading)) = self.rename_gate.upload(|| self.table().key_of(ino)) else {
            return Ok(()); // unlinked
        };
        let Some(staging) = &of.staging else {
            return Ok(());
        };
        let len = staging
            .file
            .metadata()
            .map_err(|e| FsError::new(libc::EIO, format!("staging: {e}")))?
            .len();
        // Metadata: what the object had (or what was changed while open) — never dropped.
        let (mut metadata, content_headers) = match (&of.pending_meta, of.remote_exists) {
            (Some(m), _) => (m.clone(), of.content_headers.clone()),
            (None, true) => match self.object_meta(of.ino) {
                Ok(m) => (m.metadata, Some(m.content_headers)),
                Err(e) if e.errno == libc::ENOENT => (Metadata::new(), None),
                Err(e) => return Err(self.save_unsaved(of, &key, e)),
            },
            (None, false) => (Metadata::new(), None),
        };
        let mtime = if of.mtime_explicit {
            metadata
                .get("mtime")
                .and_then(super::attr::parse_mtime)
                .unwrap_or_else(now)
        } else {
            let t = now();
            if metadata.get("mtime").is_some() {
                metadata.insert("mtime", format_mtime(t));
            }
            t
        };
        let content_headers = content_headers
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| vec![("content-type".into(), guess_content_type(&key))]);
        let opts = PutOptions {
            metadata: metadata.clone(),
            content_headers: content_headers.clone(),
            if_none_match_any: of.exclusive,
            if_match: None,
        };
        let result = self
            .storage
            .put_file(&self.obj(&key), &staging.file, len, &opts);
        match result {
            Ok(etag) => {
                of.dirty = false;
                of.exclusive = false;
                of.remote_exists = true;
                of.etag = etag.clone();
                of.remote_size = len;
                of.pending_meta = Some(metadata.clone());
                of.content_headers = Some(content_headers.clone());
                if let Some(p) = of.saved.take() {
                    let _ = std::fs::remove_file(&p);
                    let _ = std::fs::remove_file(p.with_extension("key"));
                    log::info!("{key}: uploaded; removed the saved copy {}", p.display());
                }
                let expires = self.expiry();
                let mut t = self.table();
                if let Some(n) = t.get_mut(of.ino) {
                    n.attr.size = len;
                    n.attr.etag = etag.clone();
                    n.attr.mtime = mtime;
                    n.attr_expires = expires;
                    super::attr::apply_metadata(&mut n.attr, &metadata);
                    n.meta = Some(ObjectMeta {
                        metadata,
                        content_headers,
                        etag,
                    });
                    n.meta_expires = expires;
                }
                Ok(())
            }
            Err(e) => {
                // Keep what this upload carried for the retry at release and for the note.
                of.pending_meta = Some(metadata);
                of.content_headers = Some(content_headers);
                let e: FsError = if e.is_precondition_failed() && of.exclusive {
                    FsError::new(
                        libc::EEXIST,
                        format!("{key}: created by someone else meanwhile"),
                    )
                } else {
                    e.into()
                };
                Err(self.save_unsaved(of, &key, e))
            }
        }
    }

    /// Keep the staging file under `unsaved/` after a failed upload; the error becomes EIO.
    fn save_unsaved(&self, of: &mut OpenFile, key: &str, e: FsError) -> FsError {
        let Some(staging) = &of.staging else {
            return e;
        };
        if of.saved.is_none() {
            let stamp = now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let safe: String = key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(150)
                .collect();
            let path = self.unsaved_dir.join(format!("{stamp}-{safe}.data"));
            // A hard link shares the staging file's inode: later writes land in it too.
            let linked = std::fs::hard_link(&staging.path, &path)
                .or_else(|_| std::fs::copy(&staging.path, &path).map(|_| ()));
            match linked {
                Ok(()) => {
                    // The note: the object's name, then the headers its upload carried, so
                    // `s3mount --recover` restores metadata and Content-Type too.
                    let mut note = format!("s3://{}/{key}\n", self.opts.bucket);
                    for (n, v) in of.content_headers.iter().flatten() {
                        note.push_str(&format!("{n}: {v}\n"));
                    }
                    if let Some(m) = &of.pending_meta {
                        for (n, v) in m.iter() {
                            let v = crate::s3::meta::encode_value(v);
                            note.push_str(&format!("{n}: {v}\n"));
                        }
                    }
                    let _ = std::fs::write(path.with_extension("key"), note);
                    of.saved = Some(path);
                }
                Err(err) => log::error!("{key}: could not keep the unsaved content: {err}"),
            }
        }
        if let Some(p) = &of.saved {
            log::error!(
                "{key}: upload failed ({e}); the content is kept in {}",
                p.display()
            );
        }
        FsError::new(
            if e.errno == libc::EEXIST {
                libc::EEXIST
            } else {
                libc::EIO
            },
            e.message,
        )
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

fn errno_of(e: &std::io::Error) -> i32 {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => libc::ENOSPC,
        Some(libc::EDQUOT) => libc::EDQUOT,
        _ => libc::EIO,
    }
}
