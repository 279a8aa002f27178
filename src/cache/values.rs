//! What the inode table knows of one object, as values: its kind, the attributes the file
//! system reports ([`NodeAttr`]) and changes to them ([`AttrUpdate`]), its full metadata
//! ([`ObjectMeta`]) and a HEAD's reply with the time it was asked ([`HeadReply`]). The table
//! ([`super::inode`]) decides how they change a node; they are re-exported there.

use std::time::{Instant, SystemTime};

use crate::s3::{Metadata, ObjectInfo};

/// What kind of file a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file (an object).
    File,
    /// A directory (a marker `dir/`, or a prefix with objects under it).
    Dir,
    /// A symbolic link (an object whose mode metadata says S_IFLNK).
    Symlink,
    /// A FIFO (named pipe): a zero-byte object whose mode says S_IFIFO, as s3fs stores it.
    Fifo,
    /// A unix socket's name (S_IFSOCK).
    Socket,
    /// A character device (S_IFCHR), with its device number (`x-amz-meta-rdev`).
    CharDevice {
        /// The device number, as `st_rdev` holds it.
        rdev: u32,
    },
    /// A block device (S_IFBLK), with its device number.
    BlockDevice {
        /// The device number, as `st_rdev` holds it.
        rdev: u32,
    },
}

impl NodeKind {
    /// The file type bits of `st_mode` (`S_IFREG`, `S_IFDIR`, ...).
    pub fn type_bits(self) -> u32 {
        match self {
            NodeKind::File => libc::S_IFREG,
            NodeKind::Dir => libc::S_IFDIR,
            NodeKind::Symlink => libc::S_IFLNK,
            NodeKind::Fifo => libc::S_IFIFO,
            NodeKind::Socket => libc::S_IFSOCK,
            NodeKind::CharDevice { .. } => libc::S_IFCHR,
            NodeKind::BlockDevice { .. } => libc::S_IFBLK,
        }
    }

    /// The kind `st_mode`'s type bits name (`rdev` for a device); `None` for bits that name
    /// no type.
    pub fn from_mode(mode: u32, rdev: u32) -> Option<NodeKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => NodeKind::File,
            libc::S_IFDIR => NodeKind::Dir,
            libc::S_IFLNK => NodeKind::Symlink,
            libc::S_IFIFO => NodeKind::Fifo,
            libc::S_IFSOCK => NodeKind::Socket,
            libc::S_IFCHR => NodeKind::CharDevice { rdev },
            libc::S_IFBLK => NodeKind::BlockDevice { rdev },
            _ => return None,
        })
    }

    /// The device number (0 but for devices).
    pub fn rdev(self) -> u32 {
        match self {
            NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => rdev,
            _ => 0,
        }
    }

    /// A FIFO, a socket or a device: a zero-byte object whose content is never read or written
    /// through the mount (the kernel handles opening one).
    pub fn is_special(self) -> bool {
        !matches!(self, NodeKind::File | NodeKind::Dir | NodeKind::Symlink)
    }
}

/// A directory marker written by another tool, instead of (or beside) the `dir/` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignMarker {
    /// `dir_$folder$`, as Hadoop's S3 file systems and S3Fox write it.
    Folder,
    /// A zero-byte `dir` object with `Content-Type: application/x-directory`, as old s3fs
    /// writes it.
    Plain,
}

/// The suffix of a Hadoop/S3Fox directory marker.
pub const FOLDER_SUFFIX: &str = "_$folder$";

impl ForeignMarker {
    /// The key of this marker for the directory `dir_key` (which ends in `/`).
    pub fn key(self, dir_key: &str) -> String {
        let base = dir_key.strip_suffix('/').unwrap_or(dir_key);
        match self {
            ForeignMarker::Folder => format!("{base}{FOLDER_SUFFIX}"),
            ForeignMarker::Plain => base.to_string(),
        }
    }
}

/// The attributes the file system reports.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAttr {
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// Access time, if the object says (`x-amz-meta-atime`, set explicitly); else the mtime.
    pub atime: Option<SystemTime>,
    /// Change time, if known (`x-amz-meta-ctime`, or the object's Last-Modified when later);
    /// else the mtime.
    pub ctime: Option<SystemTime>,
    /// Permission bits (`0o7777` part) if the object says; else the mount's default.
    pub mode: Option<u32>,
    /// Owner, if the object says.
    pub uid: Option<u32>,
    /// Group, if the object says.
    pub gid: Option<u32>,
    /// ETag of the object the attributes came from.
    pub etag: Option<String>,
}

/// When this process started: the mtime of directories that carry none of their own (S3 has
/// no directory times), so `ls -l` shows a plausible date rather than 1970.
pub fn start_time() -> SystemTime {
    static START: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
    *START.get_or_init(SystemTime::now)
}

