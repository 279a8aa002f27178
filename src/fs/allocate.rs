//! `fallocate(2)`: space set aside, a size grown, a range zeroed or punched — as ext4 answers
//! them, through the same staging file as `write` and `truncate`.
//!
//! The modes, and what each does here:
//! - **0** (`fallocate -l`, `posix_fallocate`): the file grows to `offset + len` when that is
//!   past its end, as a `truncate` up; with `FALLOC_FL_KEEP_SIZE` (`fallocate -n`), or inside
//!   the file, no byte changes and nothing is uploaded.
//! - **`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`** (`fallocate -p`, `fallocate -d`) and
//!   **`FALLOC_FL_ZERO_RANGE`** (`fallocate -z`, with or without `KEEP_SIZE`): the range inside
//!   the file reads as zeros, and a zero range without `KEEP_SIZE` grows the file as mode 0.
//! - anything else (`COLLAPSE_RANGE`, `INSERT_RANGE`, `UNSHARE_RANGE`, a punch that would not
//!   keep the size) is EOPNOTSUPP, as the VFS and ext4 answer them.
//!
//! A change of content makes the file dirty, so it is uploaded at `fsync` or `close` like a
//! write. Every successful call moves the mtime and the ctime, as on ext4 (whose `fallocate`
//! does so even when it changes nothing); one that changes no byte keeps the new times in
//! memory only, as an atime (an upload of an unchanged object to store a time would cost the
//! whole object).
//!
//! **Space.** What the mount allocates is the object on the server, which has no
//! preallocation. The staging file is a copy on the cache dir's disk: a size grown or a range
//! punched is a hole in it (never bytes written), so `fallocate -l 6G` costs no local disk up
//! front, and the multipart upload at close reads the holes as zeros. So a later write can
//! still find the cache dir's disk full (ENOSPC, as any write there can), where ext4 would have
//! set the blocks aside; setting 6 GiB aside on the cache disk for a file that may never be
//! written would take it from the data cache and from every other open file. Where the local
//! file system has no holes, the range is written with zeros, and a full disk is ENOSPC.

use std::time::SystemTime;

use super::error::{FsError, FsResult};
use super::open_file::OpenFile;
use super::S3Fs;
use crate::s3::store::MAX_OBJECT_SIZE;

/// Zeros written at a time where the staging file's file system has no holes.
const ZERO_CHUNK: usize = 1024 * 1024;

/// One `fallocate` call, checked as the VFS and ext4 check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Allocation {
    offset: u64,
    end: u64,
    /// Punch or zero the range inside the file.
    zero: bool,
    /// The size stays (`FALLOC_FL_KEEP_SIZE`).
    keep_size: bool,
}

impl Allocation {
    /// EINVAL for a negative offset or an empty range, EOPNOTSUPP for a mode other than the
    /// three above, EFBIG past S3's largest object (5 TiB; ext4's limit is 16 TiB).
    fn new(offset: u64, len: u64, mode: i32) -> FsResult<Self> {
        if i64::try_from(offset).is_err() || len == 0 || i64::try_from(len).is_err() {
            return Err(FsError::new(
                libc::EINVAL,
                format!("fallocate of {len} bytes at {offset}"),
            ));
        }
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        let zero = match mode & !libc::FALLOC_FL_KEEP_SIZE {
            0 => false,
            libc::FALLOC_FL_PUNCH_HOLE if keep_size => true,
            libc::FALLOC_FL_ZERO_RANGE => true,
            _ => {
                return Err(FsError::new(
                    libc::EOPNOTSUPP,
                    format!("fallocate mode {mode:#x}"),
                ))
            }
        };
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= MAX_OBJECT_SIZE)
            .ok_or_else(|| {
                FsError::new(
                    libc::EFBIG,
                    format!("fallocate to {offset} + {len}: past S3's 5 TiB"),
                )
            })?;
        Ok(Allocation {
            offset,
            end,
            zero,
            keep_size,
        })
    }
}

