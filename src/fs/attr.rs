//! Attributes: what `stat` shows, and how mode/owner/times live in object metadata.
//!
//! S3 has no inode attributes, so they are kept as user metadata with the names s3fs and rclone
//! use, so a bucket written by either shows the same attributes here:
//! `x-amz-meta-mode` (st_mode, written decimal as s3fs writes it; read too in octal, with or
//! without a leading 0, as rclone's `--metadata` writes it), `x-amz-meta-uid`, `x-amz-meta-gid`,
//! `x-amz-meta-mtime` (written `sec.nsec`; read as s3fs `sec` or `sec.nsec`, rclone float
//! seconds, or RFC 3339 with an offset, rclone's atime), and as s3fs writes them
//! `x-amz-meta-atime`, `x-amz-meta-ctime` (the same forms) and `x-amz-meta-rdev` (a device's
//! number, decimal). Objects without them get the mount's defaults and Last-Modified.
//!
//! Times as on a disk (see "Times" in [`crate::cache::inode`]): every write the mount makes to
//! an object — an upload, a metadata self-copy, a rename's copy — carries `x-amz-meta-ctime`
//! (the time of the change) and keeps the mtime the file shows (written where the object had
//! none, so the copy's new Last-Modified does not move it); no request is ever sent for a time
//! alone but an explicit `utimes`. The atime is kept in memory (relatime) and written only when
//! set explicitly.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::acl::{chmod_kept, CreateMode, Inherited};
use super::error::{FsError, FsResult};
use super::xattr::keep;
use super::xattr_json::Xattrs;
use super::S3Fs;
use crate::cache::inode::{AttrUpdate, InodeTable, NodeKind, ObjectMeta, ROOT_INO};
use crate::s3::meta::MAX_USER_METADATA_BYTES;
use crate::s3::{Metadata, ObjectInfo};

/// File type bits.
pub const S_IFMT: u32 = libc::S_IFMT;
/// Symlink type.
pub const S_IFLNK: u32 = libc::S_IFLNK;
/// Directory type.
pub const S_IFDIR: u32 = libc::S_IFDIR;
/// Regular file type.
pub const S_IFREG: u32 = libc::S_IFREG;

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
    /// Modification time.
    pub mtime: SystemTime,
    /// Access time.
    pub atime: SystemTime,
    /// Change time.
    pub ctime: SystemTime,
    /// Hard links: 0 once unlinked (a file still open), 1 for other files, 2 + the
    /// subdirectories known for a directory.
    pub nlink: u32,
    /// Device number (devices only).
    pub rdev: u32,
}

/// The user a request comes from (the FUSE request's uid and gid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// The owner, mode and ACLs of a new entry (see `S3Fs::new_entry_owner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOwner {
    /// Owner and group to record, if any (`None`: the mount's default owner, nothing written).
    pub ids: Option<(u32, u32)>,
    /// The permission bits (the umask or the directory's default ACL applied), with set-gid
    /// added for a directory in a set-gid directory.
    pub mode: u32,
    /// The ACLs it inherits from its directory's default ACL ([`S3Fs::inherit`]).
    pub acls: Xattrs,
}

impl NewOwner {
    /// Record the owner in the metadata of the create (`x-amz-meta-uid`, `-gid`), and the
    /// ACLs inherited.
    pub fn write_to(&self, meta: &mut Metadata) {
        if let Some((uid, gid)) = self.ids {
            meta.insert("uid", uid.to_string());
            meta.insert("gid", gid.to_string());
        }
        if !self.acls.is_empty() {
            keep(meta, &self.acls);
        }
    }
}

/// Parse `x-amz-meta-mode`: decimal (s3fs), octal with a leading `0`, or octal without one as
/// rclone's `--metadata` writes it (Go's `%o` of `st_mode`: `100644` for 0644, `40755` for a
/// directory). A value read as decimal whose type bits name no file type, while read as octal
/// they do, is rclone's: s3fs always writes the type bits, so its decimal values name one
/// (`100644` read as decimal would be 0o304344, a regular file 0o4444 with the set-uid bit). The
/// few that name a type either way (rclone's `41777`, a sticky directory, is also s3fs's
/// symlink 0o121461) are read as s3fs writes them.
pub fn parse_mode(v: &str) -> Option<u32> {
    let v = v.trim();
    if v.len() > 1 && v.starts_with('0') {
        return u32::from_str_radix(&v[1..], 8).ok();
    }
    let decimal: u32 = v.parse().ok()?;
    if names_a_file_type(decimal) {
        return Some(decimal);
    }
    match u32::from_str_radix(v, 8) {
        Ok(octal) if names_a_file_type(octal) => Some(octal),
        _ => Some(decimal),
    }
}

