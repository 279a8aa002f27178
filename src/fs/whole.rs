//! Fetching a whole object version into the data cache in the background, for a reader that
//! keeps seeking in it (when: `cache::policy`; started by [`super::prefetch::Prefetcher`]).
//!
//! [`WHOLE_PARALLEL`] workers of the prefetch pool take the object's parts in order (up to
//! [`PART_SIZE`] each, whole blocks), skip the blocks already cached, fetch the missing ones
//! by ranged GETs pinned to the version (`If-Match`) into buffers of the pool's budget, and
//! store them in the cache at once. Reads meanwhile find the blocks as they land. It stops:
//!
//! - when the [`WholeFetch`] is dropped — the file is closed, or its read-ahead is dropped
//!   (another version pinned, a failed read): each worker finishes the GET it is in, then
//!   stops;
//! - at the first failure: the object changed on the server (412) or a GET failed after the
//!   client's retries; the reader goes on with exact reads.
//!
//! A worker that finds no free buffer waits for one, `BUFFER_WAIT` at a time, so the fetch
//! never takes memory the readers' budget does not have.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::buffers::{Buffer, BufferPool};
use super::fetch::{runs, ObjectSource};
use super::prefetch::{PrefetchPool, PART_SIZE};

/// Parts fetched at once: enough to reach the server's bandwidth (this project's benchmark
/// server serves about 1 GB/s to 4–8 parallel ranged GETs), leaving most of the pool's workers
/// and buffers to sequential readers.
pub const WHOLE_PARALLEL: usize = 4;
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
            src,
            next_block: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            buffers: pool.buffers().clone(),
            slots: pool.whole_slots(),
            started: Instant::now(),
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
            log::debug!(
                "{}: whole object in the cache after {:.1?}",
                self.src.obj(),
                self.started.elapsed()
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
            if missing.is_empty() {
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
