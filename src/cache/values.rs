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
}

/// The attributes the file system reports.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAttr {
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
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
    }

    /// Attributes of an entry this mount just created, owned by the mount's default owner.
    pub fn created(size: u64, mtime: SystemTime, mode: u32, etag: Option<String>) -> Self {
        NodeAttr {
            size,
            mtime,
            mode: Some(mode & 0o7777),
            uid: None,
            gid: None,
            etag,
        }
    }

    /// Attributes of a directory with nothing known about it.
    pub fn dir() -> Self {
        NodeAttr {
            size: 0,
            mtime: start_time(),
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

impl HeadReply {
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