/// True if `mode` is an `st_mode` (at most 16 bits) whose type bits name a file type.
fn names_a_file_type(mode: u32) -> bool {
    mode <= u32::from(u16::MAX) && NodeKind::from_mode(mode, 0).is_some()
}

/// Parse `x-amz-meta-mtime` (and `-atime`, `-ctime`) in any form the peers write: `sec` or
/// `sec.nsec` (s3fs, s3mount), float seconds (rclone's mtime), or RFC 3339 with a fraction and
/// a `Z` or a `±HH:MM` offset (rclone's `--metadata` atime and btime, in the local time zone).
/// A time before 1970 is negative as s3fs writes it, a `timespec`: the whole seconds rounded
/// down, then the nanoseconds after them (`-2.250000000` is 1.75 s before 1970; rclone's
/// `-1.75` of the same time reads a second later, whole seconds alike).
pub fn parse_mtime(v: &str) -> Option<SystemTime> {
    let v = v.trim();
    if let Some(before) = v.strip_prefix('-') {
        let (secs, nanos) = sec_nsec(before)?;
        return UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs))?
            .checked_add(Duration::from_nanos(nanos.into()));
    }
    match sec_nsec(v) {
        Some((secs, nanos)) => UNIX_EPOCH.checked_add(Duration::new(secs, nanos)),
        None => parse_rfc3339(v),
    }
}

/// Unsigned `sec` or `sec.nsec` (the fraction's digits after the ninth are left out).
fn sec_nsec(v: &str) -> Option<(u64, u32)> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = format!("{digits:0<9}").parse().ok()?;
    Some((secs.parse().ok()?, nanos))
}

/// RFC 3339 with a `Z` (or none) or a numeric `±HH:MM` offset, which humantime does not take.
fn parse_rfc3339(v: &str) -> Option<SystemTime> {
    /// `±HH:MM`.
    const OFFSET_LEN: usize = 6;
    let split = v
        .len()
        .checked_sub(OFFSET_LEN)
        .filter(|&i| v.is_char_boundary(i));
    let Some((local, offset)) = split.map(|i| v.split_at(i)) else {
        return humantime::parse_rfc3339_weak(v).ok();
    };
    let b = offset.as_bytes();
    let east = match b[0] {
        b'+' => true,
        b'-' => false,
        _ => return humantime::parse_rfc3339_weak(v).ok(),
    };
    if b[3] != b':' || !local.contains(['T', 't', ' ']) {
        return humantime::parse_rfc3339_weak(v).ok();
    }
    let hours: u64 = offset[1..3].parse().ok()?;
    let minutes: u64 = offset[4..6].parse().ok()?;
    let shift = Duration::from_secs(hours * 3600 + minutes * 60);
    let as_utc = humantime::parse_rfc3339_weak(local).ok()?;
    // The local time is `shift` ahead of UTC east of Greenwich, behind it west.
    if east {
        as_utc.checked_sub(shift)
    } else {
        as_utc.checked_add(shift)
    }
}

/// Format a time as `sec.nsec` (the form of `x-amz-meta-mtime`, `-atime`, `-ctime`); before
/// 1970 as s3fs writes it (see [`parse_mtime`]).
pub fn format_mtime(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        Err(e) => {
            let before = e.duration();
            match before.subsec_nanos() {
                0 => format!("-{}.000000000", before.as_secs()),
                n => format!("-{}.{:09}", before.as_secs() + 1, 1_000_000_000 - n),
            }
        }
    }
}

/// The metadata names that hold what `stat` shows: mode, owner, times, device number (the
/// names s3fs and rclone use; see `metadata_attrs`, `metadata_kind`).
pub const STAT_METADATA: [&str; 7] = ["mode", "uid", "gid", "mtime", "atime", "ctime", "rdev"];

