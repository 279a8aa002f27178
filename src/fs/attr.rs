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
use crate::cache::inode::{AttrUpdate, NodeAttr, NodeKind, ObjectMeta, ROOT_INO};
use crate::s3::{CopyRequest, Metadata, ReplaceMetadata};

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

/// Metadata self-copies tried when the object keeps changing on the server meanwhile.
pub const METADATA_UPDATE_ATTEMPTS: u32 = 4;

/// How one metadata self-copy ended, when not well.
enum Retry {
    /// The object changed since its metadata was read (412): read it again and retry.
    Changed(String),
    /// Any other error: give up.
    Fail(FsError),
}

impl From<FsError> for Retry {
    fn from(e: FsError) -> Retry {
        Retry::Fail(e)
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
            // An open file folds the change into its pending upload.
            if self.fold_into_open_file(ino, &change)? {
                return self.getattr(ino);
            }
            if ino == ROOT_INO && self.key_of(ino)?.is_empty() {
                // The root of a whole-bucket mount is the bucket: no object to keep the change
                // in. Keep it for this mount only, so `cp -a`/`rsync -a` onto the root work.
                self.table().apply_attrs(ino, &change.attrs());
                return self.getattr(ino);
            }
            self.change_metadata(ino, |meta, cur_mode| {
                let type_bits = match kind {
                    NodeKind::Dir => S_IFDIR,
                    NodeKind::Symlink => S_IFLNK,
                    NodeKind::File => S_IFREG,
                };
                change.apply_to(meta, type_bits, cur_mode);
                Ok(())
            })?;
        }
        self.getattr(ino)
    }

    /// HEAD metadata of an inode, from the table if fresh.
    pub(crate) fn object_meta(&self, ino: u64) -> FsResult<ObjectMeta> {
        let now = std::time::Instant::now();
        if let Some(m) = self
            .table()
            .get(ino)
            .and_then(|n| n.fresh_meta(now).cloned())
        {
            return Ok(m);
        }
        let key = self.key_of(ino)?;
        let kind = self.kind_of(ino)?;
        let info = match self.storage.head_object(&self.obj(&key)) {
            Ok(i) => i,
            Err(e) if e.is_not_found() && kind == NodeKind::Dir => {
                // An implicit directory: no marker, no metadata.
                return Ok(ObjectMeta::default());
            }
            Err(e) => return Err(e.into()),
        };
        let meta = ObjectMeta::from(&info);
        let mut t = self.table();
        if kind == NodeKind::Dir {
            t.set_marker(ino, true);
        } else {
            t.set_version(ino, info.size, info.etag.clone(), info.last_modified);
        }
        let attrs = metadata_attrs(&info.metadata);
        t.record_meta(ino, meta.clone(), &attrs, now + self.opts.metadata_ttl);
        Ok(meta)
    }

    /// Change an object's metadata in place: a self-copy with REPLACE that re-sends the content
    /// headers, guarded by the ETag. A directory without a marker gets one.
    ///
    /// The copy carries `x-amz-copy-source-if-match` with the ETag the edit was based on: if
    /// another client replaced the object meanwhile, S3 refuses (412) instead of copying, so the
    /// new content is never rolled back and its metadata never overwritten by a stale set.
    /// Then the metadata is read again (HEAD) and the edit applied to the new object, up to
    /// [`METADATA_UPDATE_ATTEMPTS`] times, after which the call fails with EIO and nothing was
    /// changed.
    pub(crate) fn change_metadata(
        &self,
        ino: u64,
        edit: impl Fn(&mut Metadata, u32) -> FsResult<()>,
    ) -> FsResult<()> {
        let mut attempt = 1;
        loop {
            match self.change_metadata_once(ino, &edit) {
                Err(Retry::Changed(key)) if attempt < METADATA_UPDATE_ATTEMPTS => {
                    log::info!("{key}: changed on the server during a metadata update; again");
                    attempt += 1;
                    // Forget what we knew: the next round HEADs the object again.
                    self.table().expire(ino);
                }
                Err(Retry::Changed(key)) => {
                    return Err(FsError::new(
                        libc::EIO,
                        format!("{key}: changed on the server during {attempt} metadata updates in a row; nothing was changed"),
                    ))
                }
                Err(Retry::Fail(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
    }

    fn change_metadata_once(
        &self,
        ino: u64,
        edit: &impl Fn(&mut Metadata, u32) -> FsResult<()>,
    ) -> Result<(), Retry> {
        let key = self.key_of(ino)?;
        if key.is_empty() {
            // Else the HEAD and PUT below would go to the bucket itself (a PUT is CreateBucket).
            return Err(FsError::new(
                libc::ENOTSUP,
                "the root of a whole-bucket mount has no object to hold metadata",
            )
            .into());
        }
        let kind = self.kind_of(ino)?;
        let current = self.object_meta(ino)?;
        let cur_mode = self.attrs_of(ino)?.perm as u32;
        let mut metadata = current.metadata.clone();
        edit(&mut metadata, cur_mode)?;
        if metadata.encoded_size() > crate::s3::meta::MAX_USER_METADATA_BYTES {
            return Err(
                FsError::new(libc::E2BIG, format!("{key}: user metadata over 2 KB")).into(),
            );
        }
        let obj = self.obj(&key);
        let new_etag = if kind == NodeKind::Dir && current.etag.is_none() {
            self.storage
                .put_object(
                    &obj,
                    crate::s3::RequestBody::Empty,
                    &crate::s3::PutOptions {
                        metadata: metadata.clone(),
                        ..Default::default()
                    },
                )
                .map_err(FsError::from)?
        } else {
            let size = self.table().get(ino).map(|n| n.attr().size);
            self.storage
                .copy_object(&CopyRequest {
                    src: obj.clone(),
                    dst: obj,
                    replace: Some(ReplaceMetadata {
                        metadata: metadata.clone(),
                        content_headers: current.content_headers.clone(),
                    }),
                    if_match: current.etag.clone(),
                    size: if kind == NodeKind::Dir { Some(0) } else { size },
                })
                .map_err(|e| {
                    if e.is_precondition_failed() {
                        Retry::Changed(key.clone())
                    } else {
                        Retry::Fail(e.into())
                    }
                })?
                .etag
        };
        if kind == NodeKind::File {
            self.follow_self_copy(ino, current.etag.as_deref(), new_etag.clone());
        }
        let attrs = metadata_attrs(&metadata);
        let meta = ObjectMeta {
            metadata,
            content_headers: current.content_headers,
            etag: new_etag.clone(),
        };
        let mut t = self.table();
        t.record_meta(ino, meta, &attrs, self.expiry());
        if kind == NodeKind::Dir {
            t.set_marker(ino, true);
        } else if new_etag.is_some() {
            t.follow_etag(ino, new_etag);
        }
        Ok(())
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
