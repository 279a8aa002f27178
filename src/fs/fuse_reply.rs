//! What the FUSE adapter ([`super::fuse`]) converts: the core's attributes and errors into
//! fuser's replies, a request's caller and times into the core's, and a directory's listing into
//! the rows `readdir` and `readdirplus` send (`.`, `..`, then the entries, with how long the
//! kernel may keep their attributes). Also the decisions of the replies themselves: an open's
//! flags (`FOPEN_KEEP_CACHE`, `FOPEN_DIRECT_IO`, decided by `S3Fs::open`), the flags
//! `copy_file_range` accepts, and what `statfs` reports of a bucket that has no capacity.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{CopyFileRangeFlags, FopenFlags, ReplyStatfs, Request, TimeOrNow};
use fuser::{Errno, FileAttr, FileType, Generation, INodeNo, ReplyEmpty, ReplyEntry, ReplyXattr};

use super::attr::{Caller, FileAttrs};
use super::error::{FsError, FsResult};
use super::file::Opened;
use super::page_cache::PageSink;
use super::xattr::{self, XattrReply};
use super::S3Fs;
use crate::cache::inode::NodeKind;

/// Largest single read/write the kernel sends us (with FUSE_MAX_PAGES, which allows up to
/// 256 pages by default: `/proc/sys/fs/fuse/max_pages_limit`).
pub(super) const MAX_WRITE: u32 = 1024 * 1024;

/// The `st_blksize` every inode reports: the "preferred I/O size" that GNU `cp`, `cat`, `dd`
/// without `bs=`, and stdio buffers size their reads and writes by. One FUSE write's worth, so
/// a program that follows it sends one request per MiB instead of eight (coreutils uses 128 KiB
/// for a 4 KiB block size).
const IO_BLOCK: u32 = MAX_WRITE;

/// `statfs`: S3 has no capacity, so a large, constant amount is reported free (blocks of
/// [`STATFS_BLOCK`] bytes: 4 PiB), and as many inodes, so `df` and installers that check free
/// space don't refuse to write.
const STATFS_BLOCKS: u64 = 1 << 40;
/// `statfs`: free inodes reported (see [`STATFS_BLOCKS`]).
const STATFS_FILES: u64 = 1 << 32;
/// `statfs`: the block (and fragment) size the counts are in.
const STATFS_BLOCK: u32 = 4096;
/// `statfs`: the longest name reported, NAME_MAX as on local file systems.
const STATFS_NAME_MAX: u32 = 255;

/// The kernel's page cache of the mount's files, filled through the session's notifier
/// (`FUSE_NOTIFY_STORE`; see [`super::page_cache`]).
pub struct KernelPageSink(pub fuser::Notifier);

impl std::fmt::Debug for KernelPageSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelPageSink")
    }
}

impl PageSink for KernelPageSink {
    fn store(&self, ino: u64, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.store(INodeNo(ino), offset, data)
    }

    fn invalidate(&self, ino: u64, offset: u64, len: u64) -> std::io::Result<()> {
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.0
            .inval_inode(INodeNo(ino), to_i64(offset), to_i64(len))
    }
}

/// Every error of a call: logged by severity (ENOENT/ENODATA and other expected answers at
/// debug, EIO and the unexpected at warn), and answered with its errno.
pub(super) fn fail(op: &str, e: FsError) -> Errno {
    match e.errno {
        libc::ENOENT | libc::ENODATA | libc::EEXIST | libc::ENOTEMPTY | libc::ENOTSUP => {
            log::debug!("{op}: {e}")
        }
        _ => log::warn!("{op}: {e}"),
    }
    Errno::from_i32(e.errno)
}

/// Answer a call whose reply is empty: ok, or the error (logged by [`fail`]).
pub(super) fn answer_empty(reply: ReplyEmpty, op: &str, result: FsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(fail(op, e)),
    }
}

