//! Attributes: what `stat` shows, and how mode/owner/times live in object metadata.
//!
//! S3 has no inode attributes, so they are kept as user metadata with the names s3fs and rclone
//! use, so a bucket written by either shows the same attributes here:
//! `x-amz-meta-mode` (st_mode, decimal as s3fs writes it; octal with a leading 0 as rclone
//! writes it), `x-amz-meta-uid`, `x-amz-meta-gid`, `x-amz-meta-mtime` (written `sec.nsec`; read
//! as s3fs `sec` or `sec.nsec`, rclone float seconds, or RFC 3339). Objects without them get the
//! mount's defaults and Last-Modified.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{FsError, FsResult};
use super::S3Fs;
use crate::cache::inode::{AttrUpdate, NodeAttr, NodeKind, ROOT_INO};
use crate::s3::Metadata;

/// File type bits.
pub const S_IFMT: u32 = 0o170000;
/// Symlink type.
pub const S_IFLNK: u32 = 0o120000;
/// Directory type.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file type.
pub const S_IFREG: u32 = 0o100000;

/// Attributes as reported to the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct FileAttrs {
    /// Inode.
    pub ino: u64,
    /// Kind.
    pub kind: NodeKind,
    /// Size.
    pub size: u64,
    /// Permission bits.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (also used for ctime/atime).
    pub mtime: SystemTime,
}

/// Parse `x-amz-meta-mode`: decimal (s3fs) or octal with a leading `0` (rclone).
pub fn parse_mode(v: &str) -> Option<u32> {
    let v = v.trim();
    if v.len() > 1 && v.starts_with('0') {
        u32::from_str_radix(&v[1..], 8).ok()
    } else {
        v.parse().ok()
    }
}

/// Parse `x-amz-meta-mtime` in any form the peers write.
pub fn parse_mtime(v: &str) -> Option<SystemTime> {
    let v = v.trim();
    if let Some((secs, frac)) = v.split_once('.') {
        let s: u64 = secs.parse().ok()?;
        let digits: String = frac.chars().take(9).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let nanos: u32 = format!("{digits:0<9}").parse().ok()?;
        return UNIX_EPOCH.checked_add(Duration::new(s, nanos));
    }
    if let Ok(s) = v.parse::<u64>() {
        return UNIX_EPOCH.checked_add(Duration::from_secs(s));
    }
    humantime::parse_rfc3339_weak(v).ok()
}

