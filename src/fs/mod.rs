//! The file system core: POSIX semantics over S3, independent of FUSE.
//!
//! [`S3Fs`] takes inode numbers and plain arguments and returns `Result<T, FsError>`; the thin
//! [`fuse`] module adapts it to `fuser::Filesystem`. The core can therefore be driven directly.
//!
//! State and locking:
//! - `table` ([`InodeTable`]): what is known about keys. Held only for short, non-blocking
//!   sections — never across an HTTP request.
//! - `files`: one [`file::OpenFile`] per inode that has open handles, shared by all its handles,
//!   so a read through one descriptor sees a write through another. Its own mutex may be held
//!   across requests for that one file (an upload at close, a download at open-for-write), never
//!   the table's. Lock order: an `OpenFile` before the table, never the reverse.
//! - `handles`: file handle → inode, and directory handles → listing snapshots.
//!
//! Concerns live in their own files: [`attr`] (stat, chmod/chown/utimes, metadata ↔ mode),
//! [`dir`] (lookup, readdir, mkdir, rmdir, symlink), [`file`] (open/read/write/flush/release,
//! staging files), [`upload`] (the upload at close, streamed uploads while writing, unsaved
//! copies), [`prefetch`] (read-ahead), [`fetch`] (bytes of an object version, through the data
//! cache), [`rename`], [`xattr`].

pub mod attr;
pub mod dir;
pub mod fetch;
pub mod file;
pub mod fuse;
pub mod gate;
pub mod listing;
pub mod mountinfo;
pub mod prefetch;
pub mod rename;
pub mod upload;
pub mod xattr;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::cache::data::{DataCache, DataCacheConfig};
use crate::cache::inode::{InodeTable, NodeKind};
use crate::s3::{private, Storage, StorageError};

pub use attr::FileAttrs;

/// What the data cache gives back at least when a staging file meets a full disk.
const STAGING_ROOM: u64 = 16 * 1024 * 1024;

/// An errno plus a message for the log.
#[derive(Debug)]
pub struct FsError {
    /// The errno answered to the kernel.
    pub errno: i32,
    /// What happened (logged; never shown to the caller, who only sees the errno).
    pub message: String,
}

impl FsError {
    /// An error with this errno and message.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        FsError {
            errno,
            message: message.into(),
        }
    }

    /// ENOENT.
    pub fn not_found(what: impl Into<String>) -> Self {
        FsError::new(libc::ENOENT, what)
    }
}

impl From<StorageError> for FsError {
    fn from(e: StorageError) -> Self {
        FsError::new(e.errno(), e.to_string())
    }
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (errno {})", self.message, self.errno)
    }
}

/// Result of a file system operation.
pub type FsResult<T> = Result<T, FsError>;

/// How the mount behaves; built from the command line in one place (`main`).
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// The bucket.
    pub bucket: String,
    /// Key prefix shown as the root ("" or ending in "/").
    pub prefix: String,
    /// How long attributes and listings are trusted.
    pub metadata_ttl: Duration,
    /// How long a name known absent is trusted.
    pub negative_ttl: Duration,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Owner of files without `x-amz-meta-uid`.
    pub uid: u32,
    /// Group of files without `x-amz-meta-gid`.
    pub gid: u32,
    /// Permission bits of files without `x-amz-meta-mode`.
    pub file_mode: u32,
    /// Permission bits of directories without `x-amz-meta-mode`.
    pub dir_mode: u32,
    /// Where staging files, unsaved uploads and the data cache (`data/`) live.
    pub cache_dir: PathBuf,
    /// Size limit of the on-disk data cache in bytes (0: no data cache).
    pub data_cache_size: u64,
    /// Directories with at most this many entries of unknown metadata get their attributes
    /// completed by parallel HEADs when listed (0: never).
    pub listing_head_limit: usize,
    /// Metadata as `user.*` extended attributes (off: every xattr call is ENOSYS).
    pub xattr: bool,
    /// Bytes of read-ahead held at once across the mount.
    pub prefetch_memory_limit: u64,
}