pub(super) fn to_fuser(a: &FileAttrs) -> FileAttr {
    let kind = match a.kind {
        NodeKind::Dir => FileType::Directory,
        NodeKind::File => FileType::RegularFile,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Socket => FileType::Socket,
        NodeKind::CharDevice { .. } => FileType::CharDevice,
        NodeKind::BlockDevice { .. } => FileType::BlockDevice,
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind,
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: IO_BLOCK,
        flags: 0,
    }
}

/// The user a request comes from (the core records it as the owner of what it creates when
/// other users are let in).
pub(super) fn caller(req: &Request) -> Option<Caller> {
    Some(Caller {
        uid: req.uid(),
        gid: req.gid(),
    })
}

/// Answer a call that made a new entry: the entry (counted as a kernel lookup), or the error.
pub(super) fn answer_entry(
    fs: &S3Fs,
    reply: ReplyEntry,
    ttl: &Duration,
    op: &str,
    r: FsResult<FileAttrs>,
) {
    match r {
        Ok(a) => {
            fs.note_lookup(a.ino);
            reply.entry(ttl, &to_fuser(&a), Generation(0))
        }
        Err(e) => reply.error(fail(op, e)),
    }
}

/// The time a `utimensat` asked for. fuser 0.18 reads a request's time before 1970 wrongly:
/// the kernel sends a timespec (whole seconds rounded down, then the nanoseconds after them:
/// `-2` and `500` for 1.9999995 s before 1970), and fuser subtracts both from the epoch
/// (2.0000005 s before it; its `system_time_from_time` has a TODO for it), so
/// `touch -d '1960-01-01 00:00:00.25'` showed 1959-12-31 23:59:59.75. Its mapping is one to
/// one, so the timespec is read back out of it and the nanoseconds are added instead.
/// `UTIME_NOW` is `now`, one reading of the clock for both times of a request, so that a
/// `touch` gives the atime and the mtime one time, as a disk does.
pub(super) fn time_of(t: TimeOrNow, now: SystemTime) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => match UNIX_EPOCH.duration_since(t) {
            Ok(before) if before.subsec_nanos() != 0 => {
                UNIX_EPOCH - Duration::from_secs(before.as_secs())
                    + Duration::from_nanos(before.subsec_nanos().into())
            }
            _ => t,
        },
        TimeOrNow::Now => now,
    }
}

/// The xattr size protocol ([`xattr::sized`]).
pub(super) fn xattr_reply(reply: ReplyXattr, size: u32, value: Vec<u8>) {
    match xattr::sized(value, size) {
        Ok(XattrReply::Size(n)) => reply.size(n),
        Ok(XattrReply::Data(d)) => reply.data(&d),
        // ERANGE: the caller asks again with a larger buffer, nothing to log.
        Err(e) => reply.error(Errno::from_i32(e.errno)),
    }
}

/// The flags of an open's reply: what `S3Fs::open` decided of the kernel's page cache (see
/// [`Opened`] for why).
pub(super) fn open_flags(o: &Opened) -> FopenFlags {
    let mut flags = FopenFlags::empty();
    if o.keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.direct_io {
        flags |= FopenFlags::FOPEN_DIRECT_IO;
    }
    flags
}

/// `copy_file_range` knows no flags: any is EINVAL.
pub(super) fn no_copy_flags(flags: CopyFileRangeFlags) -> FsResult<()> {
    if flags.is_empty() {
        Ok(())
    } else {
        Err(FsError::new(libc::EINVAL, "copy_file_range: unknown flags"))
    }
}

/// Answer `statfs` (see [`STATFS_BLOCKS`]).
pub(super) fn answer_statfs(reply: ReplyStatfs) {
    let (blocks, files) = (STATFS_BLOCKS, STATFS_FILES);
    reply.statfs(
        blocks,
        blocks,
        blocks,
        files,
        files,
        STATFS_BLOCK,
        STATFS_NAME_MAX,
        STATFS_BLOCK,
    )
}