impl S3Fs {
    /// `fallocate(fh, mode, offset, len)`: see the module documentation.
    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        let a = Allocation::new(offset, len, mode)?;
        self.check_writable()?;
        let f = self.open_files.by_handle(fh)?;
        let mut of = f.lock();
        let size = of.local_size().unwrap_or_else(|| of.version().size());
        // The part of the range inside the file that is to read as zeros, and the new size.
        let zero_end = if a.zero { a.end.min(size) } else { a.offset };
        let grow_to = (!a.keep_size && a.end > size).then_some(a.end);
        let mut queue = None;
        let now = SystemTime::now();
        if a.offset >= zero_end && grow_to.is_none() {
            // No byte changes: the times move in memory (see the module documentation).
            self.table().touched_in_memory(of.ino(), now);
        } else {
            // A server-side copy into the file under way is fetched first, as for a write.
            self.settle_copy(&mut of)?;
            self.kernel_pages.changed(of.ino());
            self.ensure_staging(&mut of, size > 0)?;
            if a.offset < zero_end {
                self.zero_staging(&mut of, a.offset, zero_end)?;
                queue = self.after_write(&mut of, a.offset, zero_end);
            }
            if let Some(end) = grow_to {
                of.truncate_staging(end)?;
            }
            self.table().modified(of.ino(), now);
        }
        drop(of);
        // Back-pressure of a streamed upload, as after a write.
        if let Some(q) = queue {
            q.wait_for_room();
        }
        Ok(())
    }

    /// `[offset, end)` of the staging file reads as zeros: a hole, or zeros written where the
    /// local file system has no holes (ENOSPC if its disk fills up).
    fn zero_staging(&self, of: &mut OpenFile, offset: u64, end: u64) -> FsResult<()> {
        let make_room = |bytes| self.make_room_for_staging(bytes);
        match of.punch_staging(offset, end, make_room) {
            Err(e) if e.errno == libc::EOPNOTSUPP => write_zeros(of, offset, end, &make_room),
            done => done,
        }
    }
}

/// Write zeros over `[offset, end)` of `of`'s staging file, asking `make_room` for space on a
/// full disk as a write does; ENOSPC if it stays full.
fn write_zeros(
    of: &mut OpenFile,
    offset: u64,
    end: u64,
    make_room: &dyn Fn(u64) -> bool,
) -> FsResult<()> {
    let chunk = |at: u64| usize::try_from(end - at).map_or(ZERO_CHUNK, |n| n.min(ZERO_CHUNK));
    let zeros = vec![0u8; chunk(offset)];
    let mut at = offset;
    while at < end {
        let want = chunk(at);
        let n = of.write_staging(at, &zeros[..want], make_room)?;
        if n < want {
            return Err(FsError::new(libc::ENOSPC, "the staging disk is full"));
        }
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::open_file::Staging;

    fn staging_on(path: &str) -> OpenFile {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut of = OpenFile::new(7);
        of.attach_staging(Staging::new(file, path.into()), None);
        of
    }

    #[test]
    fn where_the_staging_disk_has_no_holes_zeros_are_written_and_a_full_disk_is_enospc() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, vec![7u8; 3 * ZERO_CHUNK]).unwrap();
        let mut of = staging_on(path.to_str().unwrap());
        let end = 2 * ZERO_CHUNK as u64 + 10;
        write_zeros(&mut of, 5, end, &|_| false).unwrap();
        assert!(of.is_dirty());
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 3 * ZERO_CHUNK);
        assert!(got[..5].iter().all(|&b| b == 7));
        assert!(got[5..end as usize].iter().all(|&b| b == 0));
        assert!(got[end as usize..].iter().all(|&b| b == 7));
        // A disk that stays full (writes to /dev/full fail with ENOSPC; it has no holes).
        let mut full = staging_on("/dev/full");
        let asked = std::cell::Cell::new(0);
        let make_room = |_| {
            asked.set(asked.get() + 1);
            false
        };
        let e = full.punch_staging(0, 10, make_room).unwrap_err();
        assert_ne!(e.errno, 0);
        let e = write_zeros(&mut full, 0, 10, &make_room).unwrap_err();
        assert_eq!(e.errno, libc::ENOSPC);
        assert_eq!(asked.get(), 1, "the data cache was asked for room first");
    }
}
