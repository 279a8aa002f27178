//! The on-disk data cache: blocks of object content, keyed by object version, evicted least
//! recently used first when their total size passes a limit.
//!
//! How it works. An object version is named by a SHA-256 of (bucket, key, ETag, size, block
//! size) — [`DataCache::object`] — so a changed object (a new ETag) never finds the old one's
//! blocks, and a key never has to be escaped into a file name. Its content is cut into aligned
//! blocks of [`BLOCK_SIZE`] (the last one shorter); block `i` of a version is the file
//! `data/<h[0..2]>/<h>.<i>`, where `h` is the hash in hex (the two-character level keeps
//! directories small). Nothing outside this module knows the layout.
//!
//! Writing a block is atomic: the bytes go to `data/tmp/<pid>.<n>`, which is renamed into place
//! only once complete, so a crash leaves at most a temporary file (deleted at the next start),
//! never a torn block under a block's name. Reading checks the file's length against the length
//! the block must have; a block of the wrong length is a miss and is deleted. (Blocks are not
//! fsynced: after a power loss a file system may keep a renamed file empty or short, which the
//! length check catches.)
//!
//! The index (block → length, in LRU order) lives in memory. At start the directory is scanned
//! and the index rebuilt, oldest modification time first; a hit older than
//! [`MTIME_REFRESH`] gets its modification time set to now, so the order survives a remount.
//! The index is then trimmed to the limit.
//!
//! Space. Bytes are reserved (evicting as needed) before a block is written, so the blocks and
//! the temporary files together never exceed the limit. The cache also never takes the file
//! system below [`MIN_FREE_PERCENT`] free: before each write it looks at the free space and
//! evicts its own blocks to stay above it, and [`DataCache::release`] gives space back on demand
//! (the staging files of writers share the file system). A write that fails (ENOSPC, EIO, a
//! permission) is logged once at warn and the block is simply not cached; after an error other
//! than a full disk, storing pauses for [`RETRY_AFTER_ERROR`]. Reading never fails because of
//! the cache: every problem is a miss.
//!
//! Concurrency: one mutex over the index, held for bookkeeping and for deleting evicted files,
//! never while a block is read or written. An exclusive `flock` on `data/lock` keeps a second
//! process off the same directory (it then runs without a data cache).

use parking_lot::Mutex;
use std::collections::HashSet;
use std::fs::{File, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::s3::private;

mod disk;
use disk::{free_space, open_blocks_capacity};

/// Size of a cached block: large enough that a file per block stays cheap (a 1 GiB cache is
/// 1024 files), small enough that a partly read object caches about what was read.
pub const BLOCK_SIZE: u64 = 1024 * 1024;
/// Default limit of the cache's total size: with the shares of `cache::policy`, objects up to
/// 2 GiB are fetched whole for a random reader and up to 512 MiB kept when streamed; never
/// more than the disk can spare ([`MIN_FREE_PERCENT`]).
pub const DEFAULT_CACHE_SIZE: u64 = 4 * 1024 * 1024 * 1024;
/// The cache never fills its file system past this share (in percent) of its size.
pub const MIN_FREE_PERCENT: u64 = 5;
/// A block read this long after its file's last modification gets its mtime set to now (the
/// LRU order rebuilt at the next start); more often would cost a syscall per read.
pub const MTIME_REFRESH: Duration = Duration::from_secs(60);
/// After a write error other than a full disk, how long storing pauses.
pub const RETRY_AFTER_ERROR: Duration = Duration::from_secs(30);

/// Changes whenever the layout or the naming does: old blocks then simply never match.
const LAYOUT_TAG: &[u8] = b"s3mount-data-block-v1";
const TMP_DIR: &str = "tmp";
const LOCK_FILE: &str = "lock";

/// Settings of a [`DataCache`].
#[derive(Debug, Clone)]
pub struct DataCacheConfig {
    /// Largest total size of the cached blocks (and blocks being written), in bytes.
    pub max_bytes: u64,
    /// Block size (default [`BLOCK_SIZE`]; tests use small ones).
    pub block_size: u64,
    /// Free space, in percent of the file system, the cache never takes.
    pub min_free_percent: u64,
}

impl DataCacheConfig {
    /// At most `max_bytes`, [`BLOCK_SIZE`] blocks, [`MIN_FREE_PERCENT`] kept free.
    pub fn new(max_bytes: u64) -> Self {
        DataCacheConfig {
            max_bytes,
            block_size: BLOCK_SIZE,
            min_free_percent: MIN_FREE_PERCENT,
        }
    }
}

/// One version of one object, as the cache names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedObject {
    id: [u8; 32],
    size: u64,
}