/// What the metadata says of the attributes (what it leaves out, the node keeps).
pub fn metadata_attrs(meta: &Metadata) -> AttrUpdate {
    AttrUpdate {
        mode: meta.get("mode").and_then(parse_mode).map(|m| m & 0o7777),
        uid: meta.get("uid").and_then(|v| v.trim().parse().ok()),
        gid: meta.get("gid").and_then(|v| v.trim().parse().ok()),
        mtime: meta.get("mtime").and_then(parse_mtime),
        atime: meta.get("atime").and_then(parse_mtime),
        ctime: meta.get("ctime").and_then(parse_mtime),
    }
}

/// What a directory marker's HEAD says of its directory: its metadata, and for a marker that
/// carries no `x-amz-meta-mtime` (one another tool made: the S3 console, `aws s3api`) its
/// Last-Modified as the mtime, as for a file — not the mount's start, which would move at
/// every remount.
pub fn marker_attrs(info: &ObjectInfo) -> AttrUpdate {
    let mut attrs = metadata_attrs(&info.metadata);
    attrs.mtime = attrs.mtime.or(info.last_modified);
    attrs
}

/// The kind the metadata's mode says (with `x-amz-meta-rdev` for a device), if it has a mode;
/// type bits that name no type are a regular file.
pub fn metadata_kind(meta: &Metadata) -> Option<NodeKind> {
    let m = meta.get("mode").and_then(parse_mode)?;
    let rdev = meta
        .get("rdev")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(0);
    Some(NodeKind::from_mode(m, rdev).unwrap_or(NodeKind::File))
}

/// What every write of an object's metadata by the mount adds (see the module
/// documentation): `ctime` is `now`; an object that carried no `mtime` gets the one it shows
/// (`cur_mtime`), unless `had_mtime` says the edit itself removed it.
pub fn stamp_change(meta: &mut Metadata, had_mtime: bool, cur_mtime: SystemTime, now: SystemTime) {
    meta.insert("ctime", format_mtime(now));
    if !had_mtime && meta.get("mtime").is_none() {
        meta.insert("mtime", format_mtime(cur_mtime));
    }
}

/// Leave out the times the mount stamps, as far as `meta` needs to fit S3's 2 KB of user
/// metadata: the ctime first, then the mtime if `mtime_may_go`. The times never cost the
/// user's own metadata its room: without them a file shows its Last-Modified, the time of the
/// write that left them out, where an error would lose the change (or the upload).
pub fn leave_times_out_to_fit(meta: &mut Metadata, mtime_may_go: bool) {
    if meta.encoded_size() > MAX_USER_METADATA_BYTES {
        meta.remove("ctime");
    }
    if mtime_may_go && meta.encoded_size() > MAX_USER_METADATA_BYTES {
        meta.remove("mtime");
    }
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
    /// New atime.
    pub atime: Option<SystemTime>,
    /// When the request was made, the time its `UTIME_NOW` stands for: the change's ctime, so
    /// that a `touch` gives all three times one value, as a disk does (None: when applied).
    pub now: Option<SystemTime>,
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
            atime: self.atime,
            ctime: None,
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
        if let Some(t) = self.atime {
            meta.insert("atime", format_mtime(t));
        }
    }
}

/// What `stat` says of every directory's size (a directory marker is an empty object).
pub(crate) const DIR_SIZE: u64 = 4096;

impl S3Fs {
    pub(crate) fn attrs_of(&self, ino: u64) -> FsResult<FileAttrs> {
        let t = self.table();
        self.attrs_in(&t, ino)
    }

    /// What `stat` shows of `ino`, from the table `t` already held.
    pub(crate) fn attrs_in(&self, t: &InodeTable, ino: u64) -> FsResult<FileAttrs> {
        self.node_attrs(t, ino)
            .ok_or_else(|| FsError::not_found(format!("inode {ino} is unknown")))
    }

