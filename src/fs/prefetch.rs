//! Read-ahead for sequential readers: parallel ranged GETs on a shared worker pool.
//!
//! How it works. Each open file that is read (and not being modified) has a [`Prefetcher`].
//! A read at the offset where the previous one ended counts as sequential: the prefetcher then
//! keeps the bytes `[offset, offset + window)` requested, as parts of at most [`PART_SIZE`]
//! fetched by the pool's workers, each a ranged GET pinned to the ETag seen at open
//! (`If-Match`), so parts never mix two versions. The window starts at [`FIRST_WINDOW`] — small,
//! so a program that reads only a file's head costs little — and doubles with every sequential
//! read up to [`MAX_WINDOW`]. A read elsewhere (a seek) drops the parts and fetches exactly the
//! bytes asked for, with no read-ahead: random readers never fetch whole objects.
//!
//! Bytes come through an [`ObjectSource`], which serves blocks of the data cache from disk
//! and stores the whole blocks it fetches. When the version is cached, parts start and end on
//! block boundaries (a sequential run starting mid-block starts its first part at the block's
//! start), so every prefetched part is stored whole.
//!
//! Memory is bounded twice: per file by the window, and across the mount by a shared byte
//! budget ([`PrefetchPool::new`]); a part that does not fit in the budget is simply not fetched
//! ahead, and the reader fetches what it needs when it gets there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};

use super::error::{FsError, FsResult};
use super::fetch::ObjectSource;
use crate::s3::ObjectRef;

/// Largest part fetched by one GET: big enough that request overhead is small, small enough
/// that several are in flight at once (S3 serves one connection at roughly 100 MB/s).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Read-ahead after the first sequential read.
pub const FIRST_WINDOW: u64 = 1024 * 1024;
/// Largest read-ahead per file.
pub const MAX_WINDOW: u64 = 64 * 1024 * 1024;
/// Default budget for prefetched bytes across the whole mount.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
/// Worker threads doing GETs.
pub const DEFAULT_WORKERS: usize = 16;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The worker threads and the shared memory budget.
#[derive(Debug)]
pub struct PrefetchPool {
    tx: Sender<Job>,
    budget: Arc<AtomicU64>,
    limit: u64,
}

impl PrefetchPool {
    /// Start `workers` threads; at most `memory_limit` bytes prefetched at once.
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
        PrefetchPool {
            tx,
            budget: Arc::new(AtomicU64::new(0)),
            limit: memory_limit,
        }
    }

    /// Bytes currently held by prefetched parts.
    pub fn used(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    fn reserve(&self, n: u64) -> Option<Reservation> {
        let mut cur = self.budget.load(Ordering::Relaxed);
        loop {
            if cur + n > self.limit {
                return None;
            }
            match self
                .budget
                .compare_exchange(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(Reservation {
                        budget: self.budget.clone(),
                        n,
                    })
                }
                Err(now) => cur = now,
            }
        }
    }
}

/// Bytes of the budget held by one part; given back when the part is dropped.
#[derive(Debug)]
struct Reservation {
    budget: Arc<AtomicU64>,
    n: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.n, Ordering::AcqRel);
    }
}

#[derive(Debug)]
enum PartState {
    Pending,
    Done(Vec<u8>),
    Failed(i32, String),
}

#[derive(Debug)]
struct Part {
    start: u64,
    state: Mutex<PartState>,
    ready: Condvar,
    _reservation: Reservation,
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
}

impl Prefetcher {
    /// A prefetcher for the object version `src`.
    pub fn new(src: ObjectSource) -> Self {
        Prefetcher {
            size: src.size(),
            src: Arc::new(src),
            parts: BTreeMap::new(),
            next_offset: 0,
            scheduled_to: 0,
            window: 0,
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
    pub fn read(&mut self, pool: &PrefetchPool, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        if offset >= self.size || size == 0 {
            return Ok(Vec::new());
        }
        let end = (offset + size as u64).min(self.size);
        let sequential = offset == self.next_offset || self.covered(offset);
        if !sequential {
            // A seek: forget the read-ahead, fetch exactly what is asked.
            self.parts.clear();
            self.window = 0;
            self.next_offset = end;
            self.scheduled_to = end;
            return self.src.read(offset, end);
        }
        self.window = (self.window * 2).clamp(FIRST_WINDOW, MAX_WINDOW);
        // Parts wholly behind the reader are done with.
        self.parts.retain(|start, p| {
            let len = part_len(p);
            start + len > offset
        });
        if self.scheduled_to < offset || self.parts.is_empty() && !self.covered(offset) {
            self.scheduled_to = self.align_down(offset);
        }
        self.schedule(pool, (offset + self.window).max(end));
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let part = self.parts.range(..=pos).next_back().map(|(_, p)| p.clone());
            match part {
                Some(p) if pos < p.start + part_len(&p) => {
                    let st = p.wait()?;
                    if let PartState::Done(data) = &*st {
                        let from = (pos - p.start) as usize;
                        let to = ((end - p.start) as usize).min(data.len());
                        if from >= to {
                            return Err(FsError::new(
                                libc::EIO,
                                format!("{}: short part", self.src.obj()),
                            ));
                        }
                        out.extend_from_slice(&data[from..to]);
                        pos = p.start + to as u64;
                    }
                }
                _ => {
                    // Not prefetched (budget full): fetch this piece now.
                    let piece_end = end.min(
                        self.parts
                            .range(pos..)
                            .next()
                            .map(|(s, _)| *s)
                            .unwrap_or(end),
                    );
                    out.extend(self.src.read(pos, piece_end)?);
                    pos = piece_end;
                }
            }
        }
        self.next_offset = end;
        Ok(out)
    }

    fn covered(&self, offset: u64) -> bool {
        self.parts
            .range(..=offset)
            .next_back()
            .is_some_and(|(s, p)| offset < s + part_len(p))
    }

    fn schedule(&mut self, pool: &PrefetchPool, until: u64) {
        let until = until.min(self.size);
        while self.scheduled_to < until {
            let start = self.scheduled_to;
            let mut len = PART_SIZE.min(self.window).min(self.size - start);
            if let Some(bs) = self.src.block_size() {
                // End on a block boundary (or the object's end), so the part is stored whole.
                let end = ((start + len) / bs * bs).max(start + bs).min(self.size);
                len = end - start;
            }
            let Some(reservation) = pool.reserve(len) else {
                return; // over budget: the reader fetches it itself when it gets there
            };
            let part = Arc::new(Part {
                start,
                state: Mutex::new(PartState::Pending),
                ready: Condvar::new(),
                _reservation: reservation,
            });
            self.parts.insert(start, part.clone());
            self.scheduled_to = start + len;
            let src = self.src.clone();
            let job: Job = Box::new(move || {
                let state = match src.read(start, start + len) {
                    Ok(buf) if buf.len() as u64 == len => PartState::Done(buf),
                    Ok(buf) => PartState::Failed(
                        libc::EIO,
                        format!(
                            "{}: object shorter than expected ({} of {len} bytes at {start})",
                            src.obj(),
                            buf.len()
                        ),
                    ),
                    Err(e) => PartState::Failed(e.errno, e.message),
                };
                *part.state.lock() = state;
                part.ready.notify_all();
            });
            if pool.tx.send(job).is_err() {
                return;
            }
        }
    }
}

fn part_len(p: &Part) -> u64 {
    p._reservation.n
}
