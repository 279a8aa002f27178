//! Open files: open, create, read, write, flush, fsync, release, truncate.
//!
//! Every inode with open handles has one [`OpenFile`] (see [`super::open_file`]), shared by its
//! handles through the registry of [`super::open_files`].
//!
//! Reading an unmodified file streams it from S3 through a prefetcher: ranged GETs pinned to
//! the ETag seen at open (`If-Match`), so one read never mixes two versions; a sequential
//! reader gets a growing read-ahead fetched in parallel, a random reader exactly the bytes it
//! asked for. With the data cache on, blocks already on disk are read from there and whole
//! blocks fetched are kept (see [`super::fetch`]); a file with a staging file is read from it
//! and nothing of it is ever cached.
//!
//! Writing goes to a staging file under `<cache-dir>/staging/`. Opening an existing object for
//! writing without `O_TRUNC` fills the staging file from the object at the first write. The
//! upload — at `close`, or streamed while a large file is written front to back — lives in
//! [`super::upload`].

use std::time::SystemTime;

use super::acl::CreateMode;
use super::attr::{Caller, FileAttrs, S_IFREG};
use super::buffers::ReadData;
use super::error::{FsError, FsResult};
use super::fetch::ObjectSource;
use super::names::{new_name_str, valid_component};
use super::open_file::{errno_of, OpenFile, Staging};
use super::staging::errno_is_disk_full;
use super::S3Fs;
use crate::cache::inode::{NodeAttr, NodeKind};
use crate::s3::store::MAX_OBJECT_SIZE;
use crate::s3::{private, Metadata};

/// How many times one `read` follows the mount's own copies of its object before it gives up
/// (each time only when a copy moved the file meanwhile; more than one only when copies follow
/// each other, e.g. a rename right after a metadata change).
const MAX_FOLLOWS_PER_READ: u32 = 3;

/// A file handle just opened.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    /// The handle.
    pub fh: u64,
    /// The kernel may keep the pages it has of the file (`FOPEN_KEEP_CACHE`): they are of the
    /// version this open reads (see [`super::page_cache`]).
    pub keep_cache: bool,
    /// The kernel must not cache the file's pages for this handle (`FOPEN_DIRECT_IO`): handles
    /// still open on a version another client replaced share the inode's pages, and would
    /// read this version's bytes from them (see `S3Fs::repin_if_replaced`).
    pub direct_io: bool,
}