    /// What `stat` shows of `ino` (`None` if the table has no such node). A file open here
    /// with content of its own (written, truncated, not uploaded yet) is as big as that content,
    /// whatever the server last said: every answer from the table — lookups, listings, `stat` —
    /// reaches the kernel, which would set its size back and stop reads there.
    pub(crate) fn node_attrs(&self, t: &InodeTable, ino: u64) -> Option<FileAttrs> {
        let n = t.get(ino)?;
        let kind = n.kind();
        let a = n.attr();
        let local = match kind {
            // Without the file's lock (table → open files, in the lock order).
            NodeKind::File => self.open_files.local_size(ino),
            _ => None,
        };
        let default_mode = match kind {
            NodeKind::Dir => self.opts.dir_mode,
            NodeKind::Symlink => 0o777,
            _ => self.opts.file_mode,
        };
        let nlink = match kind {
            // Removed, or replaced by a rename, while the kernel holds it (a file still open,
            // a directory someone has open or is in): 0, a directory's too, as on a disk.
            _ if n.is_unlinked() => 0,
            // A directory never listed: its subdirectories are not known yet.
            NodeKind::Dir if n.listing_expires().is_some() => 2 + n.subdirs_known(t) as u32,
            NodeKind::Dir => 2,
            _ => 1,
        };
        let times = n.times();
        Some(FileAttrs {
            ino,
            kind,
            size: match kind {
                // A directory's size is the file system's own: 4096, as ext4 and s3fs show
                // it, so `du` and `ls -s` count a directory as they do on a disk.
                NodeKind::Dir => DIR_SIZE,
                _ => local.unwrap_or(a.size),
            },
            perm: (a.mode.unwrap_or(default_mode) & 0o7777) as u16,
            uid: a.uid.unwrap_or(self.opts.uid),
            gid: a.gid.unwrap_or(self.opts.gid),
            mtime: times.mtime,
            atime: times.atime,
            ctime: times.ctime,
            nlink,
            rdev: kind.rdev(),
        })
    }

    /// Who owns what `caller` creates in `parent` asking for `mode`, and with which mode and
    /// ACLs (the umask, or the directory's default ACL: [`S3Fs::inherit`]). With other users
    /// let in (`--allow-other`, `--allow-root`), as on a disk: the caller's uid, and its
    /// primary gid — or the directory's gid when the directory is set-gid (a directory made
    /// there is set-gid too). Otherwise the mount's default owner, and nothing is recorded.
    pub(crate) fn new_entry_owner(
        &self,
        parent: u64,
        caller: Option<Caller>,
        kind: NodeKind,
        mode: CreateMode,
    ) -> FsResult<NewOwner> {
        let Inherited { mode, acls } = self.inherit(parent, kind, mode)?;
        let Some(caller) = caller.filter(|_| self.opts.owners_from_callers) else {
            return Ok(NewOwner {
                ids: None,
                mode,
                acls,
            });
        };
        let dir = self.attrs_of(parent)?;
        if u32::from(dir.perm) & libc::S_ISGID != 0 {
            let mode = if kind == NodeKind::Dir {
                mode | libc::S_ISGID
            } else {
                mode
            };
            return Ok(NewOwner {
                ids: Some((caller.uid, dir.gid)),
                mode,
                acls,
            });
        }
        Ok(NewOwner {
            ids: Some((caller.uid, caller.gid)),
            mode,
            acls,
        })
    }

    /// `stat`: fresh attributes from the table, the open file, or a revalidation.
    pub fn getattr(&self, ino: u64) -> FsResult<FileAttrs> {
        if ino == ROOT_INO {
            return self.root_attrs();
        }
        if let Some(a) = self.open_file_attrs(ino) {
            return Ok(a);
        }
        // Fresh attributes (or an unlinked file's) are answered under one look at the table;
        // only metadata a listing left for the first lookup takes more.
        let stale = {
            let t = self.table();
            let n = t
                .get(ino)
                .ok_or_else(|| FsError::not_found(format!("inode {ino} is unknown")))?;
            if n.attr_fresh(std::time::Instant::now()) || n.parent() == 0 {
                if !self.metadata_deferred(&t, ino) {
                    return self.attrs_in(&t, ino);
                }
                None
            } else {
                Some((
                    n.parent(),
                    n.name().to_string(),
                    self.metadata_deferred(&t, ino),
                ))
            }
        };
        let Some((parent, name, deferred)) = stale else {
            self.complete_deferred(ino);
            return self.attrs_of(ino);
        };
        // Stale, but left for its first lookup by a listing: HEADed with its siblings.
        if deferred {
            self.complete_deferred(ino);
            let t = self.table();
            if t.get(ino).is_some_and(|n| !n.metadata_unknown()) {
                return self.attrs_in(&t, ino);
            }
        }
        let a = self.revalidate(parent, &name)?;
        if a.ino != ino {
            // The name now points at something else (recreated behind our back): this inode
            // is stale.
            return Err(FsError::not_found(format!("{name}: replaced")));
        }
        Ok(a)
    }

