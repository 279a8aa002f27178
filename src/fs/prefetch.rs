//! Read-ahead for sequential readers: parallel ranged GETs on a shared worker pool; and, for
//! random readers, learning when to fetch their object whole.
//!
//! How it works. Each open file that is read (and not being modified) has a [`Prefetcher`].
//! A read at the offset where the previous one ended counts as sequential: the prefetcher then
//! keeps the bytes `[offset, offset + window)` requested, as parts of at most [`PART_SIZE`]
//! fetched by the pool's workers, each a ranged GET pinned to the ETag seen at open
//! (`If-Match`), so parts never mix two versions. The window starts at [`FIRST_WINDOW`] — small,
//! so a program that reads only a file's head costs little — and doubles with every sequential
//! read up to [`MAX_WINDOW`]. A read elsewhere (a seek) drops the parts and fetches exactly the
//! bytes asked for, with no read-ahead.
//!
//! Bytes come through an [`ObjectSource`], which serves blocks of the data cache from disk.
//! When the version is cached, parts start and end on block boundaries (a sequential run
//! starting mid-block starts its first part at the block's start), so that every part can be
//! stored whole; whether it is depends on the object's size (`cache::policy`: a streamed
//! object is admitted only up to a share of the cache), and storing happens behind the reader
//! (`cache::writer`).
//!
//! A part is fetched into a buffer of the pool's budget ([`super::buffers`]), and a read that
//! falls within one part answers with a slice of it: no copy between the HTTP body and the
//! reply to the kernel.
//!
//! Random readers: the distinct blocks their seeks touch are counted (`cache::policy::
//! RandomReads`); once there are enough and the object fits its share of the cache, the whole
//! object is fetched into the cache in the background ([`super::whole`]) while reads go on,
//! served from the blocks as they land. The fetch stops when the file is closed (the
//! prefetcher is dropped), or when the object changes (its GETs, pinned with `If-Match`, fail).
//!
//! Memory is bounded twice: per file by the window, and across the mount by the pool's
//! buffers ([`PrefetchPool::new`]); a part that finds no free buffer is simply not fetched
//! ahead, and the reader fetches what it needs when it gets there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};

use super::buffers::{Buffer, BufferPool, Filled, ReadData};
use super::error::{FsError, FsResult};
use super::fetch::ObjectSource;
use super::whole::WholeFetch;
use crate::cache::policy::RandomReads;
use crate::cache::writer::SharedBytes;
use crate::s3::ObjectRef;

/// Largest part fetched by one GET: big enough that request overhead is small, small enough
/// that several are in flight at once (S3 serves one connection at roughly 100 MB/s). Also
/// the size of every buffer of the pool.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Read-ahead after the first sequential read.
pub const FIRST_WINDOW: u64 = 1024 * 1024;
/// Largest read-ahead per file.
pub const MAX_WINDOW: u64 = 64 * 1024 * 1024;
/// Default budget for part buffers across the whole mount: 16 parts, two files at full
/// window, or many files at a part each; with the rest of the process, a mount stays under
/// 256 MiB of RSS whatever the number of readers (bench/read-cost.sh --only par).
pub const DEFAULT_MEMORY_LIMIT: u64 = 128 * 1024 * 1024;
/// Worker threads doing GETs.
pub const DEFAULT_WORKERS: usize = 16;
/// How far from where the last read ended a read of a sequential reader still counts as
/// sequential. The kernel's read-ahead sends several reads of one file at once, handled by
/// several FUSE threads, so they arrive in any order within its read-ahead window (at most
/// [`super::fuse::READ_AHEAD`]); a read that is merely early or late must not be taken for a
/// seek, which would drop the parts (measured with 4 MiB of kernel read-ahead, 1 GiB cold:
/// 567–1191 MiB/s before this, 1067–1296 after).
pub const REORDER_SLACK: u64 = 4 * 1024 * 1024;
/// Returned buffers kept for reuse: what one streaming reader hands back and takes again
/// between two reads; more would only hold memory while nothing is read.
const IDLE_BUFFERS: usize = 4;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Workers the background fetches of whole objects may take at once, across the mount: half
/// of them, so sequential readers' parts never queue behind them for long.
const WHOLE_WORKERS: usize = DEFAULT_WORKERS / 2;

