//! Unit tests of [`S3Fs`] against [`MemoryStore`]: the file system's semantics
//! (docs/semantics.md, row by row), lost replies and injected failures, and the reference
//! model (`model.rs`), in milliseconds and without a server or FUSE.
//!
//! The harness ([`Fx`]) drives the core as the kernel and the FUSE adapter do: paths are
//! resolved one `lookup` at a time, `open(O_CREAT)` is a lookup then `create` or `open`,
//! `close` is `flush` then `release`, writes come in pieces of at most 1 MiB, and the checks
//! the kernel makes before it calls the file system (EEXIST for `mkdir` of an existing name,
//! EISDIR/ENOTDIR in `unlink`/`rmdir`/`rename`, a rename into its own subtree…) are made
//! here, as the VFS would. What is on the "server" is read from the store directly.
//!
//! The real-mount tests in tests/ keep what only they can show: the kernel's own caching and
//! calls, real programs, the HTTP client's retries and a real server's answers.

mod acl;
mod allocate;
mod copy;
mod failures;
mod files;
mod fx_names;
mod listing_heads;
mod lost_replies;
mod metadata;
mod model;
mod names;
mod posix;
mod reads;
mod reference_model;
mod rename;
mod tags;
mod unlinked;
mod visibility;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::attr::AttrChange;
use super::dir::DirEntry;
use super::xattr::{sized, XattrReply};
use super::{FileAttrs, FsError, FsOptions, FsResult, S3Fs};
// Modes of files and directories the tests make (0666/0777 under the usual umask 022), as the
// reference model expects them.
use crate::cache::inode::{NodeKind, ROOT_INO};
use crate::s3::memory::{MemoryStore, StoredObject};
use crate::s3::{private, Bucket, Metadata, Operation, RetryPolicy, TransferConfig};
use reference_model::{DIR_PERM as DIR_MODE, FILE_PERM as FILE_MODE};

/// The bucket every test mounts.
pub(super) const BUCKET: &str = "b";
/// The most the kernel writes in one call (fuse.rs asks for 1 MiB writes).
const KERNEL_WRITE: usize = 1024 * 1024;
/// What a reader asks for per `read` (the kernel's usual 128 KiB).
const KERNEL_READ: u32 = 128 * 1024;
pub(super) const MIB: usize = 1024 * 1024;
/// Read-ahead threads of a test's mount.
const PREFETCH_WORKERS: usize = 2;
/// A file system in memory on Linux.
const SHM: &str = "/dev/shm";

/// The loops above single requests (looks after a lost reply, a resumed body) count attempts
/// as the client's policy does, but pause a millisecond: tests count, they do not time.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        budget: Duration::from_secs(60),
    }
}

/// How a test's file system is set up.
pub(super) struct Setup {
    store: MemoryStore,
    transfer: TransferConfig,
    edit: Box<dyn FnOnce(&mut FsOptions)>,
}

impl Setup {
    /// Transfer settings (small ones make streamed and multipart uploads cheap).
    pub fn transfer(mut self, transfer: TransferConfig) -> Self {
        self.transfer = transfer;
        self
    }

    /// Change the options.
    pub fn opts(mut self, edit: impl FnOnce(&mut FsOptions) + 'static) -> Self {
        let before = self.edit;
        self.edit = Box::new(move |o| {
            before(o);
            edit(o)
        });
        self
    }

    /// Attributes, listings and misses trusted for `ttl`.
    pub fn ttl(self, ttl: Duration) -> Self {
        self.opts(move |o| {
            o.metadata_ttl = ttl;
            o.negative_ttl = ttl;
        })
    }

