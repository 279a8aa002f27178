//! Getting bytes of one object version: from the data cache where its blocks are there, else by
//! ranged GETs pinned to the version's ETag (`If-Match`), keeping the whole blocks fetched.
//!
//! With the cache on (and an ETag to name the version by), a range is read block by block:
//! every cached block is read from disk, and each run of missing blocks is fetched by one GET.
//! That GET covers the run's whole blocks — which are then stored — when this at most doubles
//! the bytes the caller needs (always so for the prefetcher's block-aligned parts); otherwise
//! (a small random read) it fetches exactly the bytes needed and stores nothing, so a 4 KiB
//! read never turns into a 1 MiB GET. Without the cache, a range is one GET, as asked.

use std::sync::Arc;

use super::error::{FsError, FsResult};
use crate::cache::data::{CachedObject, DataCache};
use crate::s3::{Bucket, ObjectRef};

/// One version of one object, and where its blocks may be cached.
#[derive(Debug)]
pub struct ObjectSource {
    bucket: Bucket,
    obj: ObjectRef,
    etag: Option<String>,
    size: u64,
    cache: Option<(Arc<DataCache>, CachedObject)>,
}

impl ObjectSource {
    /// The version `etag` (of `size` bytes) of `obj`, read through `bucket` (`obj`'s); cached in
    /// `cache` if given and the version has an ETag (without one it cannot be told from the
    /// next).
    pub fn new(
        bucket: Bucket,
        obj: ObjectRef,
        etag: Option<String>,
        size: u64,
        cache: Option<Arc<DataCache>>,
    ) -> Self {
        let cache = match (cache, etag.as_deref()) {
            (Some(c), Some(e)) => {
                let co = c.object(&obj.bucket, &obj.key, e, size);
                Some((c, co))
            }
            _ => None,
        };
        ObjectSource {
            bucket,
            obj,
            etag,
            size,
            cache,
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
        self.cache.as_ref().map(|(c, _)| c.block_size())
    }

    /// Bytes `[start, end)` (`end` ≤ the size). Without the cache, an object found shorter
    /// than expected gives fewer bytes; with it, an error.
    pub fn read(&self, start: u64, end: u64) -> FsResult<Vec<u8>> {
        let end = end.min(self.size);
        if start >= end {
            return Ok(Vec::new());
        }
        let Some((cache, co)) = &self.cache else {
            let mut buf = vec![0u8; (end - start) as usize];
            let n = self.get(start, &mut buf)?;
            buf.truncate(n);
            return Ok(buf);
        };
        let bs = cache.block_size();
        let mut out = vec![0u8; (end - start) as usize];
        let mut missing: Vec<u64> = Vec::new();
        for b in start / bs..=(end - 1) / bs {
            let (bstart, bend) = (b * bs, ((b + 1) * bs).min(self.size));
            let (s, e) = (start.max(bstart), end.min(bend));
            let dst = &mut out[(s - start) as usize..(e - start) as usize];
            if !cache.read(co, b, s - bstart, dst) {
                missing.push(b);
            }
        }
        for (first, last) in runs(&missing) {
            let (astart, aend) = (first * bs, ((last + 1) * bs).min(self.size));
            let (nstart, nend) = (start.max(astart), end.min(aend));
            if aend - astart > 2 * (nend - nstart) {
                // A small read: exactly the bytes needed, nothing stored.
                let dst = &mut out[(nstart - start) as usize..(nend - start) as usize];
                self.get_exact(nstart, dst)?;
                continue;
            }
            if (astart, aend) == (nstart, nend) {
                let dst = &mut out[(nstart - start) as usize..(nend - start) as usize];
                self.get_exact(astart, dst)?;
                store_run(cache, co, first, dst);
            } else {
                let mut whole = vec![0u8; (aend - astart) as usize];
                self.get_exact(astart, &mut whole)?;
                out[(nstart - start) as usize..(nend - start) as usize]
                    .copy_from_slice(&whole[(nstart - astart) as usize..(nend - astart) as usize]);
                store_run(cache, co, first, &whole);
            }
        }
        Ok(out)
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

/// Store `data`, the whole blocks from `first` on.
fn store_run(cache: &DataCache, co: &CachedObject, first: u64, data: &[u8]) {
    let bs = cache.block_size() as usize;
    for (i, block) in data.chunks(bs).enumerate() {
        cache.store(co, first + i as u64, block);
    }
}

/// Sorted block numbers → runs of consecutive ones, as (first, last).
fn runs(blocks: &[u64]) -> Vec<(u64, u64)> {
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