    /// The root's attributes. A prefix mount's root is the directory `prefix/`, whose marker
    /// holds what a `chmod`, `chown` or `touch` of the mount point set (or another client
    /// did): read once, at the first `stat` of the root (the kernel asks before its first
    /// permission check), so a remount does not reset them to `--dir-mode` and the mounting
    /// user. Not found, or not answered (tried again at the next `stat`): the defaults. A
    /// whole-bucket mount's root is the bucket, which has no metadata.
    fn root_attrs(&self) -> FsResult<FileAttrs> {
        if !self.root_marker_read.load(Ordering::Acquire) {
            let key = self.key_of(ROOT_INO)?;
            let read = key.is_empty()
                || match self.bucket.head(&key) {
                    Ok(info) => {
                        let mut t = self.table();
                        t.set_marker(ROOT_INO, true);
                        t.record_meta(
                            ROOT_INO,
                            ObjectMeta::from(&info),
                            &marker_attrs(&info),
                            self.expiry(),
                        );
                        true
                    }
                    Err(e) if e.is_not_found() => true,
                    Err(e) => {
                        log::debug!("{key}: HEAD of the root's marker failed: {e}");
                        false
                    }
                };
            if read {
                self.root_marker_read.store(true, Ordering::Release);
            }
        }
        self.attrs_of(ROOT_INO)
    }

    /// `chmod`, `chown`, `truncate`, `utimes`. Every change moves the ctime; a change of size
    /// moves the mtime too (as a disk does when the size changes).
    pub fn setattr(&self, ino: u64, change: AttrChange) -> FsResult<FileAttrs> {
        self.check_writable()?;
        let kind = self.kind_of(ino)?;
        if let Some(size) = change.size {
            match kind {
                NodeKind::File => {}
                NodeKind::Dir => return Err(FsError::new(libc::EISDIR, "truncate of a directory")),
                _ => return Err(FsError::new(libc::EINVAL, "truncate of a special file")),
            }
            let before = self.getattr(ino)?.size;
            self.truncate(ino, size)?;
            if before != size {
                self.table()
                    .modified(ino, change.now.unwrap_or_else(SystemTime::now));
            }
        }
        if change.touches_metadata() {
            let unlinked = self.table().get(ino).is_some_and(|n| n.is_unlinked());
            let whole_bucket_root = ino == ROOT_INO && self.key_of(ino)?.is_empty();
            if unlinked || whole_bucket_root {
                // No object to keep the change in: the root of a whole-bucket mount is the
                // bucket (kept for this mount only, so `cp -a`/`rsync -a` onto the root work);
                // an unlinked file open somewhere has no name any more (`fchmod` on it).
                let mut attrs = change.attrs();
                attrs.ctime = Some(change.now.unwrap_or_else(SystemTime::now));
                self.table().apply_attrs(ino, &attrs);
                return self.getattr(ino);
            }
            let type_bits = kind.type_bits();
            let edit = |meta: &mut Metadata, cur: &FileAttrs| {
                change.apply_to(meta, type_bits, cur.perm.into());
                if let Some(mode) = change.mode {
                    chmod_kept(meta, mode);
                }
                Ok(())
            };
            let attrs = AttrUpdate {
                ctime: change.now,
                ..change.attrs()
            };
            self.update_metadata(ino, edit, &attrs)?;
        }
        self.getattr(ino)
    }