/// The worker threads and the shared buffers.
#[derive(Debug)]
pub struct PrefetchPool {
    tx: Sender<Job>,
    buffers: BufferPool,
    /// Workers the background fetches of whole objects may still take.
    whole_slots: Arc<AtomicUsize>,
}

impl PrefetchPool {
    /// Start `workers` threads; at most `memory_limit` bytes of part buffers at once (at least
    /// two buffers).
    pub fn new(workers: usize, memory_limit: u64) -> Self {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::unbounded();
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("prefetch-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                });
        }
        let max = usize::try_from(memory_limit / PART_SIZE).unwrap_or(usize::MAX);
        PrefetchPool {
            tx,
            buffers: BufferPool::new(PART_SIZE as usize, max.max(2), IDLE_BUFFERS),
            whole_slots: Arc::new(AtomicUsize::new(WHOLE_WORKERS.min(workers).max(1))),
        }
    }

    /// Take up to `n` of the workers background fetches may use; how many were taken (each
    /// given back with [`PrefetchPool::give_back_slot`]).
    pub(super) fn take_whole_slots(&self, n: usize) -> usize {
        let mut cur = self.whole_slots.load(Ordering::Acquire);
        loop {
            let take = cur.min(n);
            if take == 0 {
                return 0;
            }
            match self.whole_slots.compare_exchange(
                cur,
                cur - take,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return take,
                Err(now) => cur = now,
            }
        }
    }

    /// The counter [`PrefetchPool::take_whole_slots`] takes from, for a worker to give its
    /// slot back when it ends.
    pub(super) fn whole_slots(&self) -> Arc<AtomicUsize> {
        self.whole_slots.clone()
    }

    /// Bytes of part buffers handed out now.
    pub fn used(&self) -> u64 {
        self.buffers.live() as u64 * PART_SIZE
    }

    /// Bytes of part buffers there may be at once.
    pub fn limit(&self) -> u64 {
        self.buffers.max() as u64 * PART_SIZE
    }

    /// The buffers.
    pub(super) fn buffers(&self) -> &BufferPool {
        &self.buffers
    }

    /// Run `job` on a worker; false if the workers are gone.
    pub(super) fn spawn(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }
}

#[derive(Debug)]
enum PartState {
    Pending,
    Done(Arc<Filled>),
    Failed(i32, String),
}

#[derive(Debug)]
struct Part {
    start: u64,
    len: u64,
    state: Mutex<PartState>,
    ready: Condvar,
}

impl Part {
    fn wait(&self) -> FsResult<MutexGuard<'_, PartState>> {
        let mut st = self.state.lock();
        while matches!(*st, PartState::Pending) {
            self.ready.wait(&mut st);
        }
        if let PartState::Failed(errno, msg) = &*st {
            return Err(FsError::new(*errno, msg.clone()));
        }
        Ok(st)
    }

    fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Read-ahead state of one open file.
#[derive(Debug)]
pub struct Prefetcher {
    src: Arc<ObjectSource>,
    size: u64,
    parts: BTreeMap<u64, Arc<Part>>,
    /// Where the next sequential read starts.
    next_offset: u64,
    /// First byte not yet requested.
    scheduled_to: u64,
    window: u64,
    /// Blocks touched by random reads, while the object may still be fetched whole.
    random: Option<RandomReads>,
    /// The background fetch of the whole object, once random reads asked for it.
    whole: Option<WholeFetch>,
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Stop the background fetch before the parts give their buffers back to the pool: a
        // fetch worker waiting for a buffer would take one of them and send its GET after the
        // file's close (`tests/cache.rs` `the_background_fetch_stops_when_the_file_is_closed`
        // saw two on s3s-fs).
        self.whole.take();
    }
}