impl FsOptions {
    /// Defaults for `bucket`: listings of up to 512 unknown entries completed by HEADs, 1 s
    /// metadata TTL (close-to-open consistency without a HEAD per `stat` in a tight loop), the
    /// current user as owner, 0644/0755, a 1 GiB data cache.
    pub fn new(bucket: &str, cache_dir: PathBuf) -> Self {
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsOptions {
            bucket: bucket.to_string(),
            prefix: String::new(),
            metadata_ttl: Duration::from_secs(1),
            negative_ttl: Duration::from_secs(1),
            read_only: false,
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            cache_dir,
            data_cache_size: crate::cache::data::DEFAULT_CACHE_SIZE,
            listing_head_limit: 512,
            xattr: true,
            prefetch_memory_limit: prefetch::DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// The file system.
pub struct S3Fs {
    storage: Storage,
    opts: FsOptions,
    table: Mutex<InodeTable>,
    files: Mutex<HashMap<u64, Arc<Mutex<file::OpenFile>>>>,
    handles: Mutex<HashMap<u64, u64>>,
    dir_handles: Mutex<HashMap<u64, listing::DirHandle>>,
    next_fh: AtomicU64,
    staging_dir: PathBuf,
    unsaved_dir: PathBuf,
    warned: Mutex<std::collections::HashSet<String>>,
    prefetch_pool: prefetch::PrefetchPool,
    data_cache: Option<Arc<DataCache>>,
    /// Keeps uploads out of keys a rename is moving.
    rename_gate: gate::RenameGate,
}

impl std::fmt::Debug for S3Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Fs").field("opts", &self.opts).finish()
    }
}

impl S3Fs {
    /// A file system over `storage` with these options. Creates the staging and unsaved
    /// directories under the cache directory (and the cache directory if missing), private to
    /// this user ([`crate::s3::private`]): they hold the content of files.
    pub fn new(storage: Storage, opts: FsOptions) -> FsResult<Self> {
        let staging_dir = opts.cache_dir.join("staging");
        let unsaved_dir = opts.cache_dir.join("unsaved");
        for d in [&staging_dir, &unsaved_dir] {
            private::create_dir_all(d).map_err(|e| {
                FsError::new(libc::EIO, format!("cannot create {}: {e}", d.display()))
            })?;
        }
        // Staging files from a previous run are unsaved work: move them aside, never delete.
        if let Ok(rd) = std::fs::read_dir(&staging_dir) {
            for entry in rd.flatten() {
                let to = unsaved_dir.join(entry.file_name());
                if std::fs::rename(entry.path(), &to).is_ok() {
                    log::warn!(
                        "found staging file from an earlier run; kept as {}",
                        to.display()
                    );
                }
            }
        }
        let prefetch_pool =
            prefetch::PrefetchPool::new(prefetch::DEFAULT_WORKERS, opts.prefetch_memory_limit);
        let data_cache = if opts.data_cache_size > 0 {
            let dir = opts.cache_dir.join("data");
            match DataCache::open(&dir, DataCacheConfig::new(opts.data_cache_size)) {
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
        Ok(S3Fs {
            table: Mutex::new(InodeTable::new(&opts.prefix)),
            storage,
            opts,
            files: Mutex::new(HashMap::new()),
            rename_gate: gate::RenameGate::default(),
            handles: Mutex::new(HashMap::new()),
            dir_handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            staging_dir,
            unsaved_dir,
            warned: Mutex::new(Default::default()),
            prefetch_pool,
            data_cache,
        })
    }

    /// The options.
    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
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
        lock(&self.table)
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

    fn kind_of(&self, ino: u64) -> FsResult<NodeKind> {
        self.table()
            .get(ino)
            .map(|n| n.kind)
            .ok_or_else(|| FsError::not_found(format!("inode {ino} is unknown")))
    }

    fn obj(&self, key: &str) -> crate::s3::ObjectRef {
        crate::s3::ObjectRef {
            bucket: self.opts.bucket.clone(),
            key: key.to_string(),
        }
    }

    /// Log a message once per distinct text (for hidden keys and shadowed files).
    fn warn_once(&self, msg: String) {
        if lock(&self.warned).insert(msg.clone()) {
            log::warn!("{msg}");
        }
    }

    /// Called at unmount: upload anything still dirty.
    pub fn flush_all(&self) {
        let files: Vec<_> = lock(&self.files).values().cloned().collect();
        for f in files {
            let mut of = lock(&f);
            if let Err(e) = self.upload_if_dirty(&mut of) {
                log::error!("at unmount: {e}");
            }
        }
    }
}

/// Lock a mutex, ignoring poisoning (a panic in one FUSE thread must not wedge the mount).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Validate a file name coming from the kernel.
pub(crate) fn name_str(name: &std::ffi::OsStr) -> FsResult<&str> {
    let s = name.to_str().ok_or_else(|| {
        FsError::new(
            libc::EINVAL,
            format!("{name:?}: file names must be UTF-8 to be S3 keys"),
        )
    })?;
    if s.len() > 255 {
        return Err(FsError::new(
            libc::ENAMETOOLONG,
            format!("{s:?}: longer than 255 bytes"),
        ));
    }
    Ok(s)
}

/// Seconds and nanoseconds since the epoch.
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

impl S3Fs {
    /// The kernel learned about `ino` (lookup, create, readdirplus entry).
    pub fn note_lookup(&self, ino: u64) {
        self.table().add_lookup(ino);
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.table().forget(ino, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadRequest, Overrides, Secret};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// The library on its own (no `s3mount` binary around it) keeps its cache dir private:
    /// what `S3Fs::new` creates is 0700/0600 under the usual umask (022 here; the integration
    /// test `security.rs` runs the mount under 022 explicitly).
    #[test]
    fn what_new_creates_in_the_cache_dir_is_private() {
        let no_env = |_: &str| None;
        let config = crate::Config::load(&LoadRequest {
            file: None,
            allow_insecure: false,
            overrides: Overrides {
                // Never contacted: creating the file system sends no request.
                endpoint: Some("http://127.0.0.1:9".into()),
                region: Some("us-east-1".into()),
                access_key_id: Some("AKIDEXAMPLE".into()),
                secret_access_key: Some(Secret::new("not-a-secret")),
                ..Overrides::default()
            },
            env: &no_env,
            profile: None,
        })
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache/bucket");
        let fs = S3Fs::new(
            Storage::new(&config).unwrap(),
            FsOptions::new("bucket", cache.clone()),
        )
        .unwrap();
        assert!(fs.data_cache.is_some());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        for dir in ["..", ".", "staging", "unsaved", "data", "data/tmp"] {
            assert_eq!(mode(&cache.join(dir)), private::DIR_MODE, "{dir}");
        }
        assert_eq!(mode(&cache.join("data/lock")), private::FILE_MODE);
    }
}