impl CachedObject {
    /// The object's size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BlockKey {
    id: [u8; 32],
    index: u64,
}

struct State {
    /// Block → its length, least recently used first.
    index: LruCache<BlockKey, u64>,
    /// Bytes of the blocks in the index.
    used: u64,
    /// Bytes reserved by writes in progress.
    reserved: u64,
    /// No storing before this instant (after a write error).
    paused_until: Option<Instant>,
    /// Errnos already logged at warn.
    warned: HashSet<i32>,
    /// Blocks recently read, kept open: a hit then costs one `pread`, not an open, a stat, a
    /// read and a close (random 4 KiB reads of a cached object come at 10 000 and more a second).
    open: LruCache<BlockKey, Arc<OpenBlock>>,
}

/// A block's file kept open for reading.
#[derive(Debug)]
struct OpenBlock {
    file: File,
    /// When its modification time was last set (see [`MTIME_REFRESH`]).
    refreshed: Mutex<Instant>,
}

/// The data cache of one mount. Thread-safe.
pub struct DataCache {
    dir: PathBuf,
    cfg: DataCacheConfig,
    state: Mutex<State>,
    tmp_counter: AtomicU64,
    /// Block reads answered from the cache, and those that were not (for `s3mount status`).
    hits: AtomicU64,
    misses: AtomicU64,
    /// Holds the `flock` for as long as the cache lives.
    _lock: File,
}

/// What `s3mount status` shows of the data cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataCacheStats {
    /// Bytes of the blocks cached.
    pub used_bytes: u64,
    /// The size limit.
    pub limit_bytes: u64,
    /// Block reads answered from the cache since the mount started.
    pub hits: u64,
    /// Block reads the cache could not answer (then fetched from the server).
    pub misses: u64,
}

