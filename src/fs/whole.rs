//! Fetching a whole object version into the data cache in the background, for a reader that
//! keeps seeking in it (when: `cache::policy`; started by [`super::prefetch::Prefetcher`]).
//!
//! [`WHOLE_PARALLEL`] workers of the prefetch pool take the object's parts in order (up to
//! [`PART_SIZE`] each, whole blocks), skip the blocks already cached, fetch the missing ones
//! by ranged GETs pinned to the version (`If-Match`) into buffers of the pool's budget, and
//! store them in the cache at once. Reads meanwhile find the blocks as they land. For the
//! source of an open file, each part is also put into the kernel's pages of the file (the
//! blocks fetched, and those the cache already held), so the reader's later reads are
//! page-cache hits that never reach the mount (when the object fits a quarter of the memory
//! available: `page_cache::fits_in_memory`); this stops for good at the first part the
//! kernel's pages may not take (a handle opened for writing, the file changed: see
//! `super::page_cache`). Once the whole version is in, a read that still reaches the mount
//! means the kernel let go of that page (`POSIX_FADV_DONTNEED`, as `fio` does at every pass;
//! memory pressure): its block is put back in the background ([`WholeFetch::missed`]), so
//! such a reader pays one FUSE round trip per block, not per page. It stops:
//!
//! - when the [`WholeFetch`] is dropped — the file is closed, or its read-ahead is dropped
//!   (another version pinned, a failed read): each worker finishes the GET it is in, then
//!   stops;
//! - at the first failure: the object changed on the server (412) or a GET failed after the
//!   client's retries; the reader goes on with exact reads.
//!
//! A worker that finds no free buffer waits for one, `BUFFER_WAIT` at a time, so the fetch
//! never takes memory the readers' budget does not have.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::buffers::{Buffer, BufferPool};
use super::fetch::{runs, ObjectSource};
use super::prefetch::{PrefetchPool, PART_SIZE};

/// Parts fetched at once: enough to reach the server's bandwidth (this project's benchmark
/// server serves about 1 GB/s to 4–8 parallel ranged GETs), leaving most of the pool's workers
/// and buffers to sequential readers.
pub const WHOLE_PARALLEL: usize = 4;
/// Bytes put into the kernel's pages at once (a store waits for pages a read in flight holds,
/// and a writer's `open` for the store under way).
const FEED_CHUNK: usize = 1024 * 1024;
/// How long a worker waits before looking for a free buffer again.
const BUFFER_WAIT: Duration = Duration::from_millis(10);

/// A running background fetch of a whole object; dropping it stops it.
#[derive(Debug)]
pub struct WholeFetch {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    src: Arc<ObjectSource>,
    /// First block not yet taken by a worker.
    next_block: AtomicU64,
    stop: AtomicBool,
    /// Workers still running.
    running: AtomicUsize,
    buffers: BufferPool,
    /// The pool's count of workers background fetches may take; each worker gives its slot
    /// back when it ends.
    slots: Arc<AtomicUsize>,
    started: Instant,
    /// Parts still go to the kernel's pages too.
    feeding: AtomicBool,
    /// Bytes put into the kernel's pages.
    fed: AtomicU64,
    /// Every block is in the cache and was put into the kernel's pages.
    done: AtomicBool,
    /// Blocks to put back into the kernel's pages ([`WholeFetch::missed`]).
    refeed: Mutex<Refeed>,
}

#[derive(Debug, Default)]
struct Refeed {
    blocks: VecDeque<u64>,
    queued: HashSet<u64>,
    /// A worker is draining `blocks`.
    working: bool,
}

impl WholeFetch {
    /// Start fetching the blocks of `src` not yet in its cache, on up to [`WHOLE_PARALLEL`]
    /// of `pool`'s workers; `None` if background fetches already have all the workers they
    /// may take.
    pub fn start(src: Arc<ObjectSource>, pool: &PrefetchPool) -> Option<Self> {
        let workers = pool.take_whole_slots(WHOLE_PARALLEL);
        if workers == 0 {
            return None;
        }
        let state = Arc::new(State {
            next_block: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            buffers: pool.buffers().clone(),
            slots: pool.whole_slots(),
            feeding: AtomicBool::new(
                src.feeds_kernel() && super::page_cache::fits_in_memory(src.size()),
            ),
            fed: AtomicU64::new(0),
            done: AtomicBool::new(false),
            refeed: Mutex::default(),
            started: Instant::now(),
            src,
        });
        for _ in 0..workers {
            state.running.fetch_add(1, Ordering::AcqRel);
            let st = state.clone();
            if !pool.spawn(Box::new(move || st.work())) {
                state.running.fetch_sub(1, Ordering::AcqRel);
                state.slots.fetch_add(1, Ordering::AcqRel);
            }
        }
        Some(WholeFetch { state })
    }

    /// A read of `offset` reached the mount: once the whole version is in the kernel's pages,
    /// the kernel has let go of that page, so put its block back (in the background, on one
    /// of `pool`'s workers; each block queued once at a time).
    pub fn missed(&self, offset: u64, pool: &PrefetchPool) {
        let st = &self.state;
        if !st.done.load(Ordering::Acquire) || !st.feeding.load(Ordering::Acquire) || st.stopped() {
            return;
        }
        let Some(bs) = st.src.block_size() else {
            return;
        };
        {
            let mut q = st.refeed.lock();
            if !q.queued.insert(offset / bs) {
                return;
            }
            q.blocks.push_back(offset / bs);
            if q.working {
                return;
            }
            // One of the workers background fetches may take (at most half the pool): a
            // store waits for pages that reads in flight hold, and those reads may need
            // the pool's other workers.
            if pool.take_whole_slots(1) == 0 {
                *q = Refeed::default();
                return;
            }
            q.working = true;
        }
        let worker = st.clone();
        if !pool.spawn(Box::new(move || worker.refeed(bs))) {
            st.slots.fetch_add(1, Ordering::AcqRel);
            let mut q = st.refeed.lock();
            *q = Refeed::default();
        }
    }
}

