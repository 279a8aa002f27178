//! One inode: what the table knows of one object or directory, read through its accessors
//! (the fields are the table's to change: [`super::InodeTable`]).

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use super::{ForeignMarker, InodeTable, NodeAttr, NodeKind, ObjectMeta};

/// A name known absent from a directory (see "negative entries" in the module documentation
/// of [`super`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Negative {
    pub(super) until: Instant,
    /// The mount removed it (else the server said it was not there).
    pub(super) removed: bool,
}

/// One inode. Read through its accessors; changed only through [`InodeTable`].
#[derive(Debug)]
pub struct Node {
    pub(super) ino: u64,
    /// Parent inode (the root is its own parent); 0 once unlinked.
    pub(super) parent: u64,
    pub(super) name: String,
    pub(super) kind: NodeKind,
    pub(super) attr: NodeAttr,
    /// Attributes are trusted until then.
    pub(super) attr_expires: Instant,
    /// When the attributes were last set (from the server or by a change through the mount):
    /// a listing asked for before then is older and must not overwrite them.
    pub(super) attr_set: Instant,
    /// Full metadata from a HEAD, if loaded.
    pub(super) meta: Option<ObjectMeta>,
    /// `meta` is trusted until then.
    pub(super) meta_expires: Instant,
    /// Directories: a `dir/` marker object exists.
    pub(super) has_marker: bool,
    /// Directories: a marker another tool wrote exists.
    pub(super) foreign: Option<ForeignMarker>,
    /// Directories: children by name.
    pub(super) children: HashMap<String, u64>,
    /// Directories: `children` is a complete listing until then.
    pub(super) listing_expires: Option<Instant>,
    /// Directories: that listing took more than one page.
    pub(super) listing_paged: bool,
    /// Directories: files of the listing whose metadata is HEADed at the first lookup of one
    /// of them, not before `readdir` answers (see `fs::listing_heads`).
    pub(super) heads_deferred: bool,
    /// Directories: names known absent, until when, and why.
    pub(super) negative: HashMap<String, Negative>,
    /// Files: the storage class the last listing named (None: STANDARD, or not listed), for a
    /// copy that cannot carry the object's headers (see `fs::rename`).
    pub(super) listed_class: Option<Box<str>>,
    /// Kernel lookup count.
    pub(super) lookups: u64,
    /// Times the mount moved in memory only, for its lifetime (see "Times" in the module
    /// documentation): a read (atime, by relatime's rule), a change of the directory's entries
    /// (mtime and ctime), an unlink or a rename (ctime).
    pub(super) local: LocalTimes,
}

/// Times moved in memory only: each, when set, is a floor under the time the node shows.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LocalTimes {
    pub(super) atime: Option<SystemTime>,
    pub(super) mtime: Option<SystemTime>,
    pub(super) ctime: Option<SystemTime>,
}

/// The times a node shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// Last access.
    pub atime: SystemTime,
    /// Last change of the content (of a directory: of its entries).
    pub mtime: SystemTime,
    /// Last change of the content or the attributes.
    pub ctime: SystemTime,
}

/// relatime's rule: an atime older than this is moved by a read even when it is later than
/// the mtime and the ctime (Linux's `relatime` uses a day).
pub const RELATIME_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Node {
    /// The storage class its last listing named, if not STANDARD.
    pub fn listed_class(&self) -> Option<&str> {
        self.listed_class.as_deref()
    }

    pub(super) fn new(
        ino: u64,
        parent: u64,
        name: String,
        kind: NodeKind,
        attr: NodeAttr,
        expires: Instant,
    ) -> Self {
        Node {
            ino,
            parent,
            name,
            kind,
            attr,
            attr_expires: expires,
            attr_set: Instant::now(),
            meta: None,
            meta_expires: expires,
            has_marker: false,
            foreign: None,
            children: HashMap::new(),
            listing_expires: None,
            listing_paged: false,
            heads_deferred: false,
            negative: HashMap::new(),
            listed_class: None,
            lookups: 0,
            local: LocalTimes::default(),
        }
    }

    /// The times the node shows: what the object says (an atime or ctime it does not carry is
    /// its mtime), moved forward by what the mount did in memory.
    pub fn times(&self) -> Times {
        let later = |t: SystemTime, floor: Option<SystemTime>| floor.map_or(t, |f| t.max(f));
        let mtime = later(self.attr.mtime, self.local.mtime);
        Times {
            atime: later(self.attr.atime.unwrap_or(self.attr.mtime), self.local.atime),
            mtime,
            ctime: later(self.attr.ctime.unwrap_or(self.attr.mtime), self.local.ctime),
        }
    }

    /// True once the node is unlinked (its name removed, or replaced by a rename).
    pub fn is_unlinked(&self) -> bool {
        self.parent == 0
    }

    /// Directories: how many of the children known are directories.
    pub fn subdirs_known(&self, t: &InodeTable) -> usize {
        self.children
            .values()
            .filter(|c| t.get(**c).is_some_and(|n| n.kind == NodeKind::Dir))
            .count()
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Parent inode (the root is its own parent); 0 once unlinked.
    pub fn parent(&self) -> u64 {
        self.parent
    }

    /// Name within the parent.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kind.
    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    /// Attributes.
    pub fn attr(&self) -> &NodeAttr {
        &self.attr
    }

    /// When the attributes were last set (from the server or by a change through the mount).
    pub fn attr_set(&self) -> Instant {
        self.attr_set
    }

    /// Full metadata from a HEAD, if loaded (fresh or not).
    pub fn meta(&self) -> Option<&ObjectMeta> {
        self.meta.as_ref()
    }

    /// Directories: a `dir/` marker object exists.
    pub fn has_marker(&self) -> bool {
        self.has_marker
    }

    /// Directories: the marker another tool wrote for it, if any.
    pub fn foreign_marker(&self) -> Option<ForeignMarker> {
        self.foreign
    }

    /// Directories: children by name.
    pub fn children(&self) -> &HashMap<String, u64> {
        &self.children
    }

    /// Directories: until when `children` is a complete listing, if it is one.
    pub fn listing_expires(&self) -> Option<Instant> {
        self.listing_expires
    }

    /// Directories: the last complete listing took more than one page.
    pub fn listing_paged(&self) -> bool {
        self.listing_paged
    }

    /// Directories: the metadata of some files of the listing is HEADed at the first lookup
    /// of one of them.
    pub fn heads_deferred(&self) -> bool {
        self.heads_deferred
    }

    /// Files: the metadata of the object's current version is not known (a listing gives
    /// sizes and dates, not `x-amz-meta-*`).
    pub fn metadata_unknown(&self) -> bool {
        self.meta.as_ref().is_none_or(|m| m.etag != self.attr.etag) && self.attr.etag.is_some()
    }

    /// True if the attributes are still fresh.
    pub fn attr_fresh(&self, now: Instant) -> bool {
        now < self.attr_expires
    }

    /// Fresh HEAD metadata, if any.
    pub fn fresh_meta(&self, now: Instant) -> Option<&ObjectMeta> {
        self.meta.as_ref().filter(|_| now < self.meta_expires)
    }

    /// True if `children` is a complete, fresh listing.
    pub fn listing_fresh(&self, now: Instant) -> bool {
        self.listing_expires.is_some_and(|t| now < t)
    }
}
