//! Memory for reads: the mount's budget of part buffers, recycled, and the bytes a read
//! answers with.
//!
//! Recycled: a buffer freshly mapped costs a page fault and a zeroed page for every 4 KiB
//! written into it, and unmapping it costs again. Measured on this project's VM, a 1 GiB
//! sequential read spent about a quarter of its CPU there (`perf`: `exc_page_fault`,
//! `clear_page_erms`, `unmap_page_range`). The pool hands back buffers already mapped, so a
//! streaming read writes into the same memory over and over.
//!
//! Fixed size: every buffer is the pool's buffer size whatever the length it is used for, and
//! the budget counts buffers, so resident memory stays under `buffers × size` whatever was held
//! before (a buffer reused for a short part keeps the pages a long one touched). Idle buffers
//! are kept up to a small number and freed beyond it.
//!
//! Shared: a filled buffer is behind an `Arc` ([`Filled`]); a read answered from it is a slice
//! of it ([`ReadData::Shared`]), handed to the kernel with no copy in between. The buffer goes
//! back to the pool when the last holder — the part, a reply being sent, a block waiting to be
//! written to the data cache — lets go.

use std::ops::{Deref, Range};
use std::sync::Arc;

use parking_lot::Mutex;

/// A pool of equal buffers with a bound on how many exist at once.
#[derive(Debug, Clone)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    size: usize,
    max: usize,
    keep_idle: usize,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<Box<[u8]>>,
    /// Buffers handed out and not yet returned.
    live: usize,
}

impl BufferPool {
    /// At most `max` buffers of `size` bytes handed out at once; up to `keep_idle` returned
    /// ones are kept for reuse.
    pub fn new(size: usize, max: usize, keep_idle: usize) -> Self {
        BufferPool {
            inner: Arc::new(PoolInner {
                size,
                max,
                keep_idle,
                state: Mutex::new(PoolState::default()),
            }),
        }
    }

    /// A buffer, or `None` when `max` are out.
    pub fn try_take(&self) -> Option<Buffer> {
        let reused = {
            let mut st = self.inner.state.lock();
            if st.live >= self.inner.max {
                return None;
            }
            st.live += 1;
            st.idle.pop()
        };
        // Allocated outside the lock. `vec![0; n]` of this size is a fresh zeroed mapping:
        // pages are only made resident as they are written.
        let data = reused.unwrap_or_else(|| vec![0u8; self.inner.size].into_boxed_slice());
        Some(Buffer {
            data: Some(data),
            pool: self.inner.clone(),
        })
    }

    /// The size of every buffer.
    pub fn buffer_size(&self) -> usize {
        self.inner.size
    }

    /// How many buffers are handed out now.
    pub fn live(&self) -> usize {
        self.inner.state.lock().live
    }

    /// How many may be handed out at once.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// How many returned buffers are kept for reuse now.
    pub fn idle(&self) -> usize {
        self.inner.state.lock().idle.len()
    }
}

/// A buffer of the pool; goes back to it when dropped.
#[derive(Debug)]
pub struct Buffer {
    data: Option<Box<[u8]>>,
    pool: Arc<PoolInner>,
}

impl Buffer {
    /// The whole buffer.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.data.as_deref_mut().unwrap_or_default()
    }

    /// The whole buffer.
    pub fn as_slice(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let data = self.data.take();
        let mut st = self.pool.state.lock();
        st.live -= 1;
        if let Some(d) = data {
            if st.idle.len() < self.pool.keep_idle {
                st.idle.push(d);
                return;
            }
            drop(st);
            drop(d); // freed outside the lock
        }
    }
}

/// The first `len` bytes of a buffer, filled and no longer written.
#[derive(Debug)]
pub struct Filled {
    buf: Buffer,
    len: usize,
}

impl Filled {
    /// `buf`'s first `len` bytes (at most its size).
    pub fn new(buf: Buffer, len: usize) -> Self {
        let len = len.min(buf.as_slice().len());
        Filled { buf, len }
    }
}

impl Deref for Filled {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf.as_slice()[..self.len]
    }
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// The bytes a read answers with: its own, or a slice of a filled part buffer.
#[derive(Debug)]
pub enum ReadData {
    /// Bytes of its own (a cache read, a read spanning parts, a staging file).
    Owned(Vec<u8>),
    /// A range of a shared buffer.
    Shared(Arc<Filled>, Range<usize>),
}

impl ReadData {
    /// No bytes (a read at or past the end).
    pub fn empty() -> Self {
        ReadData::Owned(Vec::new())
    }
}

impl Deref for ReadData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ReadData::Owned(v) => v,
            ReadData::Shared(f, r) => &f[r.clone()],
        }
    }
}

impl From<Vec<u8>> for ReadData {
    fn from(v: Vec<u8>) -> Self {
        ReadData::Owned(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_bounded_and_recycled() {
        let pool = BufferPool::new(64, 2, 1);
        let mut a = pool.try_take().unwrap();
        let b = pool.try_take().unwrap();
        assert!(pool.try_take().is_none(), "at most 2 out");
        assert_eq!((pool.live(), pool.idle()), (2, 0));
        a.as_mut_slice()[0] = 7;
        let first = a.as_slice().as_ptr();
        drop(a);
        assert_eq!((pool.live(), pool.idle()), (1, 1));
        // The returned buffer is the one handed out next: no new mapping.
        let c = pool.try_take().unwrap();
        assert_eq!(c.as_slice().as_ptr(), first);
        assert_eq!(c.as_slice().len(), 64);
        drop(b);
        drop(c);
        assert_eq!(
            (pool.live(), pool.idle()),
            (0, 1),
            "only keep_idle are kept"
        );
    }

    #[test]
    fn a_shared_slice_holds_its_buffer_until_dropped() {
        let pool = BufferPool::new(16, 1, 1);
        let mut buf = pool.try_take().unwrap();
        buf.as_mut_slice()[..4].copy_from_slice(b"abcd");
        let filled = Arc::new(Filled::new(buf, 4));
        assert_eq!(&filled[..], b"abcd");
        let reply = ReadData::Shared(filled.clone(), 1..3);
        drop(filled);
        assert_eq!(&reply[..], b"bc");
        assert!(
            pool.try_take().is_none(),
            "the reply still holds the buffer"
        );
        drop(reply);
        assert!(pool.try_take().is_some());
        assert_eq!(&ReadData::from(b"xy".to_vec())[..], b"xy");
        assert!(ReadData::empty().is_empty());
    }
}