    /// Mount the store.
    pub fn mount(self) -> Fx {
        let dir = scratch_dir();
        let mut opts = FsOptions::new(dir.path().join("cache"));
        // Nothing is trusted unless a test says so: every `stat` looks at the server.
        opts.metadata_ttl = Duration::ZERO;
        opts.negative_ttl = Duration::ZERO;
        opts.data_cache_size = 64 * MIB as u64;
        // What is cached must not depend on the machine's free disk space.
        opts.data_cache_min_free_percent = 0;
        // Enough for parallel parts; a mount's threads cost more than the tests' small reads.
        opts.prefetch_workers = PREFETCH_WORKERS;
        (self.edit)(&mut opts);
        let bucket = Bucket::new(Arc::new(self.store.clone()), BUCKET)
            .with_transfer(self.transfer)
            .with_retry(quick_retries());
        let fs = S3Fs::new(bucket, opts).unwrap();
        Fx {
            store: self.store,
            fs,
            _dir: dir,
        }
    }
}

/// Where tests keep cache dirs: in memory (`/dev/shm`) where there is such a file system, so a
/// mount costs no disk I/O (thousands are made per run); else the usual temporary directory.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new(SHM);
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A store with the bucket, to be mounted.
pub(super) fn setup() -> Setup {
    setup_over(MemoryStore::with_bucket(BUCKET))
}

/// `store`, to be mounted.
pub(super) fn setup_over(store: MemoryStore) -> Setup {
    Setup {
        store,
        transfer: TransferConfig::default(),
        edit: Box::new(|_| {}),
    }
}

/// A mount of an empty bucket with the defaults of [`Setup::mount`].
pub(super) fn fx() -> Fx {
    setup().mount()
}

/// Small multipart settings: files over 6 MiB go multipart, in 5 MiB parts (S3's minimum).
pub(super) fn small_parts() -> TransferConfig {
    TransferConfig {
        multipart_threshold: 6 * MIB as u64,
        part_size: 5 * MIB as u64,
        parallelism: 2,
        ..TransferConfig::default()
    }
}

/// A mounted [`S3Fs`] over a [`MemoryStore`], with the calls a kernel makes by path.
pub(super) struct Fx {
    pub store: MemoryStore,
    pub fs: S3Fs,
    /// The cache dir, removed with the mount.
    _dir: tempfile::TempDir,
}

/// The errno of a failed call (panics on success).
pub(super) fn errno<T: std::fmt::Debug>(r: FsResult<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.errno,
    }
}

/// `(parent path, name)` of a path ("" is the root).
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn os(name: &str) -> &OsStr {
    OsStr::new(name)
}

/// Bytes of a given length, different for each seed.
pub(super) fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// Metadata from pairs.
pub(super) fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().copied().collect()
}

impl Fx {
    // ---- the server side ------------------------------------------------------------------

    /// The object under `key`, as stored.
    pub fn object(&self, key: &str) -> Option<StoredObject> {
        self.store.object(BUCKET, key)
    }

    /// The bytes stored under `key` (panics if there is none).
    pub fn data(&self, key: &str) -> Vec<u8> {
        self.object(key)
            .unwrap_or_else(|| panic!("no object {key:?}; keys: {:?}", self.keys()))
            .data
    }

    /// Every key of the bucket.
    pub fn keys(&self) -> Vec<String> {
        self.store.keys(BUCKET)
    }

    /// Another client stores `data` under `key`.
    pub fn put_behind(&self, key: &str, data: &[u8]) -> String {
        self.store.put_behind(BUCKET, key, data)
    }

    /// Requests of `op` so far.
    pub fn count(&self, op: Operation) -> u64 {
        self.store.count(op)
    }

    /// What `unsaved/` holds: (content, the key its note names).
    pub fn unsaved(&self) -> Vec<(Vec<u8>, Option<String>)> {
        let dir = self.fs.options().cache_dir.join("unsaved");
        let mut out: Vec<_> = super::unsaved::find(&dir)
            .unwrap()
            .into_iter()
            .map(|f| match f {
                super::unsaved::Found::Kept { data, note } => (
                    std::fs::read(data).unwrap(),
                    note.map(|n| {
                        assert_eq!(n.obj.bucket, BUCKET);
                        n.obj.key
                    }),
                ),
                super::unsaved::Found::Leftover(data) => (std::fs::read(data).unwrap(), None),
            })
            .collect();
        out.sort();
        out
    }

