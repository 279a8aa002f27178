//! The file system core: POSIX semantics over S3, independent of FUSE.
//!
//! [`S3Fs`] takes inode numbers and plain arguments and returns `Result<T, FsError>`; the thin
//! [`fuse`] module adapts it to `fuser::Filesystem`. The core can therefore be driven directly.
//!
//! State and locking:
//! - `table` ([`InodeTable`]): what is known about keys. Held only for short, non-blocking
//!   sections — never across an HTTP request.
//! - `open_files` ([`open_files::OpenFiles`]): one [`open_file::OpenFile`] per inode that has
//!   open handles, shared by all its handles, and file handle → inode. The lock order of the
//!   whole file system is documented there, once.
//! - `dir_handles`: directory handles → listing snapshots.
//!
//! Rooms, one concern each (no two import each other):
//! - the door: [`fuse`] (the thin `fuser::Filesystem` adapter; its conversions, and what its
//!   replies decide, in `fuse_reply`) with [`unsupported`] (the operations it answers at once
//!   with an errno), [`mountinfo`];
//! - names and directories: [`lookup`] (what a name is: the table, or the server), [`dir`]
//!   (mkdir, rmdir, unlink, symlink, mknod), [`listing`]
//!   (readdir, page by page) with [`listing_heads`] (the metadata a listing lacks), [`rename`] with [`gate`] (uploads wait for renames of their
//!   keys), [`names`] (which names can be keys and which keys can be names);
//! - open files: [`open_files`] (the registry and the lock order), [`open_file`] (one file's
//!   state and what touches only it) with [`version_pin`] (the object version it reads) and
//!   [`staging`] (its local copy), [`page_cache`] (which version the kernel's cached pages
//!   of a file are), [`file`](mod@file) (open/read/write/flush/release/truncate),
//!   [`upload`] (the upload at close and while writing) with [`upload_plan`] (what an upload
//!   carries), [`unsaved`] (copies kept after a failed upload, and their notes), [`prefetch`]
//!   (read-ahead, and when a random reader's object is fetched whole by [`whole`]) over
//!   [`fetch`] (bytes of an object version, through the data cache), in the buffers of
//!   [`buffers`], [`own_copies`] (reads that meet the mount's own copies wait for them and
//!   follow them), [`unlinked`] (files unlinked while open keep their bytes until the last
//!   close), [`copy`] (`copy_file_range`: a whole object copied on the server), [`allocate`]
//!   (`fallocate`: a size grown, a range zeroed, in the staging file);
//! - metadata: [`metadata`] (an inode's HEAD metadata and the one door for changing it),
//!   [`attr`] (stat, chmod/chown/utimes, mode/owner/mtime in metadata), [`xattr`] (with
//!   [`xattr_json`], the other names as s3fs keeps them, and [`acl`], the POSIX ACLs);
//! - [`error`] (`FsError`), [`options`] (`FsOptions`).

pub mod acl;
pub mod allocate;
pub mod attr;
pub mod buffers;
pub mod copy;
pub mod dir;
pub mod error;
pub mod fetch;
pub mod file;
pub mod fuse;
mod fuse_reply;
pub mod gate;
pub mod listing;
pub mod listing_heads;
pub mod lookup;
pub mod metadata;
pub mod mountinfo;
pub mod names;
pub mod open_file;
pub mod open_files;
pub mod options;
pub mod own_copies;
pub mod page_cache;
pub mod prefetch;
pub mod rename;
pub mod staging;
pub mod unlinked;
pub mod unsaved;
pub mod unsupported;
pub mod upload;
pub mod upload_plan;
pub mod version_pin;
pub mod whole;
pub mod xattr;
pub mod xattr_json;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};

use crate::cache::data::{DataCache, DataCacheConfig};
use crate::cache::inode::{InodeTable, NodeKind};
use crate::cache::writer::{CacheWriter, WRITE_BEHIND_BYTES};
use crate::s3::{private, Bucket};

pub use attr::FileAttrs;
pub use error::{FsError, FsResult};
pub use fuse_reply::KernelPageSink;
pub use options::FsOptions;

/// How long unmount waits for blocks queued to be cached: the queue holds at most
/// `WRITE_BEHIND_BYTES`, which a working disk writes well within this.
const CACHE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the data cache gives back at least when a staging file meets a full disk.
const STAGING_ROOM: u64 = 16 * 1024 * 1024;