impl S3Fs {
    /// `open`: revalidates stale attributes (close-to-open consistency), and says whether the
    /// kernel's cached pages of the file are still good.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
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
        let f = self.open_files.get_or_insert(ino);
        let mut of = f.lock();
        // A concurrent last `release` may have dropped this Arc from the map after we took it:
        // its handles would then find no open file (EBADF). Start again with the current one.
        if !self.open_files.is_current(ino, &f) {
            drop(of);
            return self.open(ino, flags);
        }
        let etag = self.table().get(ino).and_then(|n| n.attr().etag.clone());
        if of.is_unused() {
            of.version_mut().pin(etag, attrs.size);
        } else if let Some(newer) = etag.filter(|e| Some(e.as_str()) != of.version().etag()) {
            self.repin_if_replaced(&mut of, newer, attrs.size)?;
        }
        let fh = self.new_fh();
        let truncated = writable && flags & libc::O_TRUNC != 0;
        if truncated {
            self.ensure_staging(&mut of, false)?;
            of.truncate_staging(0)?;
            if of.version().exists() {
                of.defer_flush_of(fh);
            }
        }
        // Under the file's lock, so a write through another handle comes before or after.
        let direct_io = of.version().has_outdated_handles();
        // A writable open drops the pages too: its first write fills the staging file with
        // the object as it is then, which another client may have replaced since the pages
        // were read (the ETag here can be the TTL old), and the kernel's pages, which the
        // write changes in place, would show the old version around the new bytes.
        let keep_cache = if of.staging().is_some() || direct_io || writable {
            // No version's pages: nothing is stored into them meanwhile either.
            self.kernel_pages.changed(ino);
            false
        } else {
            self.kernel_pages.open(ino, of.version().etag())
        };
        of.add_open();
        drop(of);
        if truncated {
            // As on a disk, `O_TRUNC` of an existing file moves its mtime and ctime, even when
            // it was empty (after the file's lock: the table comes first in the lock order).
            self.table().modified(ino, SystemTime::now());
        }
        self.open_files.add_handle(fh, ino);
        if writable {
            self.kernel_pages.add_writer(ino, fh);
        }
        Ok(Opened {
            fh,
            keep_cache,
            direct_io,
        })
    }

    /// An `open` of a file already open here found an ETag (`etag`, of `size` bytes) other
    /// than the one its handles read: if another client replaced the object, this open reads
    /// the new version (close-to-open, as when no handle is open), and the handles open until
    /// now fail their reads ([`super::version_pin::VersionPin::repin`]). They would still find
    /// the old version's pages in the kernel's page cache of the inode, which the kernel shares
    /// between handles: this open drops them, and until the last of those handles is closed
    /// every open is `FOPEN_DIRECT_IO` and no page is stored, so the new version's bytes never
    /// reach the page cache where an old handle would read them. Nothing changes while the file
    /// holds content of its own (handles share it, as on a disk), nor while one of the mount's
    /// own copies moves the object (readers follow those: the same bytes under a new ETag).
    fn repin_if_replaced(&self, of: &mut OpenFile, etag: String, size: u64) -> FsResult<()> {
        if !of.reads_the_server_only() || self.own_copies.any_for(&self.object_key(of)?) {
            return Ok(());
        }
        log::debug!(
            "inode {}: replaced behind the mount (ETag {:?} -> {etag:?}); open handles read no more",
            of.ino(),
            of.version().etag()
        );
        let handles = self.open_files.handles_of(of.ino());
        of.version_mut().repin(etag, size, handles);
        Ok(())
    }

    /// `create`: a new, empty, dirty file (uploaded at close even if nothing is written), owned
    /// by `caller` when other users are let in (see `S3Fs::new_entry_owner`).
    pub fn create(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        mode: impl Into<CreateMode>,
        flags: i32,
        caller: Option<Caller>,
    ) -> FsResult<(FileAttrs, u64)> {
        self.check_writable()?;
        let name_s = new_name_str(name)?;
        if !valid_component(name_s) {
            return Err(FsError::new(libc::EINVAL, format!("{name_s:?}")));
        }
        match self.lookup_to_create(parent, name) {
            Ok(_) if flags & libc::O_EXCL != 0 => {
                return Err(FsError::new(libc::EEXIST, format!("{name_s} exists")));
            }
            Ok(a) => {
                let fh = self.open(a.ino, flags)?.fh;
                return Ok((self.getattr(a.ino)?, fh));
            }
            Err(e) if e.errno == libc::ENOENT => {}
            Err(e) => return Err(e),
        }
        let key = format!("{}{name_s}", self.key_of(parent)?);
        self.check_key_len(&key)?;
        self.settle_kept(&key)?;
        let owner = self.new_entry_owner(parent, caller, NodeKind::File, mode.into())?;
        let mtime = SystemTime::now();
        let attr = NodeAttr::created(0, mtime, owner.mode, None).owned_by(owner.ids);
        let ino = {
            let mut t = self.table();
            t.entries_changed(parent, mtime);
            // Not "fresh" from the server's point of view, but the open file is the truth.
            t.upsert_child(parent, name_s, NodeKind::File, attr, self.expiry())
        };
        let f = self.open_files.get_or_insert(ino);
        let mut of = f.lock();
        let mut meta = Metadata::new();
        meta.insert("mode", (owner.mode | S_IFREG).to_string());
        owner.write_to(&mut meta);
        of.start_new(flags & libc::O_EXCL != 0, meta, self.new_file_headers(&key));
        self.ensure_staging(&mut of, false)?;
        of.mark_dirty();
        self.kernel_pages.changed(ino);
        of.add_open();
        drop(of);
        let fh = self.new_fh();
        self.open_files.add_handle(fh, ino);
        self.kernel_pages.add_writer(ino, fh);
        Ok((self.attrs_of(ino)?, fh))
    }

    /// A new, empty staging file under the cache dir, private to this user. The staging dir
    /// is made again if it was removed while mounted (a cache cleaner), as at the mount's
    /// start; otherwise every create and write would fail until a remount.
    pub(crate) fn new_staging_file(&self) -> FsResult<(std::fs::File, std::path::PathBuf)> {
        let create = || {
            tempfile::Builder::new()
                .prefix("s3mount-")
                .permissions(private::file_permissions())
                .tempfile_in(&self.staging_dir)
        };
        let tmp = private::create_in(&self.staging_dir, create).map_err(|e| {
            FsError::new(errno_of(&e), format!("cannot create a staging file: {e}"))
        })?;
        tmp.keep()
            .map_err(|e| FsError::new(libc::EIO, format!("cannot keep the staging file: {e}")))
    }

    /// Create the staging file; with `fill`, copy the object's current content into it.
    pub(super) fn ensure_staging(&self, of: &mut OpenFile, fill: bool) -> FsResult<()> {
        if of.staging().is_some() {
            return Ok(());
        }
        let (mut file, path) = self.new_staging_file()?;
        let mut filled_from = None;
        if fill && of.version().exists() {
            let key = self.object_key(of)?;
            let mut result = self.bucket.download(&key, &mut file);
            if let Err(e) = &result {
                let full = errno_is_disk_full(e.errno());
                if full && self.make_room_for_staging(of.version().size()) {
                    result = file
                        .set_len(0)
                        .and_then(|()| std::io::Seek::rewind(&mut file))
                        .map_err(|e| crate::s3::StorageError::io(path.display(), e))
                        .and_then(|()| self.bucket.download(&key, &mut file));
                }
            }
            match result {
                Ok(info) => filled_from = Some((info.etag, info.size)),
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(e.into());
                }
            }
        }
        of.attach_staging(Staging::new(file, path), filled_from);
        Ok(())
    }

    /// `read`. A read that fails while one of this mount's own copies touches its object (a
    /// metadata change, a rename) waits for that copy and tries again on the version the copy
    /// moved the file to: the same bytes under a new ETag or key (see [`super::own_copies`]).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<ReadData> {
        let f = self.open_files.by_handle(fh)?;
        let mut follows = 0;
        loop {
            let mut of = f.lock();
            if of.version().is_outdated(fh) {
                return Err(FsError::new(
                    libc::EIO,
                    format!(
                        "read of inode {}: another client replaced the version this handle read",
                        of.ino()
                    ),
                ));
            }
            let pinned = self.pinned_version(&of);
            let result = self.read_pinned(&mut of, offset, size);
            if result.is_ok() {
                self.table().accessed(of.ino(), SystemTime::now());
            }
            let (Err(_), Some(key)) = (&result, &pinned.0) else {
                return result;
            };
            if follows == MAX_FOLLOWS_PER_READ {
                return result;
            }
            // Not holding the file: a copy re-pins it before it is over (maybe already before
            // this wait). Only this mount moves an open file's key or ETag (a copy, or an
            // upload through another handle, whose content the file then reads).
            drop(of);
            self.own_copies.wait_for(key);
            let of = f.lock();
            let now = self.pinned_version(&of);
            if now == pinned {
                return result;
            }
            log::debug!(
                "read of inode {}: {:?} (ETag {:?}) was moved by this mount meanwhile; reading {:?} (ETag {:?})",
                of.ino(),
                pinned.0,
                pinned.1,
                now.0,
                now.1
            );
            follows += 1;
        }
    }

    /// The key and ETag an open file reads.
    fn pinned_version(&self, of: &OpenFile) -> (Option<String>, Option<String>) {
        (
            self.table().key_of(of.ino()),
            of.version().etag().map(str::to_string),
        )
    }

    /// Read from the staging file, or from the object version the file is pinned to.
    fn read_pinned(&self, of: &mut OpenFile, offset: u64, size: u32) -> FsResult<ReadData> {
        self.settle_copy(of)?;
        if let Some(r) = of.read_staging(offset, size) {
            return r.map(ReadData::from);
        }
        let key = self.object_key(of)?;
        let ino = of.ino();
        let result = of.version_mut().read(
            ino,
            self.bucket.obj(&key),
            &self.prefetch_pool,
            offset,
            size,
            |obj, etag, size| {
                ObjectSource::new(
                    self.bucket.clone(),
                    obj,
                    etag,
                    size,
                    self.data_cache.clone().zip(self.cache_writer.clone()),
                )
                .for_inode(self.kernel_pages.clone(), ino)
            },
        );
        if result.is_err() {
            // Make the next open look at the server again (the object may have changed).
            self.table().expire(of.ino());
        }
        result
    }

    /// `write` into the staging file.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8], append: bool) -> FsResult<u32> {
        self.check_writable()?;
        let f = self.open_files.by_handle(fh)?;
        let mut of = f.lock();
        self.settle_copy(&mut of)?;
        self.kernel_pages.changed(of.ino());
        self.ensure_staging(&mut of, true)?;
        // `append` (the file was opened `O_APPEND`): at the end of the file as it is now, under
        // its lock. Without the kernel's writeback cache the file system places an append
        // (libfuse's rule): the kernel's offset is its own idea of the size, which attributes
        // it was handed meanwhile (a listing's, another handle's) can have made stale — a write
        // there would overwrite the start of the file.
        let offset = match of.local_size() {
            Some(end) if append => end,
            _ => offset,
        };
        // As a disk at its largest file size: EFBIG at the limit, a short write up to it.
        let room = MAX_OBJECT_SIZE
            .checked_sub(offset)
            .filter(|r| *r > 0)
            .ok_or_else(|| {
                FsError::new(libc::EFBIG, format!("write at {offset}: past S3's 5 TiB"))
            })?;
        let data = &data[..data.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        // Short when the disk filled up part way (the next write gets ENOSPC).
        let n = of.write_staging(offset, data, |bytes| self.make_room_for_staging(bytes))?;
        // As on a disk, a write moves the mtime and the ctime (an mtime set before it is
        // superseded: the upload stores the time of the upload).
        self.table().modified(of.ino(), SystemTime::now());
        let queue = self.after_write(&mut of, offset, offset + n as u64);
        drop(of);
        // Back-pressure of a streamed upload, without holding the file's lock.
        if let Some(q) = queue {
            q.wait_for_room();
        }
        Ok(n as u32)
    }

    /// `flush` (each `close`): upload if dirty — except when the descriptor that truncated an
    /// existing object with `O_TRUNC` is closed before anything was written. A shell redirect
    /// (`cmd > file`) and `dd of=file` open the file, `dup2` it to stdout and close the
    /// original descriptor before writing: uploading then would replace the object with an
    /// empty one for as long as the program writes (and for good if it never finishes). The
    /// truncation is uploaded with the data at the next `close`, or at the last `release`.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let f = self.open_files.by_handle(fh)?;
        let mut of = f.lock();
        if of.flush_deferred(fh) {
            log::debug!("flush of handle {fh}: truncated and nothing written yet; upload deferred");
            return Ok(());
        }
        self.upload_if_dirty(&mut of)
    }

    /// `fsync`: upload if dirty.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let f = self.open_files.by_handle(fh)?;
        let mut of = f.lock();
        self.upload_if_dirty(&mut of)
    }

    /// `release`: the last one uploads what is still dirty and drops the staging file.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let f = self.open_files.by_handle(fh)?;
        self.open_files.remove_handle(fh);
        self.kernel_pages.release(fh);
        let mut of = f.lock();
        if !of.close_handle(fh) {
            return Ok(());
        }
        let result = self.upload_if_dirty(&mut of);
        of.remove_staging();
        self.release_kept(&mut of);
        // Still holding the file's lock (lock order: file → map), so an `open` that already
        // took this Arc from the map sees it is gone and takes a new one (see `open`).
        self.open_files.remove(of.ino(), &f);
        drop(of);
        result
    }

    /// `truncate` (setattr size): through the open file, or a one-off staging + upload.
    pub(crate) fn truncate(&self, ino: u64, size: u64) -> FsResult<()> {
        if size > MAX_OBJECT_SIZE {
            return Err(FsError::new(
                libc::EFBIG,
                format!("truncate to {size}: past S3's 5 TiB"),
            ));
        }
        // No store into the kernel's pages while the size changes (a store past the new end
        // would move it back): a writer for the time of the call.
        let guard = self.new_fh();
        self.kernel_pages.add_writer(ino, guard);
        let result = self.truncate_as_writer(ino, size);
        self.kernel_pages.release(guard);
        result
    }

    fn truncate_as_writer(&self, ino: u64, size: u64) -> FsResult<()> {
        let (f, temporary) = match self.open_files.get(ino) {
            Some(f) => (f, None),
            None => {
                let fh = self.open(ino, libc::O_RDWR)?.fh;
                let f = self.open_files.by_handle(fh)?;
                self.open_files.remove_handle(fh);
                self.kernel_pages.release(fh);
                (f, Some(fh))
            }
        };
        let mut of = f.lock();
        // The last `release` (asynchronous after `close`) may have run since the lookup: then
        // nobody would upload the change, so do it here as for a temporary open.
        let orphan = temporary.is_none() && of.is_unused();
        self.kernel_pages.changed(ino);
        let result = (|| {
            self.settle_copy(&mut of)?;
            self.ensure_staging(&mut of, size > 0)?;
            of.truncate_staging(size)?;
            if temporary.is_some() || orphan {
                self.upload_if_dirty(&mut of)?;
            }
            Ok(())
        })();
        if let Some(fh) = temporary {
            of.close_handle(fh);
        }
        if (temporary.is_some() || orphan) && of.is_unused() {
            of.remove_staging();
            drop(of);
            self.open_files.forget_if_unused(ino);
        }
        result
    }

    /// Upload a dirty open file now (before a rename or a copy reads the object).
    pub(crate) fn flush_inode(&self, ino: u64) -> FsResult<()> {
        match self.open_files.get(ino) {
            Some(f) => self.upload_if_dirty(&mut f.lock()),
            None => Ok(()),
        }
    }
}
