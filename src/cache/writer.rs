//! Writing blocks into the data cache off the read path: a bounded queue served by one thread,
//! which drops work rather than fall behind.
//!
//! Why: storing a block costs a copy into the page cache of a new file (and, later, the disk's
//! writeback). Done by the thread that fetched the block, it delays the part the reader waits
//! for; done here, the reader gets its bytes as soon as they arrive. The queue holds at most
//! [`WRITE_BEHIND_BYTES`]: when blocks come faster than the disk takes them, the ones that do
//! not fit are not cached (the read is not slowed to wait for the cache), counted in
//! [`CacheWriter::dropped`].
//!
//! A queued block holds the buffer it was fetched into (shared, not copied) until written.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::data::{CachedObject, DataCache};

/// Bytes waiting to be written at most: a few parts' worth, so that a burst is absorbed while
/// a reader outrunning the disk does not pin its buffers here.
pub const WRITE_BEHIND_BYTES: u64 = 32 * 1024 * 1024;

/// How often [`CacheWriter::flush`] looks at the queue.
const FLUSH_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Bytes shared with the reader that fetched them.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

struct Job {
    obj: CachedObject,
    first_block: u64,
    data: SharedBytes,
    range: Range<usize>,
}

/// The write-behind queue of one data cache.
pub struct CacheWriter {
    tx: Sender<Job>,
    queued: Arc<AtomicU64>,
    limit: u64,
    written: Arc<AtomicU64>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for CacheWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWriter")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("limit", &self.limit)
            .finish()
    }
}

impl CacheWriter {
    /// A writer into `cache` holding at most `limit` bytes in its queue. Its thread ends once
    /// the writer is dropped and the queue is written.
    pub fn new(cache: Arc<DataCache>, limit: u64) -> Self {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::unbounded();
        let queued = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let (q, w) = (queued.clone(), written.clone());
        let spawned = std::thread::Builder::new()
            .name("cache-writer".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let bytes = &(*job.data).as_ref()[job.range.clone()];
                    let bs = cache.block_size() as usize;
                    for (i, block) in bytes.chunks(bs).enumerate() {
                        cache.store(&job.obj, job.first_block + i as u64, block);
                    }
                    w.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    q.fetch_sub(job.range.len() as u64, Ordering::AcqRel);
                }
            });
        if let Err(e) = spawned {
            log::warn!("data cache: no writer thread ({e}); blocks are not cached");
        }
        CacheWriter {
            tx,
            queued,
            limit,
            written,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queue `data[range]`, whole blocks of `obj` from `first_block` on, to be stored. False if
    /// the queue is full (the blocks are then not cached).
    pub fn submit(
        &self,
        obj: &CachedObject,
        first_block: u64,
        data: SharedBytes,
        range: Range<usize>,
    ) -> bool {
        let n = range.len() as u64;
        let mut cur = self.queued.load(Ordering::Relaxed);
        loop {
            if cur + n > self.limit {
                self.dropped.fetch_add(n, Ordering::Relaxed);
                log::debug!("data cache: writer behind, {n} bytes not cached");
                return false;
            }
            match self
                .queued
                .compare_exchange(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let job = Job {
            obj: obj.clone(),
            first_block,
            data,
            range,
        };
        if self.tx.send(job).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Wait until the queue is written, at most `timeout` (at unmount: blocks already fetched
    /// are worth keeping). True if it was.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.queued() > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(FLUSH_POLL);
        }
        true
    }

    /// Bytes waiting in the queue.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Bytes handed to the cache so far (stored, or refused by it).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Bytes not cached because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::data::DataCacheConfig;
    use std::time::{Duration, Instant};

    const BS: u64 = 16;

    fn cache(dir: &std::path::Path) -> Arc<DataCache> {
        let cfg = DataCacheConfig {
            max_bytes: 1000 * BS,
            block_size: BS,
            min_free_percent: 0,
        };
        Arc::new(DataCache::open(dir.join("data"), cfg).unwrap())
    }

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn blocks_are_stored_in_the_background() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path());
        let w = CacheWriter::new(c.clone(), 100 * BS);
        let o = c.object("b", "k", "e", 4 * BS + 5);
        let data: Vec<u8> = (0..(4 * BS + 5) as u8).collect();
        // Blocks 1..=4 (the last one short) from byte BS of the buffer.
        let shared: SharedBytes = Arc::new(data.clone());
        assert!(w.submit(&o, 1, shared, BS as usize..data.len()));
        wait_for("written", || w.queued() == 0 && c.contains(&o, 4));
        assert!(!c.contains(&o, 0));
        let mut buf = vec![0u8; 5];
        assert!(c.read(&o, 4, 0, &mut buf));
        assert_eq!(&buf[..], &data[(4 * BS) as usize..]);
        assert_eq!((w.written(), w.dropped()), (3 * BS + 5, 0));
    }

    #[test]
    fn a_full_queue_drops_instead_of_waiting() {
        let d = tempfile::tempdir().unwrap();
        let c = cache(d.path());
        let w = CacheWriter::new(c.clone(), 2 * BS);
        let o = c.object("b", "k", "e", 10 * BS);
        let block: SharedBytes = Arc::new(vec![1u8; (3 * BS) as usize]);
        assert!(!w.submit(&o, 0, block.clone(), 0..(3 * BS) as usize));
        assert_eq!(w.dropped(), 3 * BS);
        assert!(w.submit(&o, 0, block, 0..(2 * BS) as usize));
        assert!(w.flush(Duration::from_secs(10)));
        assert!(c.contains(&o, 1) && !c.contains(&o, 2));
    }
}
