//! Mounting, so that the mount shows as type `fuse.s3mount` (in `/proc/mounts`, `findmnt`,
//! `df -T`), and unmounting it again.
//!
//! fuser 0.18 mounts in two ways: a user without the right to mount goes through
//! `fusermount3`, which turns the `subtype=s3mount` option into the type `fuse.s3mount`; but
//! root calls mount(2) itself with the type `fuse`, and the subtype is lost. Tools and test
//! suites tell what they are on by that type. So for root (or anyone mount(2) lets through)
//! s3mount makes the mount(2) call itself, with the type `fuse.s3mount` (the kernel reads the
//! part after the dot as the subtype), and hands the `/dev/fuse` descriptor to
//! `fuser::Session::from_fd`; mount(2) refused with EPERM, it leaves the mount to fuser and
//! fusermount3 as before. The unmount then has to be ours too ([`Unmounter`]).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fuser::{MountOption, Session, SessionUnmounter};
use s3mount::fs::fuse::FuseAdapter;

/// The file system type, as mount(2) takes it and `/proc/mounts` shows it.
const FS_TYPE: &CStr = c"fuse.s3mount";

/// Takes a mount made by [`mount`] down.
pub enum Unmounter {
    /// Mounted by fuser (through fusermount3).
    Fuser(SessionUnmounter),
    /// Mounted by our own mount(2).
    Direct(PathBuf),
}

impl Unmounter {
    /// Unmount; EBUSY when files are open there (the caller may then detach it with
    /// [`lazy_unmount`]).
    pub fn unmount(&mut self) -> io::Result<()> {
        match self {
            Unmounter::Fuser(u) => u.unmount(),
            Unmounter::Direct(mp) => umount2(mp, 0),
        }
    }
}

/// Mount `adapter` at `mountpoint` with `config`'s options (see the module note for how).
pub fn mount(
    adapter: FuseAdapter,
    mountpoint: &Path,
    config: &fuser::Config,
) -> io::Result<(Session<FuseAdapter>, Unmounter)> {
    let mp = mountpoint.canonicalize()?;
    if let Some(fd) = mount_directly(&mp, config)? {
        let session = Session::from_fd(adapter, fd, config.acl, config.clone());
        return match session {
            Ok(s) => Ok((s, Unmounter::Direct(mp))),
            Err(e) => {
                // The handshake failed: take down the mount that serves nobody.
                let _ = umount2(&mp, libc::MNT_DETACH);
                Err(e)
            }
        };
    }
    let mut session = Session::new(adapter, &mp, config)?;
    let unmounter = Unmounter::Fuser(session.unmount_callable());
    Ok((session, unmounter))
}

/// mount(2) with the type `fuse.s3mount`: the `/dev/fuse` descriptor it serves, or `None`
/// when mount(2) is not allowed (EPERM: fusermount3's turn) or the options are ones this
/// path does not know (fuser's turn).
fn mount_directly(mountpoint: &Path, config: &fuser::Config) -> io::Result<Option<OwnedFd>> {
    let mut source = "s3mount".to_string();
    let mut flags: libc::c_ulong = 0;
    let mut extra = String::new();
    for option in &config.mount_options {
        match option {
            MountOption::FSName(name) => source = name.clone(),
            MountOption::Subtype(sub) if sub == "s3mount" => {}
            MountOption::NoDev => flags |= libc::MS_NODEV,
            MountOption::NoSuid => flags |= libc::MS_NOSUID,
            MountOption::NoAtime => flags |= libc::MS_NOATIME,
            MountOption::NoExec => flags |= libc::MS_NOEXEC,
            MountOption::RO => flags |= libc::MS_RDONLY,
            MountOption::DefaultPermissions => extra.push_str(",default_permissions"),
            _ => return Ok(None),
        }
    }
    // The kernel knows only allow_other; fuser lets root alone in for RootAndOwner.
    if config.acl != fuser::SessionACL::Owner {
        extra.push_str(",allow_other");
    }
    let root_mode = std::fs::metadata(mountpoint)?.permissions().mode();
    let target = path_cstring(mountpoint)?;
    let source = CString::new(source).map_err(io::Error::other)?;
    // SAFETY: a constant NUL-terminated path; the descriptor is owned right below.
    let raw = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        let err = io::Error::last_os_error();
        if matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
            return Ok(None); // fusermount3 (setuid root) may open it for us
        }
        return Err(err);
    }
    // SAFETY: raw is a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let data = CString::new(format!(
        "fd={raw},rootmode={:o},user_id={uid},group_id={gid}{extra}",
        root_mode & libc::S_IFMT
    ))
    .map_err(io::Error::other)?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            FS_TYPE.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        return Ok(Some(fd));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EPERM) {
        log::debug!("mount(2) not allowed here; mounting through fusermount3");
        return Ok(None);
    }
    Err(err)
}

/// `mount -o remount,ro|rw DIR` (mount(8) runs the helper for a remount too): mount(2) with
/// `MS_REMOUNT` on the s3mount mounted at DIR, which sets the kernel's read-only flag (writes
/// then fail with EROFS before they reach s3mount; `rw` lets them through again, unless
/// s3mount itself was started read-only). The flags a remount does not name are kept as they
/// are (mount(2) would clear them): `nodev,nosuid,noatime`, and `noexec` if set.
pub fn remount(mountpoint: &Path, read_only: Option<bool>, noexec: bool) -> Result<(), String> {
    let at = mountpoint.display();
    let ours = s3mount::fs::mountinfo::fuse_mounts()
        .into_iter()
        .rev()
        .find(|m| Some(&m.mountpoint) == std::fs::canonicalize(mountpoint).ok().as_ref());
    if ours.is_none_or(|m| m.fstype != FS_TYPE.to_string_lossy()) {
        return Err(format!("-o remount: no s3mount is mounted at {at}"));
    }
    let target = path_cstring(mountpoint).map_err(|e| e.to_string())?;
    // SAFETY: a zeroed statvfs is a valid out-parameter, filled by the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: target is a valid NUL-terminated path and st a valid statvfs.
    if unsafe { libc::statvfs(target.as_ptr(), &mut st) } != 0 {
        return Err(format!("{at}: {}", io::Error::last_os_error()));
    }
    let mut flags = libc::MS_REMOUNT | libc::MS_NODEV | libc::MS_NOSUID | libc::MS_NOATIME;
    if read_only.unwrap_or(st.f_flag & libc::ST_RDONLY != 0) {
        flags |= libc::MS_RDONLY;
    }
    if noexec || st.f_flag & libc::ST_NOEXEC != 0 {
        flags |= libc::MS_NOEXEC;
    }
    // SAFETY: target is a valid NUL-terminated path; a remount takes no source, type or data.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!("-o remount {at}: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// `umount -l`: detach the mount now; it goes once nothing uses it. As root directly,
/// otherwise through `fusermount3 -u -z`.
pub fn lazy_unmount(mountpoint: &Path) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return umount2(mountpoint, libc::MNT_DETACH).map_err(|e| e.to_string());
    }
    let st = std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mountpoint)
        .status()
        .map_err(|e| format!("fusermount3: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("fusermount3 -u -z: {st}"))
    }
}

fn umount2(mountpoint: &Path, flags: libc::c_int) -> io::Result<()> {
    let c = path_cstring(mountpoint)?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn path_cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(io::Error::other)
}