/// The file system.
pub struct S3Fs {
    bucket: Bucket,
    opts: FsOptions,
    table: Mutex<InodeTable>,
    open_files: open_files::OpenFiles,
    dir_handles: Mutex<HashMap<u64, listing::DirHandle>>,
    next_fh: AtomicU64,
    staging_dir: PathBuf,
    unsaved_dir: PathBuf,
    /// Held for the mount's life: tells a mount starting on the same cache directory that the
    /// staging files there are being written ([`unsaved::claim_staging`]).
    _staging_lock: Option<std::fs::File>,
    warned: Mutex<std::collections::HashSet<String>>,
    /// The directories whose deferred HEADs are being made ([`listing_heads`]).
    deferred_heads: listing_heads::DeferredRounds,
    prefetch_pool: prefetch::PrefetchPool,
    data_cache: Option<Arc<DataCache>>,
    /// Stores the blocks sequential reads fetch, behind the readers.
    cache_writer: Option<Arc<CacheWriter>>,
    /// Which version the kernel's cached pages of each file came from.
    kernel_pages: Arc<page_cache::KernelPages>,
    /// Keeps uploads out of keys a rename is moving.
    rename_gate: gate::RenameGate,
    /// The mount's own copies in flight, which open readers follow.
    own_copies: own_copies::OwnCopies,
    /// Objects of files unlinked while open, kept until their last close (names hidden).
    kept: unlinked::KeptObjects,
    /// Symlink targets already read, by key and ETag (see `S3Fs::readlink`).
    symlink_targets: crate::cache::symlinks::SymlinkTargets,
    /// The `prefix/` marker of a prefix mount's root was read (see `S3Fs::root_attrs`).
    root_marker_read: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for S3Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Fs").field("opts", &self.opts).finish()
    }
}

impl S3Fs {
    /// A file system over `bucket` (its store, transfer settings and upload journal) with these
    /// options. Creates the staging and unsaved directories under the cache directory (and the
    /// cache directory if missing), private to this user ([`crate::s3::private`]): they hold
    /// the content of files.
    pub fn new(bucket: Bucket, opts: FsOptions) -> FsResult<Self> {
        let staging_dir = opts.cache_dir.join("staging");
        let unsaved_dir = opts.cache_dir.join("unsaved");
        for d in [&staging_dir, &unsaved_dir] {
            private::create_dir_all(d).map_err(|e| {
                FsError::new(libc::EIO, format!("cannot create {}: {e}", d.display()))
            })?;
        }
        let staging_lock = unsaved::claim_staging(&opts.cache_dir, &staging_dir, &unsaved_dir);
        let prefetch_pool =
            prefetch::PrefetchPool::new(opts.prefetch_workers, opts.prefetch_memory_limit);
        let data_cache = if opts.data_cache_size > 0 {
            let dir = opts.cache_dir.join("data");
            let config = DataCacheConfig {
                min_free_percent: opts.data_cache_min_free_percent,
                ..DataCacheConfig::new(opts.data_cache_size)
            };
            match DataCache::open(&dir, config) {
                Ok(c) => {
                    if c.max_bytes() < c.block_size() {
                        log::warn!(
                            "data cache: {} bytes is less than one block ({}): nothing will be cached",
                            c.max_bytes(),
                            c.block_size()
                        );
                    }
                    log::info!(
                        "data cache: {} of at most {} bytes in {}",
                        c.used_bytes(),
                        c.max_bytes(),
                        dir.display()
                    );
                    Some(Arc::new(c))
                }
                Err(e) => {
                    log::warn!("data cache off: {}: {e}", dir.display());
                    None
                }
            }
        } else {
            None
        };
        let cache_writer = data_cache
            .as_ref()
            .map(|c| Arc::new(CacheWriter::new(c.clone(), WRITE_BEHIND_BYTES)));
        Ok(S3Fs {
            table: Mutex::new(InodeTable::new(&opts.prefix)),
            bucket,
            opts,
            open_files: open_files::OpenFiles::default(),
            rename_gate: gate::RenameGate::default(),
            own_copies: own_copies::OwnCopies::default(),
            kept: unlinked::KeptObjects::default(),
            dir_handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            staging_dir,
            unsaved_dir,
            _staging_lock: staging_lock,
            warned: Mutex::new(Default::default()),
            deferred_heads: Default::default(),
            prefetch_pool,
            data_cache,
            cache_writer,
            kernel_pages: Arc::default(),
            symlink_targets: Default::default(),
            root_marker_read: Default::default(),
        })
    }

