//! Getting bytes of one object version: from the data cache where its blocks are there, else by
//! ranged GETs pinned to the version's ETag (`If-Match`), keeping the whole blocks fetched.
//!
//! With the cache on (and an ETag to name the version by), a range is read block by block:
//! every cached block is read from disk, and each run of missing blocks is fetched by one GET.
//! That GET covers the run's whole blocks when this at most doubles the bytes the caller needs
//! (always so for the prefetcher's block-aligned parts); otherwise (a small random read) it
//! fetches exactly the bytes needed, so a 4 KiB read never turns into a 1 MiB GET. Without the
//! cache, a range is one GET, as asked.
//!
//! Which whole blocks fetched are kept is the caller's choice: [`ObjectSource::read_into`]
//! fetches into the caller's buffer and says which whole blocks came from the server; the
//! read-ahead hands those of an admitted object to the cache's write-behind queue
//! ([`ObjectSource::store_behind`], see `cache::policy` for what is admitted), a random read
//! ([`ObjectSource::read`]) stores its whole blocks at once, and the background fetch of a
//! whole object ([`ObjectSource::fetch_blocks`]) stores what it fetches — and, for the source
//! of an open file, hands it to the kernel's pages of the file too
//! ([`ObjectSource::feed_kernel`], see `super::page_cache`).

use std::ops::Range;
use std::sync::Arc;

use super::error::{FsError, FsResult};
use super::page_cache::KernelPages;
use crate::cache::data::{CachedObject, DataCache};
use crate::cache::policy;
use crate::cache::writer::{CacheWriter, SharedBytes};
use crate::s3::{Bucket, ObjectRef};

/// Whole blocks a fetch brought from the server: (first block, where they are in the buffer).
pub type FetchedRuns = Vec<(u64, Range<usize>)>;

/// The data cache, as one object version sees it.
#[derive(Debug)]
struct CacheSide {
    cache: Arc<DataCache>,
    co: CachedObject,
    writer: Arc<CacheWriter>,
}

/// One version of one object, and where its blocks may be cached.
#[derive(Debug)]
pub struct ObjectSource {
    bucket: Bucket,
    obj: ObjectRef,
    etag: Option<String>,
    size: u64,
    cache: Option<CacheSide>,
    /// The inode whose kernel pages a whole fetch also fills.
    kernel: Option<(Arc<KernelPages>, u64)>,
}

impl ObjectSource {
    /// The version `etag` (of `size` bytes) of `obj`, read through `bucket` (`obj`'s); cached in
    /// `cache` (through its write-behind queue) if given and the version has an ETag (without
    /// one it cannot be told from the next).
    pub fn new(
        bucket: Bucket,
        obj: ObjectRef,
        etag: Option<String>,
        size: u64,
        cache: Option<(Arc<DataCache>, Arc<CacheWriter>)>,
    ) -> Self {
        let cache = match (cache, etag.as_deref()) {
            (Some((cache, writer)), Some(e)) => {
                let co = cache.object(&obj.bucket, &obj.key, e, size);
                Some(CacheSide { cache, co, writer })
            }
            _ => None,
        };
        ObjectSource {
            bucket,
            obj,
            etag,
            size,
            cache,
            kernel: None,
        }
    }

    /// The same source, read for inode `ino`: a fetch of the whole version also puts it into
    /// the kernel's pages of `ino` ([`ObjectSource::feed_kernel`]).
    pub fn for_inode(mut self, pages: Arc<KernelPages>, ino: u64) -> Self {
        self.kernel = Some((pages, ino));
        self
    }

    /// True if [`ObjectSource::feed_kernel`] may store anything (an inode to feed, a version).
    pub fn feeds_kernel(&self) -> bool {
        self.kernel.is_some() && self.etag.is_some()
    }

    /// Put `data`, the bytes from `offset` of this version, into the kernel's pages of the
    /// inode it is read for, if they may take them now (see `super::page_cache`); true if
    /// they did.
    pub fn feed_kernel(&self, offset: u64, data: &[u8]) -> bool {
        match (&self.kernel, &self.etag) {
            (Some((pages, ino)), Some(etag)) => pages.store(*ino, etag, offset, data),
            _ => false,
        }
    }

