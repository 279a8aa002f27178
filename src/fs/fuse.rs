//! The thin `fuser::Filesystem` adapter: converts arguments, calls [`S3Fs`], converts replies.
//!
//! Every error goes through `fuse_reply::fail`, which logs by severity (ENOENT/ENODATA at
//! debug, EIO and the unexpected at warn) and answers the errno; the conversions of arguments
//! and replies, the rows of a directory, and what a reply decides (an open's flags, how long
//! the kernel keeps a row's attributes, `statfs`'s figures) are in `fuse_reply.rs`. The
//! operations the mount does not support answer their errno at once through [`UnsupportedLog`]
//! (see [`super::unsupported`]), with no warning. No semantics live here.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime};

use fuser::{
    CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, OpenFlags, PollEvents, PollFlags, PollNotifier,
    RenameFlags, ReplyAttr, ReplyBmap, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::acl::CreateMode;
use super::attr::AttrChange;
use super::fuse_reply::{
    answer_empty, answer_entry, answer_statfs, caller, copied, dir_rows, fail, no_copy_flags,
    open_flags, plus_rows, time_of, to_fuser, xattr_reply, MAX_WRITE,
};
use super::unsupported::{Unsupported, UnsupportedLog};
use super::{mountinfo, S3Fs};

/// Kernel read-ahead: large enough to keep sequential reads streaming, and each FUSE read as
/// large as `MAX_WRITE`. The kernel caps what FUSE_INIT may ask for at its backing device's
/// default (128 KiB: reads then come 128 KiB at a time, eight times the requests), so once
/// mounted it is raised through sysfs ([`mountinfo::set_read_ahead`]). Measured on a 1 GiB
/// cold read (bench/read-cost.sh, 2026-11-27): 1 MiB gave 1260–1384 MiB/s against 977–1371
/// at 128 KiB; 4 MiB, with more reads in flight at once, no better (1067–1296).
pub const READ_AHEAD: u32 = 1024 * 1024;

/// The adapter; clone-free, shares the core.
#[derive(Debug)]
pub struct FuseAdapter {
    fs: Arc<S3Fs>,
    read_ahead_set: Once,
    unsupported: UnsupportedLog,
}

impl FuseAdapter {
    /// Wrap a core.
    pub fn new(fs: Arc<S3Fs>) -> Self {
        FuseAdapter {
            fs,
            read_ahead_set: Once::new(),
            unsupported: UnsupportedLog::default(),
        }
    }

    /// The errno of an operation the mount does not support (logged once, at debug).
    fn unsupported(&self, op: Unsupported) -> Errno {
        Errno::from_i32(self.unsupported.answer(op))
    }

    /// At the first request (after FUSE_INIT, whose reply would set it back): raise the
    /// kernel's read-ahead for the mount point of the options to [`READ_AHEAD`] (root only;
    /// otherwise it stays at the kernel's default, which costs speed, not correctness).
    fn set_read_ahead(&self) {
        self.read_ahead_set.call_once(|| {
            if let Some(path) = &self.fs.options().mount_point {
                mountinfo::raise_read_ahead(path, READ_AHEAD / 1024);
            }
        });
    }

    fn ttl(&self) -> Duration {
        self.fs.options().metadata_ttl
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        // `open(O_TRUNC)` arrives as one OPEN with the flag, not as a SETATTR(size 0) first:
        // a truncation on its own would be uploaded at once, replacing an existing object with
        // an empty one while the program has not written anything yet.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        // POSIX ACLs (see `acl`): the kernel caches and enforces them (and turns
        // `default_permissions` on), and leaves the umask to create/mkdir/mknod, which apply
        // the directory's default ACL instead where there is one.
        if self.fs.acls_on() {
            let acl = InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK;
            if let Err(missing) = config.add_capabilities(acl) {
                log::warn!(
                    "the kernel offers no {missing:?}: POSIX ACLs are kept but not enforced"
                );
            }
        }
        let _ = config.set_max_write(MAX_WRITE);
        // Refused above the kernel's offer (128 KiB): raised later (`set_read_ahead`).
        let _ = config.set_max_readahead(READ_AHEAD);
        Ok(())
    }

    fn destroy(&mut self) {
        self.fs.flush_all();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.set_read_ahead();
        match self.fs.lookup(parent.0, name) {
            Ok(a) => {
                self.fs.note_lookup(a.ino);
                reply.entry(&self.ttl(), &to_fuser(&a), Generation(0))
            }
            Err(e) => reply.error(fail("lookup", e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.set_read_ahead();
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&self.ttl(), &to_fuser(&a)),
            Err(e) => reply.error(fail("getattr", e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let now = SystemTime::now();
        let change = AttrChange {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(|t| time_of(t, now)),
            atime: atime.map(|t| time_of(t, now)),
            now: Some(now),
        };
        match self.fs.setattr(ino.0, change) {
            Ok(a) => reply.attr(&self.ttl(), &to_fuser(&a)),
            Err(e) => reply.error(fail("setattr", e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(fail("readlink", e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = self.fs.mknod(
            parent.0,
            name,
            CreateMode { mode, umask },
            rdev,
            caller(req),
        );
        answer_entry(&self.fs, reply, &self.ttl(), "mknod", r)
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self
            .fs
            .mkdir(parent.0, name, CreateMode { mode, umask }, caller(req));
        answer_entry(&self.fs, reply, &self.ttl(), "mkdir", r)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer_empty(reply, "unlink", self.fs.unlink(parent.0, name))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer_empty(reply, "rmdir", self.fs.rmdir(parent.0, name))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self.fs.symlink(parent.0, link_name, target, caller(req));
        answer_entry(&self.fs, reply, &self.ttl(), "symlink", r)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        answer_empty(
            reply,
            "rename",
            self.fs
                .rename(parent.0, name, newparent.0, newname, flags.bits()),
        )
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(self.unsupported(Unsupported::Link))
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.open(ino.0, flags.0) {
            Ok(o) => reply.opened(FileHandle(o.fh), open_flags(&o)),
            Err(e) => reply.error(fail("open", e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(fail("read", e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let append = flags.0 & libc::O_APPEND != 0;
        match self.fs.write(fh.0, offset, data, append) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(fail("write", e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        answer_empty(reply, "flush", self.fs.flush(fh.0))
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        answer_empty(reply, "release", self.fs.release(fh.0))
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        answer_empty(reply, "fsync", self.fs.fsync(fh.0))
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(fail("opendir", e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let rows = match dir_rows(&self.fs, ino.0, fh.0, offset) {
            Ok(r) => r,
            Err(e) => return reply.error(fail("readdir", e)),
        };
        for r in rows {
            if reply.add(INodeNo(r.ino), r.next, r.kind(), &r.name) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let rows = match plus_rows(&self.fs, ino.0, fh.0, offset, self.ttl()) {
            Ok(r) => r,
            Err(e) => return reply.error(fail("readdirplus", e)),
        };
        for r in rows {
            let attr = to_fuser(&r.attrs);
            if reply.add(
                INodeNo(r.ino),
                r.next,
                &r.name,
                &r.ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
            if r.entry {
                // Every entry sent with attributes counts as a kernel lookup.
                self.fs.note_lookup(r.ino);
            }
        }
        reply.ok()
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        answer_statfs(reply)
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        answer_empty(
            reply,
            "setxattr",
            self.fs.setxattr(ino.0, name, value, flags),
        )
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.getxattr(ino.0, name) {
            Ok(v) => xattr_reply(reply, size, v),
            Err(e) => reply.error(fail("getxattr", e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.listxattr(ino.0) {
            Ok(v) => xattr_reply(reply, size, v),
            Err(e) => reply.error(fail("listxattr", e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer_empty(reply, "removexattr", self.fs.removexattr(ino.0, name))
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok()
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.fs.create(
            parent.0,
            name,
            CreateMode { mode, umask },
            flags,
            caller(req),
        ) {
            Ok((a, fh)) => {
                self.fs.note_lookup(a.ino);
                reply.created(
                    &self.ttl(),
                    &to_fuser(&a),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            }
            Err(e) => reply.error(fail("create", e)),
        }
    }

    /// A whole object copied into an empty file of the mount is copied on the server (see
    /// `super::copy`); anything else is EOPNOTSUPP, and the kernel copies through read and
    /// write.
    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let result = no_copy_flags(flags).and_then(|()| {
            self.fs
                .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
        });
        // EOPNOTSUPP (the kernel copies through read and write) is logged at debug by `fail`.
        match result {
            Ok(n) => reply.written(copied(n)),
            Err(e) => reply.error(fail("copy_file_range", e)),
        }
    }

    /// `fallocate`: see `super::allocate` (other modes EOPNOTSUPP, per call).
    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self.fs.fallocate(fh.0, offset, length, mode);
        answer_empty(reply, "fallocate", result)
    }

    // The operations below are not supported: each answers its errno at once, with no warning
    // (fuser's defaults log a WARN for every call). Why each errno: `super::unsupported`.

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(self.unsupported(Unsupported::Ioctl))
    }

    fn lseek(&self, _: &Request, _: INodeNo, _: FileHandle, _: i64, _: i32, reply: ReplyLseek) {
        reply.error(self.unsupported(Unsupported::Lseek))
    }

    fn poll(
        &self,
        _: &Request,
        _: INodeNo,
        _: FileHandle,
        _: PollNotifier,
        _: PollEvents,
        _: PollFlags,
        reply: ReplyPoll,
    ) {
        reply.error(self.unsupported(Unsupported::Poll))
    }

    fn getlk(
        &self,
        _: &Request,
        _: INodeNo,
        _: FileHandle,
        _: LockOwner,
        _: u64,
        _: u64,
        _: i32,
        _: u32,
        reply: ReplyLock,
    ) {
        reply.error(self.unsupported(Unsupported::Getlk))
    }

    fn setlk(
        &self,
        _: &Request,
        _: INodeNo,
        _: FileHandle,
        _: LockOwner,
        _: u64,
        _: u64,
        _: i32,
        _: u32,
        _: bool,
        reply: ReplyEmpty,
    ) {
        reply.error(self.unsupported(Unsupported::Setlk))
    }

    fn bmap(&self, _: &Request, _: INodeNo, _: u32, _: u64, reply: ReplyBmap) {
        reply.error(self.unsupported(Unsupported::Bmap))
    }
}