impl std::fmt::Debug for DataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataCache")
            .field("dir", &self.dir)
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl DataCache {
    /// Open (creating it if needed) the cache in `dir`, rebuild the index from what is there,
    /// delete temporary and unrecognised files, and trim to the limit. Fails if the directory
    /// cannot be created or another process uses it.
    pub fn open(dir: impl Into<PathBuf>, cfg: DataCacheConfig) -> std::io::Result<DataCache> {
        let dir = dir.into();
        if cfg.block_size == 0 {
            return Err(std::io::Error::new(ErrorKind::InvalidInput, "block size 0"));
        }
        // Blocks are object content: every directory and file here is private to this user.
        private::create_dir_all(&dir.join(TMP_DIR))?;
        let lock = private::open_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        // An exclusive `flock` (what std's `try_lock` takes on Linux), dropped with the file.
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    ErrorKind::WouldBlock,
                    format!("{} is in use by another s3mount", dir.display()),
                ))
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let cache = DataCache {
            cfg,
            state: Mutex::new(State {
                index: LruCache::unbounded(),
                used: 0,
                reserved: 0,
                paused_until: None,
                warned: HashSet::new(),
                open: LruCache::new(open_blocks_capacity()),
            }),
            tmp_counter: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            _lock: lock,
            dir,
        };
        cache.rebuild_index();
        Ok(cache)
    }

    /// The directory holding the blocks.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The block size.
    pub fn block_size(&self) -> u64 {
        self.cfg.block_size
    }

    /// The size limit.
    pub fn max_bytes(&self) -> u64 {
        self.cfg.max_bytes
    }

    /// Bytes of the blocks currently cached.
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used
    }

    /// Use, limit, hits and misses.
    pub fn stats(&self) -> DataCacheStats {
        DataCacheStats {
            used_bytes: self.used_bytes(),
            limit_bytes: self.cfg.max_bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Number of blocks currently cached.
    pub fn blocks(&self) -> usize {
        self.state.lock().index.len()
    }

    /// The cache's name for version `etag` (of `size` bytes) of `bucket`/`key`.
    pub fn object(&self, bucket: &str, key: &str, etag: &str, size: u64) -> CachedObject {
        let mut h = Sha256::new();
        for part in [
            LAYOUT_TAG,
            &self.cfg.block_size.to_le_bytes(),
            bucket.as_bytes(),
            key.as_bytes(),
            etag.as_bytes(),
            &size.to_le_bytes(),
        ] {
            // Length-prefixed, so no two different tuples hash the same input.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        CachedObject {
            id: h.finalize().into(),
            size,
        }
    }

    /// The length block `index` of `obj` has (`None` past the end).
    pub fn block_len(&self, obj: &CachedObject, index: u64) -> Option<u64> {
        let start = index.checked_mul(self.cfg.block_size)?;
        if start >= obj.size {
            return None;
        }
        Some((obj.size - start).min(self.cfg.block_size))
    }

    /// True if block `index` of `obj` is in the index (without touching its LRU position).
    pub fn contains(&self, obj: &CachedObject, index: u64) -> bool {
        self.state.lock().index.contains(&key_of(obj, index))
    }

    /// Fill `buf` with the bytes of block `index` of `obj` starting `offset` bytes into the
    /// block. False (a miss) if the block is not cached, is not valid, or `offset + buf.len()`
    /// is past the block's end; never an error. Counted as a hit or a miss.
    pub fn read(&self, obj: &CachedObject, index: u64, offset: u64, buf: &mut [u8]) -> bool {
        let hit = self.read_block(obj, index, offset, buf);
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    fn read_block(&self, obj: &CachedObject, index: u64, offset: u64, buf: &mut [u8]) -> bool {
        let Some(expected) = self.block_len(obj, index) else {
            return false;
        };
        if offset.saturating_add(buf.len() as u64) > expected {
            return false;
        }
        let key = key_of(obj, index);
        let open = {
            let mut st = self.state.lock();
            match st.index.get(&key) {
                None => return false,
                Some(&len) if len != expected => {
                    self.forget(&mut st, &key);
                    return false;
                }
                Some(_) => {}
            }
            st.open.get(&key).cloned()
        };
        let Some(file) = open.or_else(|| self.open_block(&key, expected)) else {
            return false;
        };
        if let Err(e) = file.file.read_exact_at(buf, offset) {
            log::debug!("data cache: {}: {e}", self.block_path(&key).display());
            self.forget(&mut self.state.lock(), &key);
            return false;
        }
        if file.refreshed.lock().elapsed() > MTIME_REFRESH {
            let _ = file.file.set_modified(SystemTime::now());
            *file.refreshed.lock() = Instant::now();
        }
        true
    }

    /// Open the file of a block to read it: check its length, refresh its modification time
    /// if old, and keep it among the open blocks. `None` (and the block forgotten) if it is
    /// gone, unreadable or of the wrong length.
    fn open_block(&self, key: &BlockKey, expected: u64) -> Option<Arc<OpenBlock>> {
        let path = self.block_path(key);
        let checked = File::open(&path).and_then(|f| {
            let meta = f.metadata()?;
            Ok((f, meta))
        });
        let (file, meta) = match checked {
            Ok(found) => found,
            Err(e) => {
                // Gone (evicted meanwhile, or removed by hand) or unreadable: a miss.
                log::debug!("data cache: {}: {e}", path.display());
                self.forget(&mut self.state.lock(), key);
                return None;
            }
        };
        if meta.len() != expected {
            log::debug!(
                "data cache: {} has {} bytes, {expected} expected; dropped",
                path.display(),
                meta.len()
            );
            self.forget(&mut self.state.lock(), key);
            return None;
        }
        let now = SystemTime::now();
        let stale = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > MTIME_REFRESH);
        if stale {
            let _ = file.set_modified(now);
        }
        let block = Arc::new(OpenBlock {
            file,
            refreshed: Mutex::new(Instant::now()),
        });
        let mut st = self.state.lock();
        // Only while it is still indexed: an eviction meanwhile must not leave it open here.
        if st.index.contains(key) {
            st.open.put(*key, block.clone());
        }
        Some(block)
    }

    /// Store block `index` of `obj` (`data` must be the whole block: exactly
    /// [`DataCache::block_len`] bytes). Best effort: on any problem the block is not cached.
    /// True if the block is in the cache afterwards.
    pub fn store(&self, obj: &CachedObject, index: u64, data: &[u8]) -> bool {
        let Some(len) = self.block_len(obj, index) else {
            return false;
        };
        if data.len() as u64 != len {
            log::debug!(
                "data cache: block {index} of {} bytes, {len} expected; not stored",
                data.len()
            );
            return false;
        }
        let key = key_of(obj, index);
        {
            let mut st = self.state.lock();
            if st.index.get(&key).is_some() {
                return true; // already there (now most recently used)
            }
            if st.paused_until.is_some_and(|t| Instant::now() < t) {
                return false;
            }
            st.paused_until = None;
            if !self.make_room(&mut st, len) {
                return false;
            }
            st.reserved += len;
        }
        let path = self.block_path(&key);
        let result = self.write_atomically(&path, data);
        let mut st = self.state.lock();
        st.reserved -= len;
        match result {
            Ok(()) => {
                if let Some((_, old)) = st.index.push(key, len) {
                    // Stored concurrently by another thread: same name, replaced by ours.
                    st.used -= old;
                }
                st.used += len;
                true
            }
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                let full = errno == libc::ENOSPC || errno == libc::EDQUOT;
                let msg = format!(
                    "data cache: cannot store a block in {}: {e}; reads go on uncached{}",
                    self.dir.display(),
                    if full {
                        ""
                    } else {
                        " (storing paused for a while)"
                    }
                );
                if st.warned.insert(errno) {
                    log::warn!("{msg}");
                } else {
                    log::debug!("{msg}");
                }
                if full {
                    // Someone else filled the disk: give some room back.
                    self.evict_bytes(&mut st, len);
                } else {
                    st.paused_until = Some(Instant::now() + RETRY_AFTER_ERROR);
                }
                false
            }
        }
    }

    /// Evict at least `bytes` (least recently used first, fewer if the cache holds less) to
    /// give disk space to something else; returns the bytes freed.
    pub fn release(&self, bytes: u64) -> u64 {
        let mut st = self.state.lock();
        self.evict_bytes(&mut st, bytes)
    }

    fn block_path(&self, key: &BlockKey) -> PathBuf {
        let h = hex::encode(key.id);
        self.dir.join(&h[..2]).join(format!("{h}.{}", key.index))
    }

    /// Drop a block from the index and the disk.
    fn forget(&self, st: &mut State, key: &BlockKey) {
        if let Some(len) = st.index.pop(key) {
            st.used -= len;
        }
        st.open.pop(key);
        let _ = std::fs::remove_file(self.block_path(key));
    }

    fn evict_one(&self, st: &mut State) -> Option<u64> {
        let (key, len) = st.index.pop_lru()?;
        st.used -= len;
        st.open.pop(&key);
        let path = self.block_path(&key);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != ErrorKind::NotFound {
                log::debug!("data cache: cannot remove {}: {e}", path.display());
            }
        }
        Some(len)
    }

    fn evict_bytes(&self, st: &mut State, bytes: u64) -> u64 {
        let mut freed = 0;
        while freed < bytes {
            match self.evict_one(st) {
                Some(n) => freed += n,
                None => break,
            }
        }
        freed
    }

    /// Evict until `len` more bytes fit under the limit and above the free-space floor; false
    /// if they cannot.
    fn make_room(&self, st: &mut State, len: u64) -> bool {
        if len > self.cfg.max_bytes {
            return false;
        }
        while st.used + st.reserved + len > self.cfg.max_bytes {
            if self.evict_one(st).is_none() {
                return false; // everything left is being written
            }
        }
        if let Some((avail, total)) = free_space(&self.dir) {
            let floor = total / 100 * self.cfg.min_free_percent;
            // Reserved bytes are not on the disk yet.
            let short = (floor + st.reserved + len).saturating_sub(avail);
            if short > 0 && self.evict_bytes(st, short) < short {
                return false;
            }
        }
        true
    }
}

