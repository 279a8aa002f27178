//! Which FUSE file system is mounted where, from `/proc/self/mountinfo`.
//!
//! Used before mounting (a busy mount point is refused with a clear message rather than
//! stacked on), once mounted to find the mount's backing device (its read-ahead), and by the
//! tests to wait for a mount to appear or go.

use std::path::Path;

/// The source (`s3mount:BUCKET`) of the FUSE file system mounted at `path`, if one is.
pub fn fuse_mounted_at(path: &Path) -> Option<String> {
    fuse_mount(path).map(|m| m.source)
}

/// The device number (`major:minor`) of the FUSE file system mounted at `path`, if one is: the
/// name of its backing device under `/sys/class/bdi/`.
pub fn fuse_device_at(path: &Path) -> Option<String> {
    fuse_mount(path).map(|m| m.device)
}

/// What mountinfo says of one mount.
struct MountLine {
    device: String,
    source: String,
}

/// The last FUSE mount at `path` in `/proc/self/mountinfo`.
fn fuse_mount(path: &Path) -> Option<MountLine> {
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let want = want.as_os_str().as_encoded_bytes();
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|line| {
        // "ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [TAGS] - FSTYPE SOURCE SUPER-OPTIONS"
        let (left, right) = line.split_once(" - ")?;
        let mut fields = right.split(' ');
        let fstype = fields.next()?;
        let source = fields.next().unwrap_or("");
        let is_fuse = fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.");
        let mut fields = left.split(' ');
        let device = fields.nth(2)?;
        let at = unescape_mountinfo(fields.nth(1)?);
        (is_fuse && at == want).then(|| MountLine {
            device: device.to_string(),
            source: source.to_string(),
        })
    })
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
}