impl Prefetcher {
    /// A prefetcher for the object version `src`.
    pub fn new(src: ObjectSource) -> Self {
        let random = match src.block_size() {
            Some(bs) if src.may_fetch_whole() => Some(RandomReads::new(src.size().div_ceil(bs))),
            _ => None,
        };
        Prefetcher {
            size: src.size(),
            src: Arc::new(src),
            parts: BTreeMap::new(),
            next_offset: 0,
            scheduled_to: 0,
            window: 0,
            random,
            whole: None,
        }
    }

    /// True if this prefetcher reads that version.
    pub fn is_for(&self, obj: &ObjectRef, etag: &Option<String>, size: u64) -> bool {
        self.src.is(obj, etag, size)
    }

    /// `offset` rounded down to a block boundary when the version is cached.
    fn align_down(&self, offset: u64) -> u64 {
        match self.src.block_size() {
            Some(bs) => offset / bs * bs,
            None => offset,
        }
    }

    /// Read `size` bytes at `offset`.
    pub fn read(&mut self, pool: &PrefetchPool, offset: u64, size: u32) -> FsResult<ReadData> {
        if offset >= self.size || size == 0 {
            return Ok(ReadData::empty());
        }
        let end = (offset + size as u64).min(self.size);
        // Near where the last read ended, while reads are sequential: early or late, not a
        // seek. (A random reader's window is 0: its reads are never "near".)
        let near = self.window > 0
            && offset >= self.next_offset.saturating_sub(REORDER_SLACK)
            && offset <= self.next_offset + REORDER_SLACK;
        let sequential = offset == self.next_offset || near || self.covered(offset);
        if !sequential {
            // A seek: forget the read-ahead, fetch exactly what is asked.
            self.parts.clear();
            self.window = 0;
            self.next_offset = end;
            self.scheduled_to = end;
            self.learn(pool, offset, end);
            if let Some(w) = &self.whole {
                w.missed(offset, pool);
            }
            // The blocks of an object too large to be fetched whole are not kept: a seek is
            // also how a sequential read of it may begin (the kernel's reads arrive out of
            // order), and the object would push smaller ones out.
            let keep = self.src.admits_random();
            return self.src.read_keeping(offset, end, keep).map(ReadData::from);
        }
        self.window = (self.window * 2).clamp(FIRST_WINDOW, MAX_WINDOW);
        // Parts wholly behind the reader are done with (but for reads arriving late).
        let behind = offset.saturating_sub(REORDER_SLACK);
        self.parts.retain(|_, p| p.end() > behind);
        if self.scheduled_to < offset || self.parts.is_empty() && !self.covered(offset) {
            self.scheduled_to = self.align_down(offset);
        }
        self.schedule(pool, (offset + self.window).max(end));
        let out = self.gather(offset, end)?;
        self.next_offset = self.next_offset.max(end);
        Ok(out)
    }

    /// The bytes `[offset, end)` from the parts (fetching what no part holds): a slice of one
    /// part's buffer when they are all in it, else a copy.
    fn gather(&self, offset: u64, end: u64) -> FsResult<ReadData> {
        let mut out: Vec<u8> = Vec::new();
        let mut pos = offset;
        while pos < end {
            let part = self.parts.range(..=pos).next_back().map(|(_, p)| p.clone());
            match part {
                Some(p) if pos < p.end() => {
                    let st = p.wait()?;
                    let PartState::Done(data) = &*st else {
                        return Err(FsError::new(libc::EIO, "a part not finished"));
                    };
                    let from = (pos - p.start) as usize;
                    let to = ((end - p.start) as usize).min(data.len());
                    if from >= to {
                        return Err(FsError::new(
                            libc::EIO,
                            format!("{}: short part", self.src.obj()),
                        ));
                    }
                    if pos == offset && p.start + to as u64 == end {
                        return Ok(ReadData::Shared(data.clone(), from..to));
                    }
                    if out.capacity() == 0 {
                        out.reserve_exact((end - offset) as usize);
                    }
                    out.extend_from_slice(&data[from..to]);
                    pos = p.start + to as u64;
                }
                _ => {
                    // Not prefetched (no buffer free): fetch this piece now.
                    let piece_end = end.min(
                        self.parts
                            .range(pos..)
                            .next()
                            .map(|(s, _)| *s)
                            .unwrap_or(end),
                    );
                    // Kept only as the parts of a sequential reader are.
                    let keep = self.src.admits_streamed();
                    let piece = self.src.read_keeping(pos, piece_end, keep)?;
                    if pos == offset && piece_end == end {
                        return Ok(ReadData::Owned(piece));
                    }
                    out.extend_from_slice(&piece);
                    pos = piece_end;
                }
            }
        }
        Ok(ReadData::Owned(out))
    }