    /// The attributes of a file open here with content of its own (see `node_attrs`), which
    /// no revalidation is to replace.
    pub(crate) fn open_file_attrs(&self, ino: u64) -> Option<FileAttrs> {
        self.open_files.local_size(ino)?;
        self.attrs_of(ino).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::inode::NodeAttr;

    #[test]
    fn modes_in_both_peer_forms() {
        assert_eq!(parse_mode("33188"), Some(0o100644));
        assert_eq!(parse_mode("0100644"), Some(0o100644));
        assert_eq!(parse_mode("41471"), Some(0o120777));
        assert_eq!(parse_mode("x"), None);
        // Permission bits alone (no type) stay decimal, as before.
        assert_eq!(parse_mode("420"), Some(0o644));
    }

    #[test]
    fn modes_rclone_writes_in_octal_without_a_leading_zero() {
        // rclone copy --metadata: Go's %o of st_mode.
        assert_eq!(parse_mode("100644"), Some(0o100644));
        assert_eq!(parse_mode("100600"), Some(0o100600));
        assert_eq!(parse_mode("104755"), Some(0o104755));
        assert_eq!(parse_mode("40755"), Some(0o040755));
        assert_eq!(parse_mode("40700"), Some(0o040700));
        assert_eq!(parse_mode("120777"), Some(0o120777));
        // Every s3fs decimal mode is still read as decimal.
        for t in [
            0o010000, 0o020000, 0o040000, 0o060000, 0o100000, 0o120000, 0o140000,
        ] {
            for p in 0..=0o7777 {
                let m = t | p;
                assert_eq!(parse_mode(&m.to_string()), Some(m), "{m:o}");
            }
        }
    }

    #[test]
    fn times_before_1970_as_s3fs_writes_them() {
        // 1960-01-01 00:00:00.5 UTC: s3fs's timespec, whole seconds rounded down.
        let t = UNIX_EPOCH - Duration::new(315_619_199, 500_000_000);
        assert_eq!(format_mtime(t), "-315619200.500000000");
        assert_eq!(parse_mtime("-315619200.500000000"), Some(t));
        let whole = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(format_mtime(whole), "-86400.000000000");
        assert_eq!(parse_mtime("-86400"), Some(whole));
        for t in [
            t,
            whole,
            UNIX_EPOCH - Duration::from_nanos(1),
            UNIX_EPOCH + Duration::new(1_795_865_398, 696_502_617),
        ] {
            assert_eq!(parse_mtime(&format_mtime(t)), Some(t));
        }
        for bad in ["-", "--1", "-x", "-1.x", "1.-5", "-.5"] {
            assert_eq!(parse_mtime(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_times_with_a_fraction_and_an_offset() {
        let t = UNIX_EPOCH + Duration::new(1_795_865_398, 696_502_617);
        // rclone --metadata atime/btime: RFC 3339 with nanoseconds, in the local zone.
        assert_eq!(parse_mtime("2026-11-28T11:29:58.696502617Z"), Some(t));
        assert_eq!(parse_mtime("2026-11-28T12:29:58.696502617+01:00"), Some(t));
        assert_eq!(parse_mtime("2026-11-28T06:59:58.696502617-04:30"), Some(t));
        assert_eq!(parse_mtime("2026-11-28T11:29:58.696502617+00:00"), Some(t));
        assert_eq!(parse_mtime("2026-11-28T11:29:58.696502617+0x:00"), None);
        assert_eq!(parse_mtime("+01:00"), None);
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
    fn special_files_in_metadata_as_s3fs_writes_them() {
        let m: Metadata = [("mode", "8624"), ("rdev", "259")].into_iter().collect();
        assert_eq!(metadata_kind(&m), Some(NodeKind::CharDevice { rdev: 259 }));
        let m: Metadata = [("mode", &*(libc::S_IFIFO | 0o600).to_string())]
            .into_iter()
            .collect();
        assert_eq!(metadata_kind(&m), Some(NodeKind::Fifo));
        // A device number that does not fit is no device number.
        let m: Metadata = [("mode", "24992"), ("rdev", "99999999999")]
            .into_iter()
            .collect();
        assert_eq!(metadata_kind(&m), Some(NodeKind::BlockDevice { rdev: 0 }));
        let m: Metadata = [("mode", "0")].into_iter().collect();
        assert_eq!(metadata_kind(&m), Some(NodeKind::File), "no type: a file");
    }

    #[test]
    fn every_change_carries_its_ctime_and_keeps_the_mtime_shown() {
        let now = UNIX_EPOCH + Duration::new(2_000, 5);
        let shown = UNIX_EPOCH + Duration::new(1_000, 0);
        let mut m = Metadata::new();
        stamp_change(&mut m, false, shown, now);
        assert_eq!(m.get("ctime"), Some(format_mtime(now).as_str()));
        assert_eq!(m.get("mtime"), Some(format_mtime(shown).as_str()));
        // An mtime there is kept; one the edit removed stays removed.
        let mut m: Metadata = [("mtime", "7")].into_iter().collect();
        stamp_change(&mut m, true, shown, now);
        assert_eq!(m.get("mtime"), Some("7"));
        let mut m = Metadata::new();
        stamp_change(&mut m, true, shown, now);
        assert_eq!(m.get("mtime"), None);
        // Atime and ctime are read in the forms of mtime.
        let m: Metadata = [("atime", "1700000000"), ("ctime", "1700000001.5")]
            .into_iter()
            .collect();
        let a = metadata_attrs(&m);
        assert_eq!(
            a.atime,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            a.ctime,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_001_500))
        );
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
