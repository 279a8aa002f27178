//! Which FUSE file system is mounted where, from `/proc/self/mountinfo`.
//!
//! Used before mounting (a busy mount point is refused with a clear message rather than
//! stacked on), once mounted to find the mount's backing device (its read-ahead), by
//! `s3mount status` to find the running mounts, and by the tests to wait for a mount to appear
//! or go.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One FUSE file system mounted on this machine (as this process's mount namespace sees it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuseMount {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// `fuse`, `fuseblk` or `fuse.SUBTYPE` (`fuse.s3mount` for ours).
    pub fstype: String,
    /// The source: for ours the bucket as given (`photos`, `photos:pre/`), else `s3mount:BUCKET`.
    pub source: String,
    /// The `user_id=` of its super options: the user who mounted it.
    pub user_id: Option<u32>,
    /// Its device number (`major:minor`): the name of its backing device under
    /// `/sys/class/bdi/`.
    pub device: String,
}

/// Every FUSE file system mounted, oldest first.
pub fn fuse_mounts() -> Vec<FuseMount> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<FuseMount> {
    let (left, right) = line.split_once(" - ")?;
    let mut fields = right.split(' ');
    let fstype = fields.next()?;
    let source = fields.next().unwrap_or("");
    let super_options = fields.next().unwrap_or("");
    let is_fuse = fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.");
    if !is_fuse {
        return None;
    }
    // "ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [TAGS] - FSTYPE SOURCE SUPER-OPTIONS"
    let mut left = left.split(' ');
    let device = left.nth(2)?;
    let at = unescape_mountinfo(left.nth(1)?);
    Some(FuseMount {
        mountpoint: PathBuf::from(OsString::from_vec(at)),
        fstype: fstype.to_string(),
        source: source.to_string(),
        user_id: super_options
            .split(',')
            .find_map(|o| o.strip_prefix("user_id=")?.parse().ok()),
        device: device.to_string(),
    })
}

/// The source (for ours the bucket as given, or `s3mount:BUCKET`) of the FUSE file system
/// mounted at `path`, if one is.
pub fn fuse_mounted_at(path: &Path) -> Option<String> {
    fuse_mount(path).map(|m| m.source)
}

/// The device number (`major:minor`) of the FUSE file system mounted at `path`, if one is: the
/// name of its backing device under `/sys/class/bdi/`.
pub fn fuse_device_at(path: &Path) -> Option<String> {
    fuse_mount(path).map(|m| m.device)
}

/// The last FUSE mount at `path`.
fn fuse_mount(path: &Path) -> Option<FuseMount> {
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    fuse_mounts()
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == want)
}

/// [`set_read_ahead`], its outcome logged (at debug: a read-ahead left at the kernel's default
/// costs speed, not correctness).
pub fn raise_read_ahead(path: &Path, kib: u32) {
    match set_read_ahead(path, kib) {
        Ok(()) => log::debug!("kernel read-ahead set to {kib} KiB"),
        Err(e) => log::debug!("kernel read-ahead left at its default: {e}"),
    }
}

/// Set the kernel's read-ahead for the FUSE file system mounted at `path` to `kib` KiB (its
/// backing device's `read_ahead_kb`; needs root). Files opened afterwards use it.
pub fn set_read_ahead(path: &Path, kib: u32) -> std::io::Result<()> {
    let device = fuse_device_at(path).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "mount not in /proc/self/mountinfo",
        )
    })?;
    std::fs::write(
        format!("/sys/class/bdi/{device}/read_ahead_kb"),
        kib.to_string(),
    )
}

/// True if a FUSE file system is mounted at `path`.
pub fn is_fuse_mount(path: &Path) -> bool {
    fuse_mounted_at(path).is_some()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), b"/mnt/a b".to_vec());
        assert_eq!(unescape_mountinfo("/x\\"), b"/x\\".to_vec());
        assert!(!is_fuse_mount(Path::new("/")));
    }

    #[test]
    fn lines_of_fuse_mounts_are_read() {
        let line = "812 29 0:93 / /tmp/a\\040b rw,nosuid,nodev,noatime shared:440 - fuse.s3mount s3mount:photos rw,user_id=1000,group_id=1000";
        assert_eq!(
            parse_line(line),
            Some(FuseMount {
                mountpoint: PathBuf::from("/tmp/a b"),
                fstype: "fuse.s3mount".into(),
                source: "s3mount:photos".into(),
                user_id: Some(1000),
                device: "0:93".into(),
            })
        );
        assert_eq!(
            parse_line("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw"),
            None
        );
    }
}
