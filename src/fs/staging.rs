//! A staging file: the local copy of an open file's new content, and what its I/O errors mean
//! to the caller.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{FsError, FsResult};

/// A staging file holding a file's new content.
#[derive(Debug)]
pub struct Staging {
    file: File,
    path: PathBuf,
}

impl Staging {
    /// A staging file just created at `path`.
    pub fn new(file: File, path: PathBuf) -> Self {
        Staging { file, path }
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Read at `offset` until `buf` is full or the file ends; the bytes read.
pub(super) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Write `data` at `offset` until all of it is written or an error stops it: the bytes
/// written, and that error. `pwrite` on a filling disk writes what fits and only the next call
/// fails, so bytes may be written before the error.
pub(super) fn write_some_at(
    file: &File,
    data: &[u8],
    offset: u64,
) -> (usize, Option<std::io::Error>) {
    let mut n = 0;
    while n < data.len() {
        match file.write_at(&data[n..], offset + n as u64) {
            Ok(0) => return (n, Some(std::io::ErrorKind::WriteZero.into())),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// Give back the blocks of `[offset, offset + len)` of `file` (a hole, which reads as zeros;
/// the size stays): `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`. EOPNOTSUPP where
/// the local file system has no holes.
pub(super) fn punch_hole(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::from_raw_os_error(libc::EFBIG));
    };
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: a plain system call on a descriptor `file` owns; no memory is passed.
    if unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// [`punch_hole`], asking `make_room` for space and trying once more on a full disk (a punch
/// may need blocks for the file's extent tree); EOPNOTSUPP where there are no holes.
pub(super) fn punch_or_make_room(
    file: &File,
    offset: u64,
    len: u64,
    make_room: impl FnOnce(u64) -> bool,
) -> FsResult<()> {
    let mut result = punch_hole(file, offset, len);
    if result.as_ref().is_err_and(is_disk_full) && make_room(len) {
        result = punch_hole(file, offset, len);
    }
    result.map_err(|e| match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => FsError::new(libc::EOPNOTSUPP, "no holes here"),
        _ => FsError::new(errno_of(&e), format!("staging punch: {e}")),
    })
}

/// The file system is full (or the user's quota is).
pub(super) fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(errno_is_disk_full)
}

/// `errno` says the file system is full (or the user's quota is).
pub(super) fn errno_is_disk_full(errno: i32) -> bool {
    matches!(errno, libc::ENOSPC | libc::EDQUOT)
}

/// The errno of a staging file's I/O error: a full disk, or a file past what the local file
/// system holds, says so; anything else is EIO.
pub fn errno_of(e: &std::io::Error) -> i32 {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => libc::ENOSPC,
        Some(libc::EDQUOT) => libc::EDQUOT,
        Some(libc::EFBIG) => libc::EFBIG,
        _ => libc::EIO,
    }
}