fn key_of(obj: &CachedObject, index: u64) -> BlockKey {
    BlockKey { id: obj.id, index }
}

#[cfg(test)]
mod tests {
    use super::disk::parse_block_name;
    use super::*;

    const BS: u64 = 16;

    fn cfg(max_bytes: u64) -> DataCacheConfig {
        DataCacheConfig {
            max_bytes,
            block_size: BS,
            min_free_percent: 0,
        }
    }

    fn block(fill: u8, len: u64) -> Vec<u8> {
        vec![fill; len as usize]
    }

    fn read_all(c: &DataCache, o: &CachedObject, i: u64) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; c.block_len(o, i)? as usize];
        c.read(o, i, 0, &mut buf).then_some(buf)
    }

    /// Sizes of the files under `dir`, recursively (blocks, temporary files).
    fn disk_bytes(dir: &Path) -> u64 {
        let mut total = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                total += disk_bytes(&e.path());
            } else if e.file_name() != LOCK_FILE {
                total += m.len();
            }
        }
        total
    }

    fn block_files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 2 && e.path().is_dir() {
                for f in std::fs::read_dir(e.path()).unwrap().flatten() {
                    out.push(f.path());
                }
            }
        }
        out
    }

    #[test]
    fn stores_and_reads_blocks_of_one_version_only() {
        let d = tempfile::tempdir().unwrap();
        let c = DataCache::open(d.path().join("data"), cfg(1000)).unwrap();
        let v1 = c.object("b", "k", "etag1", 40);
        let v2 = c.object("b", "k", "etag2", 40);
        assert_ne!(v1, v2);
        assert_ne!(v1, c.object("b", "k2", "etag1", 40));
        assert_ne!(v1, c.object("b2", "k", "etag1", 40));
        assert_ne!(v1, c.object("b", "k", "etag1", 41));
        // Field boundaries matter: ("ab","c") is not ("a","bc").
        assert_ne!(c.object("ab", "c", "e", 1), c.object("a", "bc", "e", 1));
        assert_eq!(c.block_len(&v1, 0), Some(16));
        assert_eq!(c.block_len(&v1, 2), Some(8));
        assert_eq!(c.block_len(&v1, 3), None);

        c.store(&v1, 0, &block(1, 16));
        c.store(&v1, 2, &block(3, 8));
        assert_eq!(read_all(&c, &v1, 0), Some(block(1, 16)));
        assert_eq!(read_all(&c, &v1, 2), Some(block(3, 8)));
        assert_eq!(read_all(&c, &v1, 1), None, "never stored");
        assert_eq!(
            read_all(&c, &v2, 0),
            None,
            "another ETag never sees v1's blocks"
        );
        // A part of a block.
        let mut part = [0u8; 4];
        assert!(c.read(&v1, 0, 10, &mut part));
        assert_eq!(part, [1; 4]);
        assert!(!c.read(&v1, 2, 6, &mut part), "past the block's end");
        // Wrong lengths are refused, not stored.
        c.store(&v1, 1, &block(2, 15));
        c.store(&v1, 3, &block(2, 1));
        assert!(!c.contains(&v1, 1) && !c.contains(&v1, 3));
        assert_eq!(c.used_bytes(), 24);
        assert_eq!(disk_bytes(c.dir()), 24);
        // Reads counted: 3 hits (two whole blocks, a part), 3 misses (never stored, another
        // ETag, past the end).
        let stats = c.stats();
        assert_eq!((stats.hits, stats.misses), (3, 3), "{stats:?}");
        assert_eq!((stats.used_bytes, stats.limit_bytes), (24, c.max_bytes()));
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let d = tempfile::tempdir().unwrap();
        let c = DataCache::open(d.path().join("data"), cfg(3 * BS)).unwrap();
        let o = c.object("b", "k", "e", 10 * BS);
        for i in 0..3 {
            c.store(&o, i, &block(i as u8, BS));
        }
        // Block 0 used again: block 1 is now the least recently used.
        assert!(read_all(&c, &o, 0).is_some());
        c.store(&o, 3, &block(3, BS));
        assert!(c.contains(&o, 0), "recently read block kept");
        assert!(!c.contains(&o, 1), "least recently used block evicted");
        assert!(c.contains(&o, 2) && c.contains(&o, 3));
        // Storing a block already there refreshes it rather than duplicating it.
        c.store(&o, 2, &block(2, BS));
        c.store(&o, 4, &block(4, BS));
        assert!(!c.contains(&o, 0) && c.contains(&o, 2));
        assert_eq!(c.used_bytes(), 3 * BS);
        assert_eq!(block_files(c.dir()).len(), 3);
    }

    #[test]
    fn total_size_never_exceeds_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let limit = 5 * BS + 3;
        let c = std::sync::Arc::new(DataCache::open(d.path().join("data"), cfg(limit)).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let o = c.object("b", &format!("k{t}"), "e", 20 * BS - 5);
                    for i in 0..20 {
                        let len = c.block_len(&o, i).unwrap();
                        c.store(&o, i, &block(i as u8, len));
                        assert!(c.used_bytes() <= limit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(c.used_bytes() <= limit);
        assert!(c.used_bytes() >= 4 * BS, "the cache is used");
        assert_eq!(disk_bytes(c.dir()), c.used_bytes());
        // A block larger than the whole cache is never stored.
        let small = DataCache::open(d.path().join("small"), cfg(BS - 1)).unwrap();
        let o = small.object("b", "k", "e", BS);
        small.store(&o, 0, &block(0, BS));
        assert_eq!(small.used_bytes(), 0);
        assert_eq!(small.release(100), 0);
        // release() gives space back.
        assert!(c.release(1) >= 1);
        assert_eq!(disk_bytes(c.dir()), c.used_bytes());
    }

    #[test]
    fn index_is_rebuilt_from_disk_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        let (o, paths) = {
            let c = DataCache::open(&dir, cfg(100 * BS)).unwrap();
            let o = c.object("b", "k", "e", 4 * BS);
            for i in 0..4 {
                c.store(&o, i, &block(i as u8, BS));
            }
            let paths: Vec<_> = (0..4).map(|i| c.block_path(&key_of(&o, i))).collect();
            (o, paths)
        };
        // Last use, as the mtimes tell it: 2 oldest, then 0, 3, 1.
        let base = SystemTime::now() - Duration::from_secs(3600);
        for (i, age) in [(2, 0), (0, 10), (3, 20), (1, 30)] {
            let f = File::options().write(true).open(&paths[i]).unwrap();
            f.set_modified(base + Duration::from_secs(age)).unwrap();
        }
        // Leftovers of a crash and foreign names.
        std::fs::write(dir.join(TMP_DIR).join("123.4"), b"partial").unwrap();
        let shard = paths[0].parent().unwrap();
        std::fs::write(shard.join("garbage"), b"x").unwrap();
        // A well-formed name in the wrong shard directory.
        let shard_name = shard.file_name().unwrap().to_string_lossy().into_owned();
        let other = if shard_name == "ff" { "0" } else { "f" };
        let misplaced = shard.join(format!("{}.9", other.repeat(64)));
        std::fs::write(&misplaced, b"x").unwrap();
        let empty = paths[0].with_extension("7");
        std::fs::write(&empty, b"").unwrap();
        std::fs::write(dir.join("README"), b"not ours").unwrap();

        // Reopen with room for 2 blocks: the two oldest go.
        let c = DataCache::open(&dir, cfg(2 * BS)).unwrap();
        assert_eq!(c.used_bytes(), 2 * BS);
        assert!(!c.contains(&o, 2) && !c.contains(&o, 0));
        assert_eq!(read_all(&c, &o, 3), Some(block(3, BS)));
        assert_eq!(read_all(&c, &o, 1), Some(block(1, BS)));
        assert!(std::fs::read_dir(dir.join(TMP_DIR))
            .unwrap()
            .next()
            .is_none());
        assert!(!shard.join("garbage").exists());
        assert!(!misplaced.exists());
        assert!(!empty.exists());
        assert!(dir.join("README").exists(), "files not ours are left alone");
        assert_eq!(block_files(&dir).len(), 2);
        // A read refreshes an old mtime, so the order survives the next remount.
        let m = std::fs::metadata(&paths[3]).unwrap().modified().unwrap();
        assert!(SystemTime::now().duration_since(m).unwrap() < MTIME_REFRESH);
    }

    #[test]
    fn blocks_read_are_kept_open_until_evicted() {
        let d = tempfile::tempdir().unwrap();
        let c = DataCache::open(d.path().join("data"), cfg(2 * BS)).unwrap();
        let o = c.object("b", "k", "e", 10 * BS);
        c.store(&o, 0, &block(1, BS));
        assert_eq!(read_all(&c, &o, 0), Some(block(1, BS)));
        assert!(c.state.lock().open.contains(&key_of(&o, 0)));
        // Open, it is read from its descriptor (the file's name no longer matters).
        let path = c.block_path(&key_of(&o, 0));
        std::fs::rename(&path, path.with_extension("moved")).unwrap();
        assert_eq!(read_all(&c, &o, 0), Some(block(1, BS)));
        std::fs::rename(path.with_extension("moved"), &path).unwrap();
        // Evicted: closed, and a block stored again under the name is read from its new file.
        c.store(&o, 1, &block(2, BS));
        c.store(&o, 2, &block(3, BS));
        assert!(!c.contains(&o, 0));
        assert!(!c.state.lock().open.contains(&key_of(&o, 0)));
        c.store(&o, 0, &block(9, BS));
        assert_eq!(read_all(&c, &o, 0), Some(block(9, BS)));
    }

    #[test]
    fn short_or_damaged_blocks_are_misses_and_deleted() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        let c = DataCache::open(&dir, cfg(100 * BS)).unwrap();
        let o = c.object("b", "k", "e", 3 * BS);
        for i in 0..3 {
            c.store(&o, i, &block(7, BS));
        }
        // Torn (short), overlong, and gone.
        let p0 = c.block_path(&key_of(&o, 0));
        std::fs::write(&p0, block(7, BS - 1)).unwrap();
        let p1 = c.block_path(&key_of(&o, 1));
        std::fs::write(&p1, block(7, BS + 1)).unwrap();
        std::fs::remove_file(c.block_path(&key_of(&o, 2))).unwrap();
        for i in 0..3 {
            assert_eq!(read_all(&c, &o, i), None, "block {i}");
            assert!(!c.contains(&o, i), "block {i} dropped from the index");
        }
        assert!(!p0.exists() && !p1.exists());
        assert_eq!(c.used_bytes(), 0);
        // Stored again, it is served again.
        c.store(&o, 0, &block(8, BS));
        assert_eq!(read_all(&c, &o, 0), Some(block(8, BS)));
        drop(c);
        // At a restart, a block of the right name but wrong length is indexed (its object's
        // size is unknown then) and dropped at its first read.
        let c = DataCache::open(&dir, cfg(100 * BS)).unwrap();
        std::fs::write(&p0, block(8, 3)).unwrap();
        assert_eq!(read_all(&c, &o, 0), None);
        assert!(!p0.exists());
    }

    #[test]
    fn write_errors_mean_not_cached_never_a_failure() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        let c = DataCache::open(&dir, cfg(100 * BS)).unwrap();
        let o = c.object("b", "k", "e", 2 * BS);
        // The temporary directory replaced by a file: every write fails (ENOTDIR).
        std::fs::remove_dir_all(dir.join(TMP_DIR)).unwrap();
        std::fs::write(dir.join(TMP_DIR), b"in the way").unwrap();
        c.store(&o, 0, &block(1, BS));
        assert!(!c.contains(&o, 0));
        assert_eq!(read_all(&c, &o, 0), None);
        assert_eq!(c.used_bytes(), 0);
        // Storing is paused after such an error, even once the cause is gone.
        std::fs::remove_file(dir.join(TMP_DIR)).unwrap();
        std::fs::create_dir(dir.join(TMP_DIR)).unwrap();
        c.store(&o, 1, &block(1, BS));
        assert!(!c.contains(&o, 1));
        c.state.lock().paused_until = Some(Instant::now());
        c.store(&o, 1, &block(1, BS));
        assert!(c.contains(&o, 1));
    }

    #[test]
    fn a_directory_removed_while_in_use_is_made_again() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        let c = DataCache::open(&dir, cfg(100 * BS)).unwrap();
        let o = c.object("b", "k", "e", 2 * BS);
        assert!(c.store(&o, 0, &block(1, BS)));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read_all(&c, &o, 0), None, "gone with its file");
        assert!(c.store(&o, 1, &block(2, BS)));
        assert_eq!(read_all(&c, &o, 1), Some(block(2, BS)));
        assert_eq!(c.used_bytes(), BS);
    }

    #[test]
    fn one_process_per_directory() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        let c = DataCache::open(&dir, cfg(100)).unwrap();
        // flock locks belong to the open file description: a second open is refused even in
        // the same process.
        let e = DataCache::open(&dir, cfg(100)).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
        drop(c);
        assert!(DataCache::open(&dir, cfg(100)).is_ok());
    }

    #[test]
    fn block_names_parse_back() {
        let k = BlockKey {
            id: [0xab; 32],
            index: 42,
        };
        let name = format!("{}.42", hex::encode(k.id));
        assert_eq!(parse_block_name(&name), Some(k));
        for bad in [
            "x",
            "ab.1",
            &format!("{}.", "a".repeat(64)),
            &format!("{}.1x", "a".repeat(64)),
            &format!("{}.1", "A".repeat(64)),
            &format!("{}.99999999999999999999999", "a".repeat(64)),
        ] {
            assert_eq!(parse_block_name(bad), None, "{bad}");
        }
    }
}