/// Attributes set by `chmod`/`chown`/`utimes`, or carried by an object's metadata: each one
/// given replaces the node's, the others stay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttrUpdate {
    /// Permission bits (only the `0o7777` part is kept).
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Modification time.
    pub mtime: Option<SystemTime>,
    /// Access time.
    pub atime: Option<SystemTime>,
    /// Change time.
    pub ctime: Option<SystemTime>,
}

impl AttrUpdate {
    /// True if it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == AttrUpdate::default()
    }
}

impl NodeAttr {
    /// Take what `u` sets.
    pub fn apply(&mut self, u: &AttrUpdate) {
        if let Some(m) = u.mode {
            self.mode = Some(m & 0o7777);
        }
        if let Some(uid) = u.uid {
            self.uid = Some(uid);
        }
        if let Some(gid) = u.gid {
            self.gid = Some(gid);
        }
        if let Some(t) = u.mtime {
            self.mtime = t;
        }
        if let Some(t) = u.atime {
            self.atime = Some(t);
        }
        if let Some(t) = u.ctime {
            self.ctime = Some(t);
        }
    }

    /// Attributes of an entry this mount just created, owned by the mount's default owner.
    pub fn created(size: u64, mtime: SystemTime, mode: u32, etag: Option<String>) -> Self {
        NodeAttr {
            size,
            mtime,
            atime: Some(mtime),
            ctime: Some(mtime),
            mode: Some(mode & 0o7777),
            uid: None,
            gid: None,
            etag,
        }
    }

    /// The same, owned by `ids` (uid, gid) when given.
    pub fn owned_by(mut self, ids: Option<(u32, u32)>) -> Self {
        if let Some((uid, gid)) = ids {
            self.uid = Some(uid);
            self.gid = Some(gid);
        }
        self
    }

    /// Attributes of a directory with nothing known about it.
    pub fn dir() -> Self {
        NodeAttr {
            size: 0,
            mtime: start_time(),
            atime: None,
            ctime: None,
            mode: None,
            uid: None,
            gid: None,
            etag: None,
        }
    }
}

/// Everything a HEAD returned: the basis for xattrs and for keeping metadata on overwrite. The
/// default is what an implicit directory (no marker object) has: nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectMeta {
    /// User metadata.
    pub metadata: Metadata,
    /// Content headers (`content-type`, ...).
    pub content_headers: Vec<(String, String)>,
    /// ETag the metadata belongs to.
    pub etag: Option<String>,
}

impl From<&ObjectInfo> for ObjectMeta {
    fn from(info: &ObjectInfo) -> Self {
        ObjectMeta {
            metadata: info.metadata.clone(),
            content_headers: info.content_headers.clone(),
            etag: info.etag.clone(),
        }
    }
}

/// What a HEAD of an object answered, and when it was sent (see "Late replies" in
/// [`super::inode`]).
#[derive(Debug, Clone)]
pub struct HeadReply {
    /// When the HEAD was sent: anything the table learnt after then is newer than the reply.
    pub asked: Instant,
    /// Size (Content-Length).
    pub size: u64,
    /// ETag.
    pub etag: Option<String>,
    /// Last-Modified.
    pub last_modified: Option<SystemTime>,
    /// Metadata and content headers.
    pub meta: ObjectMeta,
    /// What the metadata says of the attributes (mode, owner, mtime).
    pub attrs: AttrUpdate,
}

/// How much later than an object's `x-amz-meta-ctime` its Last-Modified may be and still be
/// the same write's ([`HeadReply::ctime`]): the longest upload a stamp is made at the start of.
pub const CTIME_SLACK: std::time::Duration = std::time::Duration::from_secs(3600);

impl HeadReply {
    /// The object's change time: its `x-amz-meta-ctime`, unless its Last-Modified is later by
    /// more than [`CTIME_SLACK`] (a copy that kept old metadata, such as another tool's rename,
    /// changed it then); its Last-Modified if it carries none. Within the slack, the
    /// Last-Modified is that of the write that stamped the ctime (the server's clock, rounded
    /// to the second, at the end of an upload that began at the stamp): taking it would move
    /// the ctime of an unchanged file at every refresh, which `tar` reports as "file changed as
    /// we read it".
    pub fn ctime(&self) -> Option<SystemTime> {
        match (self.attrs.ctime, self.last_modified) {
            (Some(c), Some(lm)) if lm > c + CTIME_SLACK => Some(lm),
            (Some(c), _) => Some(c),
            (None, lm) => lm,
        }
    }

    /// The reply `info` to a HEAD sent at `asked`; `attrs`: what its metadata says of the
    /// attributes.
    pub fn new(info: &ObjectInfo, attrs: AttrUpdate, asked: Instant) -> Self {
        HeadReply {
            asked,
            size: info.size,
            etag: info.etag.clone(),
            last_modified: info.last_modified,
            meta: ObjectMeta::from(info),
            attrs,
        }
    }
}