/// One row of a directory as the kernel reads it.
#[derive(Debug)]
pub(super) struct DirRow {
    /// Its inode.
    pub ino: u64,
    /// The offset of the row after it (what the kernel asks for next).
    pub next: u64,
    /// Its name.
    pub name: String,
    /// Its attributes: `None` for `.` and `..`, looked up only by `readdirplus`.
    pub attrs: Option<FileAttrs>,
    /// An entry of the listing (not `.` or `..`): counted as a lookup when sent with attributes.
    pub entry: bool,
    /// Its metadata waits for its first lookup (`S3Fs::metadata_deferred`): the kernel is not
    /// to keep the attributes sent with it.
    pub deferred: bool,
}

/// The rows of directory `ino` (handle `fh`) from `offset` on. Offsets: 1 = `.`, 2 = `..`,
/// 3.. = the entries of the listing.
pub(super) fn dir_rows(fs: &S3Fs, ino: u64, fh: u64, offset: u64) -> FsResult<Vec<DirRow>> {
    let first = offset.saturating_sub(2) as usize;
    let entries = fs.readdir_entries(ino, fh, first, offset == 0)?;
    let mut rows = Vec::with_capacity(entries.len() + 2);
    let dots = [(ino, 1, "."), (fs.parent_of(ino), 2, "..")];
    for (dot_ino, next, name) in dots {
        if offset < next {
            rows.push(DirRow {
                ino: dot_ino,
                next,
                name: name.to_string(),
                attrs: None,
                entry: false,
                deferred: false,
            });
        }
    }
    let t = fs.table();
    rows.extend(entries.into_iter().enumerate().map(|(i, e)| DirRow {
        ino: e.ino,
        next: (first + i) as u64 + 3,
        deferred: fs.metadata_deferred(&t, e.ino),
        name: e.name,
        attrs: Some(e.attrs),
        entry: true,
    }));
    Ok(rows)
}

impl DirRow {
    /// The file type `readdir` sends: `.` and `..` (no attributes) are directories.
    pub(super) fn kind(&self) -> FileType {
        self.attrs
            .as_ref()
            .map_or(FileType::Directory, |a| to_fuser(a).kind)
    }
}

/// One row as `readdirplus` sends it: with its attributes, and how long the kernel may keep
/// them.
#[derive(Debug)]
pub(super) struct PlusRow {
    /// Its inode.
    pub ino: u64,
    /// The offset of the row after it.
    pub next: u64,
    /// Its name.
    pub name: String,
    /// Its attributes.
    pub attrs: FileAttrs,
    /// How long the kernel may keep them.
    pub ttl: Duration,
    /// An entry of the listing: counted as a lookup once sent.
    pub entry: bool,
}

/// The rows `readdirplus` sends of directory `ino` (handle `fh`) from `offset` on. Entries of
/// a listing are trusted as long as the listing is (see `listing`), or `ttl` if longer; an
/// entry whose metadata waits for its first lookup not at all. `.` or `..` whose attributes
/// are not known are left out.
pub(super) fn plus_rows(
    fs: &S3Fs,
    ino: u64,
    fh: u64,
    offset: u64,
    ttl: Duration,
) -> FsResult<Vec<PlusRow>> {
    let rows = dir_rows(fs, ino, fh, offset)?;
    let ttl = fs.listing_ttl(ino).max(ttl);
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let attrs = r.attrs.or_else(|| fs.attrs_of(r.ino).ok())?;
            Some(PlusRow {
                ino: r.ino,
                next: r.next,
                name: r.name,
                attrs,
                ttl: if r.deferred { Duration::ZERO } else { ttl },
                entry: r.entry,
            })
        })
        .collect())
}

/// The count a `copy_file_range` reply can hold ([`super::copy::MAX_COPY_REPLY`] at most).
pub(super) fn copied(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