impl Drop for WholeFetch {
    fn drop(&mut self) {
        let was_stopped = self.state.stop.swap(true, Ordering::AcqRel);
        if !was_stopped && self.state.running.load(Ordering::Acquire) > 0 {
            log::debug!(
                "{}: background fetch of the whole object stopped: file closed",
                self.state.src.obj()
            );
        }
    }
}

impl State {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// One worker: take parts until none is left or the fetch is stopped.
    fn work(&self) {
        self.fetch_parts();
        self.slots.fetch_add(1, Ordering::AcqRel);
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 && !self.stopped() {
            self.done.store(true, Ordering::Release);
            log::debug!(
                "{}: whole object in the cache after {:.1?} ({} bytes into the kernel's pages)",
                self.src.obj(),
                self.started.elapsed(),
                self.fed.load(Ordering::Acquire)
            );
        }
    }

    fn fetch_parts(&self) {
        let Some(bs) = self.src.block_size() else {
            return;
        };
        let per_part = (PART_SIZE / bs).max(1);
        let blocks = self.src.size().div_ceil(bs);
        let mut buffer: Option<Buffer> = None;
        loop {
            if self.stopped() {
                return;
            }
            let first = self.next_block.fetch_add(per_part, Ordering::AcqRel);
            if first >= blocks {
                return;
            }
            let last = (first + per_part - 1).min(blocks - 1);
            let missing = self.src.missing_blocks(first, last);
            let feeding = self.feeding.load(Ordering::Acquire);
            if missing.is_empty() && !feeding {
                continue;
            }
            let buf = match &mut buffer {
                Some(b) => b,
                None => match self.take_buffer() {
                    Some(b) => buffer.insert(b),
                    None => return, // stopped while waiting
                },
            };
            for (a, b) in runs(&missing) {
                if self.stopped() {
                    return;
                }
                if let Err(e) = self.src.fetch_blocks(a, b, buf.as_mut_slice()) {
                    log::info!(
                        "{}: background fetch of the whole object stopped: {e}",
                        self.src.obj()
                    );
                    self.stop.store(true, Ordering::Release);
                    return;
                }
                if feeding {
                    self.feed(a, b, bs, buf.as_slice());
                }
            }
            if feeding {
                self.feed_cached(first, last, bs, &missing, buf.as_mut_slice());
            }
        }
    }

    /// One worker putting the queued blocks back into the kernel's pages, until none is left.
    fn refeed(&self, bs: u64) {
        let mut buffer: Option<Buffer> = None;
        loop {
            let block = {
                let mut q = self.refeed.lock();
                let next = q.blocks.pop_front();
                match next {
                    Some(b) if !self.stopped() && self.feeding.load(Ordering::Acquire) => {
                        q.queued.remove(&b);
                        b
                    }
                    _ => {
                        *q = Refeed::default();
                        self.slots.fetch_add(1, Ordering::AcqRel);
                        return;
                    }
                }
            };
            if buffer.is_none() {
                // Never waiting for one: a block not put back is read through FUSE.
                buffer = self.buffers.try_take();
            }
            if let Some(buf) = &mut buffer {
                self.feed_cached(block, block, bs, &[], buf.as_mut_slice());
            }
        }
    }

    /// Put blocks `a..=b`, fetched into `buf`, into the kernel's pages; stop feeding at the
    /// first refusal.
    fn feed(&self, a: u64, b: u64, bs: u64, buf: &[u8]) {
        if self.stopped() || !self.feeding.load(Ordering::Acquire) {
            return;
        }
        let (start, end) = (a * bs, ((b + 1) * bs).min(self.src.size()));
        let Some(data) = buf.get(..(end - start) as usize) else {
            return;
        };
        for (i, chunk) in data.chunks(FEED_CHUNK).enumerate() {
            let at = start + (i * FEED_CHUNK) as u64;
            if self.stopped() {
                return;
            }
            if !self.src.feed_kernel(at, chunk) {
                if self.feeding.swap(false, Ordering::AcqRel) {
                    log::debug!(
                        "{}: no more pages into the kernel from the whole fetch",
                        self.src.obj()
                    );
                }
                return;
            }
            self.fed.fetch_add(chunk.len() as u64, Ordering::AcqRel);
        }
    }

    /// Put the blocks of `first..=last` the cache held before (all but `missing`) into the
    /// kernel's pages, read from the cache into `buf`.
    fn feed_cached(&self, first: u64, last: u64, bs: u64, missing: &[u64], buf: &mut [u8]) {
        let held: Vec<u64> = (first..=last).filter(|b| !missing.contains(b)).collect();
        for (a, b) in runs(&held) {
            if self.stopped() || !self.feeding.load(Ordering::Acquire) {
                return;
            }
            let (start, end) = (a * bs, ((b + 1) * bs).min(self.src.size()));
            let Some(dst) = buf.get_mut(..(end - start) as usize) else {
                return;
            };
            match self.src.read_into(start, dst) {
                Ok((n, _)) if n == dst.len() => self.feed(a, b, bs, dst),
                _ => return,
            }
        }
    }

    /// A buffer of the pool, waiting for one if none is free; `None` if stopped meanwhile.
    fn take_buffer(&self) -> Option<Buffer> {
        loop {
            if let Some(b) = self.buffers.try_take() {
                return Some(b);
            }
            if self.stopped() {
                return None;
            }
            std::thread::sleep(BUFFER_WAIT);
        }
    }
}