    /// A new mount of the same store (no inode table, no cache), with the defaults.
    pub fn remount(&self) -> Fx {
        setup_over(self.store.clone()).mount()
    }

    // ---- paths, as the kernel resolves them -----------------------------------------------

    /// The attributes of `path` by lookups from the root (what `stat` does).
    pub fn stat(&self, path: &str) -> FsResult<FileAttrs> {
        if path.is_empty() {
            return self.fs.getattr(ROOT_INO);
        }
        let (parent, name) = split(path);
        let p = self.dir_ino(parent)?;
        let a = self.fs.lookup(p, os(name))?;
        self.fs.note_lookup(a.ino);
        Ok(a)
    }

    /// The inode of `path`.
    pub fn ino(&self, path: &str) -> FsResult<u64> {
        self.stat(path).map(|a| a.ino)
    }

    /// The inode of the directory `path` (ENOTDIR if it is not one).
    fn dir_ino(&self, path: &str) -> FsResult<u64> {
        let a = self.stat(path)?;
        if a.kind != NodeKind::Dir {
            return Err(FsError::new(
                libc::ENOTDIR,
                format!("{path}: not a directory"),
            ));
        }
        Ok(a.ino)
    }

    /// `getattr` of `path` (after the lookups).
    pub fn getattr(&self, path: &str) -> FsResult<FileAttrs> {
        let ino = self.ino(path)?;
        self.fs.getattr(ino)
    }

    // ---- files ----------------------------------------------------------------------------

    /// `open(path, flags)`; with `O_CREAT`, a lookup and then `create` or `open`, as the kernel
    /// does (which answers EEXIST for `O_EXCL` and EISDIR for a directory itself).
    pub fn open(&self, path: &str, flags: i32) -> FsResult<u64> {
        let (parent, name) = split(path);
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let found = if flags & libc::O_CREAT != 0 {
            let p = self.dir_ino(parent)?;
            match self.fs.lookup(p, os(name)) {
                Ok(a) => Some(a),
                Err(e) if e.errno == libc::ENOENT => {
                    let (a, fh) = self.fs.create(p, os(name), FILE_MODE, flags, None)?;
                    self.fs.note_lookup(a.ino);
                    return Ok(fh);
                }
                Err(e) => return Err(e),
            }
        } else {
            Some(self.stat(path)?)
        };
        let a = found.expect("found or created");
        if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
            return Err(FsError::new(libc::EEXIST, format!("{path} exists")));
        }
        if a.kind == NodeKind::Dir && writes {
            return Err(FsError::new(libc::EISDIR, format!("{path} is a directory")));
        }
        // The kernel keeps O_CREAT and O_EXCL to itself.
        self.fs
            .open(a.ino, flags & !(libc::O_CREAT | libc::O_EXCL))
            .map(|o| o.fh)
    }

    /// `pwrite`, in the kernel's pieces.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<()> {
        for (i, piece) in data.chunks(KERNEL_WRITE).enumerate() {
            let at = offset + (i * KERNEL_WRITE) as u64;
            let n = self.fs.write(fh, at, piece, false)?;
            assert_eq!(n as usize, piece.len(), "short write");
        }
        Ok(())
    }

    /// `pread` of up to `size` bytes.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.fs.read(fh, offset, size).map(|d| d.to_vec())
    }

    /// Read from `offset` to the end, as `cat` does.
    pub fn read_to_end(&self, fh: u64) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let piece = self.read(fh, out.len() as u64, KERNEL_READ)?;
            if piece.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&piece);
        }
    }

    /// Wait until the blocks read so far are in the data cache: they are written behind the
    /// readers, by a thread of their own.
    pub fn cached(&self) {
        if let Some(w) = &self.fs.cache_writer {
            assert!(w.flush(Duration::from_secs(10)), "blocks still queued");
        }
    }

    /// `close`: `flush` (its result is close's), then `release`.
    pub fn close(&self, fh: u64) -> FsResult<()> {
        let flushed = self.fs.flush(fh);
        let released = self.fs.release(fh);
        if flushed.is_ok() {
            // The kernel ignores release's result; a failure there must have shown in flush.
            assert!(
                released.is_ok(),
                "release failed after a good flush: {released:?}"
            );
        }
        flushed
    }

    /// `echo -n data > path`: create or truncate, write, close.
    pub fn put(&self, path: &str, data: &[u8]) -> FsResult<()> {
        self.write_file(path, libc::O_TRUNC, data)
    }

    /// Create `path` with `O_EXCL` (as `cp` does), write, close.
    pub fn create_excl(&self, path: &str, data: &[u8]) -> FsResult<()> {
        self.write_file(path, libc::O_EXCL, data)
    }

    /// Open with `O_WRONLY | O_CREAT | flags`, write `data`, close.
    fn write_file(&self, path: &str, flags: i32, data: &[u8]) -> FsResult<()> {
        let fh = self.open(path, libc::O_WRONLY | libc::O_CREAT | flags)?;
        let written = self.write(fh, 0, data);
        let closed = self.close(fh);
        written.and(closed)
    }

    /// The content of `path`, as `cat` reads it.
    pub fn cat(&self, path: &str) -> FsResult<Vec<u8>> {
        let fh = self.open(path, libc::O_RDONLY)?;
        let r = self.read_to_end(fh);
        let closed = self.close(fh);
        r.and_then(|d| closed.map(|()| d))
    }

    /// `truncate(path, len)`.
    pub fn truncate(&self, path: &str, len: u64) -> FsResult<()> {
        let a = self.stat(path)?;
        if a.kind == NodeKind::Dir {
            return Err(FsError::new(libc::EISDIR, format!("{path} is a directory")));
        }
        self.fs
            .setattr(
                a.ino,
                AttrChange {
                    size: Some(len),
                    ..AttrChange::default()
                },
            )
            .map(|_| ())
    }

    /// `chmod`, `chown`, `touch -m -d`: one `setattr`.
    pub fn setattr(&self, path: &str, change: AttrChange) -> FsResult<FileAttrs> {
        let ino = self.ino(path)?;
        self.fs.setattr(ino, change)
    }
}