    /// A random read of `[offset, end)`: count the blocks it touches, and start fetching the
    /// whole object once random reads have touched enough of them.
    fn learn(&mut self, pool: &PrefetchPool, offset: u64, end: u64) {
        let (Some(random), Some(bs)) = (&mut self.random, self.src.block_size()) else {
            return;
        };
        if random.touch(offset / bs, (end - 1) / bs) {
            // None when other objects' fetches have all the workers they may: tried again at
            // the next random read.
            self.whole = WholeFetch::start(self.src.clone(), pool);
            if self.whole.is_some() {
                log::debug!(
                    "{}: random reads touched {} blocks: fetching the whole object",
                    self.src.obj(),
                    random.touched()
                );
                self.random = None;
            }
        }
    }

    fn covered(&self, offset: u64) -> bool {
        self.parts
            .range(..=offset)
            .next_back()
            .is_some_and(|(_, p)| offset < p.end())
    }

    fn schedule(&mut self, pool: &PrefetchPool, until: u64) {
        let until = until.min(self.size);
        let admit = self.src.admits_streamed();
        while self.scheduled_to < until {
            let start = self.scheduled_to;
            let mut len = PART_SIZE.min(self.window).min(self.size - start);
            if let Some(bs) = self.src.block_size() {
                // End on a block boundary (or the object's end), so the part can be stored
                // whole (a block larger than a part makes the part one block, if it fits).
                let end = ((start + len) / bs * bs).max(start + bs).min(self.size);
                len = (end - start).min(PART_SIZE);
            }
            let Some(buffer) = pool.buffers.try_take() else {
                return; // over budget: the reader fetches it itself when it gets there
            };
            let part = Arc::new(Part {
                start,
                len,
                state: Mutex::new(PartState::Pending),
                ready: Condvar::new(),
            });
            self.parts.insert(start, part.clone());
            self.scheduled_to = start + len;
            let src = self.src.clone();
            let job: Job = Box::new(move || {
                let state = fetch_part(&src, start, len, buffer, admit);
                *part.state.lock() = state;
                part.ready.notify_all();
            });
            if !pool.spawn(job) {
                return;
            }
        }
    }
}

/// Fetch `[start, start + len)` into `buffer`; hand the whole blocks fetched to the cache's
/// write-behind queue if the object is `admit`ted.
fn fetch_part(
    src: &ObjectSource,
    start: u64,
    len: u64,
    mut buffer: Buffer,
    admit: bool,
) -> PartState {
    let dst = &mut buffer.as_mut_slice()[..len as usize];
    match src.read_into(start, dst) {
        Ok((n, runs)) if n as u64 == len => {
            let filled = Arc::new(Filled::new(buffer, n));
            if admit && !runs.is_empty() {
                let shared: SharedBytes = filled.clone();
                src.store_behind(&shared, &runs);
            }
            PartState::Done(filled)
        }
        Ok((n, _)) => PartState::Failed(
            libc::EIO,
            format!(
                "{}: object shorter than expected ({n} of {len} bytes at {start})",
                src.obj()
            ),
        ),
        Err(e) => PartState::Failed(e.errno, e.message),
    }
}