    /// Where whole fetches put pages into the kernel's page cache (see [`page_cache`]); until
    /// given, nowhere.
    pub fn set_page_sink(&self, sink: Arc<dyn page_cache::PageSink>) {
        self.kernel_pages.set_sink(sink);
    }

    /// The options the mount runs with.
    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    /// The bucket mounted.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The data cache, if on.
    pub fn data_cache(&self) -> Option<&Arc<DataCache>> {
        self.data_cache.as_ref()
    }

    /// After ENOSPC/EDQUOT on a staging file: evict data cache blocks so the write can be
    /// retried. True if anything was freed.
    fn make_room_for_staging(&self, bytes: u64) -> bool {
        self.data_cache
            .as_ref()
            .is_some_and(|c| c.release(bytes.max(STAGING_ROOM)) > 0)
    }

    fn table(&self) -> MutexGuard<'_, InodeTable> {
        self.table.lock()
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn expiry(&self) -> Instant {
        Instant::now() + self.opts.metadata_ttl
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.opts.read_only {
            Err(FsError::new(libc::EROFS, "read-only mount"))
        } else {
            Ok(())
        }
    }

    /// The key of an inode, or ENOENT if it was unlinked.
    fn key_of(&self, ino: u64) -> FsResult<String> {
        self.table()
            .key_of(ino)
            .ok_or_else(|| FsError::not_found(format!("inode {ino} is gone")))
    }

    /// Write one key — the one `key_of` gives — with `write`, once no rename moves it (see
    /// [`gate`]): `key_of` is asked again after a rename that covered the key, so the write
    /// goes to the name as it is once the rename is over.
    fn write_key<T>(
        &self,
        key_of: impl Fn() -> FsResult<String>,
        write: impl FnOnce(&str) -> FsResult<T>,
    ) -> FsResult<T> {
        let failed = std::cell::Cell::new(None);
        let ticket = self
            .rename_gate
            .write(|| key_of().map_err(|e| failed.set(Some(e))).ok());
        let Some((key, _writing)) = ticket else {
            return Err(failed
                .take()
                .unwrap_or_else(|| FsError::not_found("the name is gone")));
        };
        write(&key)
    }

    fn kind_of(&self, ino: u64) -> FsResult<NodeKind> {
        self.table()
            .get(ino)
            .map(|n| n.kind())
            .ok_or_else(|| FsError::not_found(format!("inode {ino} is unknown")))
    }

    /// Log a message once per distinct text (for hidden keys and shadowed files).
    fn warn_once(&self, msg: String) {
        if self.warned.lock().insert(msg.clone()) {
            log::warn!("{msg}");
        }
    }

    /// Called at unmount: upload anything still dirty, delete the objects kept for files
    /// unlinked while open, and write the blocks waiting to be cached (for at most
    /// `CACHE_FLUSH_TIMEOUT`).
    pub fn flush_all(&self) {
        for f in self.open_files.all() {
            let mut of = f.lock();
            if let Err(e) = self.upload_if_dirty(&mut of) {
                log::error!("at unmount: {e}");
            }
            self.release_kept(&mut of);
        }
        if let Some(w) = &self.cache_writer {
            if !w.flush(CACHE_FLUSH_TIMEOUT) {
                log::info!(
                    "at unmount: {} bytes not written to the data cache",
                    w.queued()
                );
            }
        }
    }
}

impl S3Fs {
    /// The kernel learned about `ino` (lookup, create, readdirplus entry).
    pub fn note_lookup(&self, ino: u64) {
        self.table().add_lookup(ino);
    }

    /// The kernel forgot `n` lookups of `ino` (it sends them when it drops the inode, and its
    /// cached pages with it).
    pub fn forget(&self, ino: u64, n: u64) {
        self.kernel_pages.forget(ino);
        self.table().forget(ino, n);
    }
}

#[cfg(test)]
mod tests;