/// Format an mtime as `sec.nsec`.
pub fn format_mtime(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// What the metadata says of the attributes (what it leaves out, the node keeps).
pub fn metadata_attrs(meta: &Metadata) -> AttrUpdate {
    AttrUpdate {
        mode: meta.get("mode").and_then(parse_mode).map(|m| m & 0o7777),
        uid: meta.get("uid").and_then(|v| v.trim().parse().ok()),
        gid: meta.get("gid").and_then(|v| v.trim().parse().ok()),
        mtime: meta.get("mtime").and_then(parse_mtime),
    }
}

/// The kind the metadata's mode says (Symlink for S_IFLNK), if it has a mode.
pub fn metadata_kind(meta: &Metadata) -> Option<NodeKind> {
    let m = meta.get("mode").and_then(parse_mode)?;
    Some(match m & S_IFMT {
        S_IFLNK => NodeKind::Symlink,
        S_IFDIR => NodeKind::Dir,
        _ => NodeKind::File,
    })
}

/// A change to attributes, from `setattr`.
#[derive(Debug, Clone, Default)]
pub struct AttrChange {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New mtime.
    pub mtime: Option<SystemTime>,
}

impl AttrChange {
    /// True if metadata (not content) changes.
    pub fn touches_metadata(&self) -> bool {
        !self.attrs().is_empty()
    }

    /// The change of attributes kept in metadata (all but the size).
    pub fn attrs(&self) -> AttrUpdate {
        AttrUpdate {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
        }
    }

    /// Write the change into metadata; `type_bits` is the file type for the mode.
    pub fn apply_to(&self, meta: &mut Metadata, type_bits: u32, current_mode: u32) {
        if let Some(m) = self.mode {
            meta.insert("mode", ((m & 0o7777) | type_bits).to_string());
        } else if meta.get("mode").is_none() && self.touches_metadata() {
            meta.insert("mode", ((current_mode & 0o7777) | type_bits).to_string());
        }
        if let Some(u) = self.uid {
            meta.insert("uid", u.to_string());
        }
        if let Some(g) = self.gid {
            meta.insert("gid", g.to_string());
        }
        if let Some(t) = self.mtime {
            meta.insert("mtime", format_mtime(t));
        }
    }
}

impl S3Fs {
    pub(crate) fn attrs_of(&self, ino: u64) -> FsResult<FileAttrs> {
        let t = self.table();
        let n = t
            .get(ino)
            .ok_or_else(|| FsError::not_found(format!("inode {ino} is unknown")))?;
        Ok(self.to_attrs(ino, n.kind(), n.attr()))
    }

    pub(crate) fn to_attrs(&self, ino: u64, kind: NodeKind, a: &NodeAttr) -> FileAttrs {
        let default_mode = match kind {
            NodeKind::Dir => self.opts.dir_mode,
            NodeKind::Symlink => 0o777,
            NodeKind::File => self.opts.file_mode,
        };
        FileAttrs {
            ino,
            kind,
            size: a.size,
            perm: (a.mode.unwrap_or(default_mode) & 0o7777) as u16,
            uid: a.uid.unwrap_or(self.opts.uid),
            gid: a.gid.unwrap_or(self.opts.gid),
            mtime: a.mtime,
        }
    }

    /// `stat`: fresh attributes from the table, the open file, or a revalidation.
    pub fn getattr(&self, ino: u64) -> FsResult<FileAttrs> {
        if ino == ROOT_INO {
            return self.attrs_of(ino);
        }
        if let Some(a) = self.open_file_attrs(ino) {
            return Ok(a);
        }
        let (fresh, parent, name) = {
            let t = self.table();
            let n = t
                .get(ino)
                .ok_or_else(|| FsError::not_found(format!("inode {ino} is unknown")))?;
            (
                n.attr_fresh(std::time::Instant::now()),
                n.parent(),
                n.name().to_string(),
            )
        };
        if fresh || parent == 0 {
            return self.attrs_of(ino);
        }
        let a = self.revalidate(parent, &name)?;
        if a.ino != ino {
            // The name now points at something else (recreated behind our back): this inode
            // is stale.
            return Err(FsError::not_found(format!("{name}: replaced")));
        }
        Ok(a)
    }

    /// `chmod`, `chown`, `truncate`, `utimes`.
    pub fn setattr(&self, ino: u64, change: AttrChange) -> FsResult<FileAttrs> {
        self.check_writable()?;
        let kind = self.kind_of(ino)?;
        if let Some(size) = change.size {
            if kind != NodeKind::File {
                return Err(FsError::new(libc::EISDIR, "truncate of a directory"));
            }
            self.truncate(ino, size)?;
        }
        if change.touches_metadata() {
            if ino == ROOT_INO && self.key_of(ino)?.is_empty() {
                // The root of a whole-bucket mount is the bucket: no object to keep the change
                // in. Keep it for this mount only, so `cp -a`/`rsync -a` onto the root work.
                self.table().apply_attrs(ino, &change.attrs());
                return self.getattr(ino);
            }
            let type_bits = match kind {
                NodeKind::Dir => S_IFDIR,
                NodeKind::Symlink => S_IFLNK,
                NodeKind::File => S_IFREG,
            };
            let edit = |meta: &mut Metadata, cur_mode| {
                change.apply_to(meta, type_bits, cur_mode);
                Ok(())
            };
            self.update_metadata(ino, edit, &change.attrs())?;
        }
        self.getattr(ino)
    }

    pub(crate) fn open_file_attrs(&self, ino: u64) -> Option<FileAttrs> {
        let f = self.open_files.get(ino)?;
        let of = f.lock();
        let size = of.local_size()?;
        drop(of);
        let mut a = self.attrs_of(ino).ok()?;
        a.size = size;
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_in_both_peer_forms() {
        assert_eq!(parse_mode("33188"), Some(0o100644));
        assert_eq!(parse_mode("0100644"), Some(0o100644));
        assert_eq!(parse_mode("41471"), Some(0o120777));
        assert_eq!(parse_mode("x"), None);
    }

    #[test]
    fn mtimes_in_every_peer_form() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 0);
        assert_eq!(parse_mtime("1700000000"), Some(t));
        assert_eq!(
            parse_mtime("1700000000.5"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(
            parse_mtime("1700000000.123456789"),
            Some(t + Duration::from_nanos(123_456_789))
        );
        assert_eq!(parse_mtime("2023-11-14T22:13:20Z"), Some(t));
        assert_eq!(parse_mtime("garbage"), None);
        assert_eq!(parse_mtime("1.x"), None);
        let s = format_mtime(t + Duration::from_nanos(5));
        assert_eq!(s, "1700000000.000000005");
        assert_eq!(parse_mtime(&s), Some(t + Duration::from_nanos(5)));
    }

    #[test]
    fn metadata_sets_kind_and_owner() {
        let mut a = NodeAttr::dir();
        let m: Metadata = [("mode", "41471"), ("uid", "12"), ("gid", "34")]
            .into_iter()
            .collect();
        assert_eq!(metadata_kind(&m), Some(NodeKind::Symlink));
        a.apply(&metadata_attrs(&m));
        assert_eq!((a.mode, a.uid, a.gid), (Some(0o777), Some(12), Some(34)));
        assert_eq!(a.mtime, NodeAttr::dir().mtime, "no mtime: kept");
    }

    #[test]
    fn fuzz_metadata_from_the_server_never_panics() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let count = std::cell::Cell::new(0u64);
        let value = prop_oneof![
            any::<String>(),
            "[-+0-9.eE ]{0,30}",
            "0[0-7]{0,12}",
            "[0-9]{1,25}\\.[0-9]{0,20}",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?Z?",
        ];
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(
                &(value.clone(), value.clone(), value),
                |(mode, id, mtime)| {
                    count.set(count.get() + 1);
                    let m: Metadata = [
                        ("mode", mode.as_str()),
                        ("uid", id.as_str()),
                        ("gid", id.as_str()),
                        ("mtime", mtime.as_str()),
                    ]
                    .into_iter()
                    .collect();
                    let mut a = NodeAttr::dir();
                    let _ = metadata_kind(&m);
                    a.apply(&metadata_attrs(&m));
                    prop_assert!(a.mode.is_none_or(|m| m <= 0o7777));
                    if let Some(t) = parse_mtime(&mtime) {
                        // What we write back reads the same.
                        if t >= UNIX_EPOCH {
                            prop_assert_eq!(parse_mtime(&format_mtime(t)), Some(t));
                        }
                    }
                    Ok(())
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("mode/uid/gid/mtime metadata: {} inputs fuzzed", count.get());
    }
}