/// `f` (3 MiB, no data cache) is open for reading and read from; then `copy`, one of the
/// mount's own copies of it (a metadata change, a rename), gives it a new ETag; the reader
/// reads on through the same handle and gets the same bytes.
pub(super) fn read_across(copy: impl FnOnce(&Fx)) {
    let fx = setup().opts(|o| o.data_cache_size = 0).mount();
    let data = bytes(3 * MIB, 9);
    fx.put_behind("f", &data);
    let fh = fx.open("f", libc::O_RDONLY).unwrap();
    assert_eq!(fx.read(fh, 0, 100).unwrap(), &data[..100]);
    // The store's ETags become opaque, so the copy's differs from the original's, as a copy
    // of a multipart object's does.
    fx.store.opaque_etags();
    copy(&fx);
    assert_eq!(
        fx.read(fh, 2 * MIB as u64, 100).unwrap(),
        &data[2 * MIB..2 * MIB + 100]
    );
    fx.close(fh).unwrap();
}

/// A time with whole seconds, for `utimes`.
pub(super) fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// The library on its own (no `s3mount` binary around it) keeps its cache dir private: what
/// `S3Fs::new` creates is 0700/0600 under the usual umask (022 here; the integration test
/// `security.rs` runs the mount under 022 explicitly).
#[test]
fn what_new_creates_in_the_cache_dir_is_private() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache/bucket");
    let store = Arc::new(MemoryStore::with_bucket(BUCKET));
    let fs = S3Fs::new(
        Bucket::new(store.clone(), BUCKET),
        FsOptions::new(cache.clone()),
    )
    .unwrap();
    assert!(fs.data_cache().is_some());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    for dir in ["..", ".", "staging", "unsaved", "data", "data/tmp"] {
        assert_eq!(mode(&cache.join(dir)), private::DIR_MODE, "{dir}");
    }
    assert_eq!(mode(&cache.join("data/lock")), private::FILE_MODE);
    assert_eq!(
        store.total_requests(),
        0,
        "creating the file system sends nothing"
    );
}