    /// True if this is that version.
    pub fn is(&self, obj: &ObjectRef, etag: &Option<String>, size: u64) -> bool {
        &self.obj == obj && &self.etag == etag && self.size == size
    }

    /// The object.
    pub fn obj(&self) -> &ObjectRef {
        &self.obj
    }

    /// Its size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The cache's block size, if this version is cached (ranges aligned to it are stored).
    pub fn block_size(&self) -> Option<u64> {
        self.cache.as_ref().map(|c| c.cache.block_size())
    }

    /// True if a sequential read of this version is kept in the cache (see `cache::policy`).
    pub fn admits_streamed(&self) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|c| policy::admits_streamed(self.size, c.cache.max_bytes()))
    }

    /// True if the whole blocks a random read of this version fetches are kept (see
    /// `cache::policy`).
    pub fn admits_random(&self) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|c| policy::admits_random(self.size, c.cache.max_bytes()))
    }

    /// True if random reads of this version may have it fetched whole (see `cache::policy`).
    pub fn may_fetch_whole(&self) -> bool {
        self.cache.as_ref().is_some_and(|c| {
            policy::may_fetch_whole(self.size, c.cache.max_bytes(), c.cache.block_size())
        })
    }

    /// Bytes `[start, end)` (`end` ≤ the size), storing the whole blocks fetched. Without the
    /// cache, an object found shorter than expected gives fewer bytes; with it, an error.
    pub fn read(&self, start: u64, end: u64) -> FsResult<Vec<u8>> {
        self.read_keeping(start, end, true)
    }

    /// [`ObjectSource::read`], storing the whole blocks fetched only if `keep`.
    pub fn read_keeping(&self, start: u64, end: u64, keep: bool) -> FsResult<Vec<u8>> {
        let end = end.min(self.size);
        if start >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - start) as usize];
        let (n, runs) = self.read_into(start, &mut out)?;
        out.truncate(n);
        if let Some(c) = self.cache.as_ref().filter(|_| keep) {
            for (first, range) in runs {
                store_run(&c.cache, &c.co, first, &out[range]);
            }
        }
        Ok(out)
    }

    /// Fill `out` with the bytes from `start` on (fewer only without the cache, when the object
    /// is shorter than expected): cached blocks from disk, the rest by ranged GETs. Returns
    /// how many bytes were filled and the runs of whole blocks that came from the server, for
    /// the caller to store or not.
    pub fn read_into(&self, start: u64, out: &mut [u8]) -> FsResult<(usize, FetchedRuns)> {
        let end = (start + out.len() as u64).min(self.size);
        if start >= end {
            return Ok((0, Vec::new()));
        }
        let out = &mut out[..(end - start) as usize];
        let Some(c) = &self.cache else {
            return Ok((self.get(start, out)?, Vec::new()));
        };
        let bs = c.cache.block_size();
        let mut missing: Vec<u64> = Vec::new();
        for b in start / bs..=(end - 1) / bs {
            let (bstart, bend) = (b * bs, ((b + 1) * bs).min(self.size));
            let (s, e) = (start.max(bstart), end.min(bend));
            let dst = &mut out[(s - start) as usize..(e - start) as usize];
            if !c.cache.read(&c.co, b, s - bstart, dst) {
                missing.push(b);
            }
        }
        let mut fetched = Vec::new();
        for (first, last) in runs(&missing) {
            let (astart, aend) = (first * bs, ((last + 1) * bs).min(self.size));
            let (nstart, nend) = (start.max(astart), end.min(aend));
            let needed = (nstart - start) as usize..(nend - start) as usize;
            if aend - astart > 2 * (nend - nstart) {
                // A small read: exactly the bytes needed, nothing stored.
                self.get_exact(nstart, &mut out[needed])?;
            } else if (astart, aend) == (nstart, nend) {
                self.get_exact(astart, &mut out[needed.clone()])?;
                fetched.push((first, needed));
            } else {
                // Whole blocks for a part of them: fetched aside, stored now.
                let mut whole = vec![0u8; (aend - astart) as usize];
                self.get_exact(astart, &mut whole)?;
                out[needed]
                    .copy_from_slice(&whole[(nstart - astart) as usize..(nend - astart) as usize]);
                store_run(&c.cache, &c.co, first, &whole);
            }
        }
        Ok((end.saturating_sub(start) as usize, fetched))
    }

    /// Hand the whole blocks `runs` of `data` (a buffer [`ObjectSource::read_into`] filled) to
    /// the cache's write-behind queue; those that do not fit in it are not cached.
    pub fn store_behind(&self, data: &SharedBytes, runs: &FetchedRuns) {
        if let Some(c) = &self.cache {
            for (first, range) in runs {
                c.writer.submit(&c.co, *first, data.clone(), range.clone());
            }
        }
    }

    /// The blocks of `first..=last` not in the cache (all of them without a cache).
    pub fn missing_blocks(&self, first: u64, last: u64) -> Vec<u64> {
        match &self.cache {
            Some(c) => (first..=last)
                .filter(|&b| !c.cache.contains(&c.co, b))
                .collect(),
            None => (first..=last).collect(),
        }
    }

    /// Fetch the whole blocks `first..=last` by one ranged GET into `buf` and store them now.
    /// `buf` must hold them; without the cache this does nothing. An error too if the cache
    /// did not take them (it is full of blocks being written, or its disk is short of space).
    pub fn fetch_blocks(&self, first: u64, last: u64, buf: &mut [u8]) -> FsResult<()> {
        let Some(c) = &self.cache else {
            return Ok(());
        };
        let bs = c.cache.block_size();
        let (start, end) = (first * bs, ((last + 1) * bs).min(self.size));
        if start >= end {
            return Ok(());
        }
        let len = (end - start) as usize;
        let Some(dst) = buf.get_mut(..len) else {
            return Err(FsError::new(
                libc::EIO,
                format!(
                    "{}: {len} bytes do not fit a {} byte buffer",
                    self.obj,
                    buf.len()
                ),
            ));
        };
        self.get_exact(start, dst)?;
        if !store_run(&c.cache, &c.co, first, dst) {
            return Err(FsError::new(
                libc::ENOSPC,
                format!("{}: the data cache does not take more blocks", self.obj),
            ));
        }
        Ok(())
    }

    /// One ranged GET into `buf`; how many bytes came (fewer at the object's end).
    fn get(&self, start: u64, buf: &mut [u8]) -> FsResult<usize> {
        match self
            .bucket
            .read_range(&self.obj.key, start, buf, self.etag.as_deref())
        {
            Ok((n, _)) => Ok(n),
            Err(e) if e.is_precondition_failed() => Err(FsError::new(
                libc::EIO,
                format!("{}: changed on the server while open", self.obj),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A ranged GET that must fill `buf`.
    fn get_exact(&self, start: u64, buf: &mut [u8]) -> FsResult<()> {
        let n = self.get(start, buf)?;
        if n != buf.len() {
            return Err(FsError::new(
                libc::EIO,
                format!(
                    "{}: object shorter than expected ({n} of {} bytes at {start})",
                    self.obj,
                    buf.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Store `data`, the whole blocks from `first` on; true if the cache took them all.
fn store_run(cache: &DataCache, co: &CachedObject, first: u64, data: &[u8]) -> bool {
    let bs = cache.block_size() as usize;
    let mut all = true;
    for (i, block) in data.chunks(bs).enumerate() {
        all &= cache.store(co, first + i as u64, block);
    }
    all
}

/// Sorted block numbers → runs of consecutive ones, as (first, last).
pub fn runs(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &b in blocks {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == b => *last = b,
            _ => out.push((b, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_of_consecutive_blocks() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[3]), vec![(3, 3)]);
        assert_eq!(runs(&[0, 1, 2, 5, 7, 8]), vec![(0, 2), (5, 5), (7, 8)]);
    }
}
