//! The inode table: inode numbers ↔ keys, what is known of each object, and for how long.
//!
//! A node stores its parent and its name, not its key: the key is derived by walking up to the
//! root (`prefix` + `a/` + `b/` + `name`, directories ending in `/`). Renaming a directory then
//! only re-links one node, and every inode below it — which the kernel may still hold — maps to
//! its new key at once.
//!
//! Freshness: attributes (`attr_expires`), full object metadata from a HEAD (`meta_expires`), a
//! directory's complete listing (`listing_expires`) and negative entries (names known absent)
//! each carry an expiry instant set from the metadata TTL. A negative entry says why the name
//! is absent: the mount removed it (an unlink, an rmdir, a rename's source: lookups answer
//! ENOENT from it), or the server said so (only a create that follows the lookup relies on
//! it; a lookup asks the server again, so another client's new object is found at once). Nothing here performs I/O; the
//! file system decides when to refresh.
//!
//! Changes: only through the table's named operations (record a HEAD's metadata, a new version,
//! an attribute change, a marker, a complete listing, an ETag followed after a copy, …); the
//! fields of a [`Node`] are read-only outside this module, so every rule about what a change
//! does to the rest of a node (kind changes reset directory state, a refresh is newer than any
//! listing asked before it) lives here once.
//!
//! Late replies: a node remembers when its attributes were last set (`attr_set`: a reply
//! recorded, an upload, a copy's new ETag). A reply to a HEAD or a listing sent before then
//! describes the object as it was and is not recorded over them ([`InodeTable::record_head`],
//! [`InodeTable::learnt_since`]): else an old ETag would come back with a fresh TTL, and the
//! next `open` would pin it and fail its reads with 412.
//!
//! Times: a node shows the times its object says (`x-amz-meta-mtime`/`-atime`/`-ctime`, else
//! Last-Modified), moved forward by what the mount did in memory for its lifetime and never
//! wrote: an atime moved by a read (relatime's rule), a directory's mtime and ctime moved by a
//! change of its entries, a ctime moved by an unlink or a rename. A time set explicitly
//! (`utimes`) replaces what was moved in memory ([`Node::times`]).
//!
//! Numbers: a node's inode number is derived from its key when it is first known, so a file
//! keeps its `st_ino` across remounts, as git's index and `tar --listed-incremental` expect
//! ([`number`]).
//!
//! Lifetime: the kernel counts lookups; `forget` drops them. A node whose count reaches zero and
//! that is no longer linked into the tree is removed. Linked nodes stay (they are cheap and a
//! listing will usually reuse them).

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

pub use super::values::{
    start_time, AttrUpdate, ForeignMarker, HeadReply, NodeAttr, NodeKind, ObjectMeta, FOLDER_SUFFIX,
};

mod node;
mod number;

use node::Negative;
pub use node::{Node, Times, RELATIME_MAX_AGE};

/// The root directory's inode number (FUSE convention).
pub const ROOT_INO: u64 = 1;

/// The table of inodes.
#[derive(Debug)]
pub struct InodeTable {
    nodes: HashMap<u64, Node>,
    prefix: String,
}

impl InodeTable {
    /// A table whose root directory is the key prefix `prefix` ("" or ending in "/").
    pub fn new(prefix: &str) -> Self {
        let mut nodes = HashMap::new();
        let now = Instant::now();
        let mut root = Node::new(
            ROOT_INO,
            ROOT_INO,
            String::new(),
            NodeKind::Dir,
            NodeAttr::dir(),
            now,
        );
        root.lookups = 1;
        nodes.insert(ROOT_INO, root);
        InodeTable {
            nodes,
            prefix: prefix.to_string(),
        }
    }

    /// The root's key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A node.
    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The object key of a node: directories end in "/", the root is the prefix.
    /// `None` for an unknown or unlinked node.
    pub fn key_of(&self, ino: u64) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = self.nodes.get(&ino)?;
        let is_dir = cur.kind == NodeKind::Dir;
        while cur.ino != ROOT_INO {
            if cur.parent == 0 {
                return None;
            }
            parts.push(cur.name.as_str());
            cur = self.nodes.get(&cur.parent)?;
        }
        let mut key = self.prefix.clone();
        for (i, p) in parts.iter().rev().enumerate() {
            key.push_str(p);
            if i + 1 < parts.len() || is_dir {
                key.push('/');
            }
        }
        Some(key)
    }

    /// The child `name` of `parent`, if known.
    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.nodes.get(&parent)?.children.get(name).copied()
    }

    /// Create or update the child `name` of `parent`; returns its inode. A known child whose
    /// kind changed (a file replaced by a directory) gets the new kind.
    pub fn upsert_child(
        &mut self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        attr: NodeAttr,
        expires: Instant,
    ) -> u64 {
        if let Some(ino) = self.child(parent, name) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                if n.kind != kind {
                    n.kind = kind;
                    n.meta = None;
                    n.children.clear();
                    n.listing_expires = None;
                    n.foreign = None;
                }
                n.attr = attr;
                n.attr_expires = expires;
                n.attr_set = Instant::now();
                return ino;
            }
        }
        let ino = self.new_number(parent, name);
        self.nodes.insert(
            ino,
            Node::new(ino, parent, name.to_string(), kind, attr, expires),
        );
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children.insert(name.to_string(), ino);
            p.negative.remove(name);
        }
        ino
    }

    /// The number a new child `name` of `parent` gets: derived from its key, the same at every
    /// mount ([`number`]); one of a parent no longer linked (a directory removed while open)
    /// from the parent's number instead.
    fn new_number(&self, parent: u64, name: &str) -> u64 {
        let mut path = match self.key_of(parent) {
            Some(key) => key.into_bytes(),
            None => format!("\0{parent}/").into_bytes(),
        };
        path.extend_from_slice(name.as_bytes());
        number::number_for(&path, |n| self.nodes.contains_key(&n))
    }

    /// Unlink the child `name` of `parent`. The node survives while the kernel holds it.
    pub fn remove_child(&mut self, parent: u64, name: &str) -> Option<u64> {
        let ino = self.nodes.get_mut(&parent)?.children.remove(name)?;
        self.detach(ino);
        Some(ino)
    }

    fn detach(&mut self, ino: u64) {
        let children: Vec<u64> = match self.nodes.get_mut(&ino) {
            Some(n) => {
                n.parent = 0;
                n.children.drain().map(|(_, c)| c).collect()
            }
            None => return,
        };
        for c in children {
            self.detach(c);
        }
        self.drop_if_unused(ino);
    }

    /// Move the child `name` of `parent` to `new_parent` as `new_name`, replacing (unlinking) any
    /// node there. Returns the moved inode.
    pub fn move_child(
        &mut self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
    ) -> Option<u64> {
        let ino = self.nodes.get_mut(&parent)?.children.remove(name)?;
        self.remove_child(new_parent, new_name);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.parent = new_parent;
            n.name = new_name.to_string();
        }
        if let Some(p) = self.nodes.get_mut(&new_parent) {
            p.children.insert(new_name.to_string(), ino);
            p.negative.remove(new_name);
        }
        Some(ino)
    }

    /// The mount removed `name` from `parent` (unlink, rmdir, rename): lookups answer ENOENT
    /// until `until` without asking the server.
    pub fn set_negative(&mut self, parent: u64, name: &str, until: Instant) {
        self.put_negative(parent, name, until, true);
    }

    /// The server said `name` is not in `parent` (a lookup found nothing there): a
    /// create that follows until `until` need not ask again; lookups do.
    pub fn set_absent(&mut self, parent: u64, name: &str, until: Instant) {
        self.put_negative(parent, name, until, false);
    }

    fn put_negative(&mut self, parent: u64, name: &str, until: Instant, removed: bool) {
        if let Some(p) = self.nodes.get_mut(&parent) {
            let e = p
                .negative
                .entry(name.to_string())
                .or_insert(Negative { until, removed });
            // The server's word never undoes the mount's own removal while it stands.
            let keep_removed = e.removed && !removed && Instant::now() < e.until;
            if !keep_removed {
                *e = Negative { until, removed };
            }
        }
    }

    /// Until when the mount's removal of `name` from `parent` is trusted, if it removed it.
    pub fn negative_until(&self, parent: u64, name: &str) -> Option<Instant> {
        let n = self.nodes.get(&parent)?.negative.get(name)?;
        n.removed.then_some(n.until)
    }

    /// True if the mount removed `name` from `parent` and that is still trusted at `now`: a
    /// lookup answers ENOENT without asking.
    pub fn is_negative(&self, parent: u64, name: &str, now: Instant) -> bool {
        self.negative_until(parent, name).is_some_and(|t| now < t)
    }

    /// True if `name` is known absent from `parent` at `now`: removed by the mount, or said
    /// absent by the server (a create right after the lookup that found nothing).
    pub fn known_absent(&self, parent: u64, name: &str, now: Instant) -> bool {
        self.nodes
            .get(&parent)
            .and_then(|p| p.negative.get(name))
            .is_some_and(|n| now < n.until)
    }

    /// Forget all cached knowledge under a directory (after a change made behind our back, or
    /// when a rename moved many keys).
    pub fn invalidate_dir(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.listing_expires = None;
            n.negative.clear();
        }
    }

    /// Look at the server again next time: the attributes and the metadata are stale (a read
    /// failed, the object changed on the server, a copy's result is unknown).
    pub fn expire(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr_expires = Instant::now();
            n.meta = None;
        }
    }

    /// The attributes are stale (the metadata is kept).
    pub fn expire_attr(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr_expires = Instant::now();
        }
    }

    /// The attributes are right as of now (the mount changed the object, or moved it): trusted
    /// until `until`, and newer than any listing asked for before now.
    pub fn refresh_attr(&mut self, ino: u64, until: Instant) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr_expires = until;
            n.attr_set = Instant::now();
        }
    }

    /// A version of a file's content: its size, its ETag and, when known, its mtime. Newer
    /// than any listing or HEAD asked for before now.
    pub fn set_version(
        &mut self,
        ino: u64,
        size: u64,
        etag: Option<String>,
        mtime: Option<SystemTime>,
    ) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr.size = size;
            n.attr.etag = etag;
            if let Some(t) = mtime {
                n.attr.mtime = t;
            }
            n.attr_set = Instant::now();
        }
    }

    /// The file or symlink `parent/name`, if its attributes were set after `t`: a reply to a
    /// request sent at `t` describes it as it was before (see "Late replies" in the module
    /// documentation).
    pub fn learnt_since(&self, parent: u64, name: &str, t: Instant) -> Option<&Node> {
        self.child(parent, name)
            .and_then(|c| self.get(c))
            .filter(|n| n.kind != NodeKind::Dir && n.attr_set > t)
    }

    /// Record the reply to a HEAD of the file or symlink `parent/name` (a lookup, a listing
    /// completing its entries): attributes from the reply alone, its metadata, trusted until
    /// `until` — unless the table learnt about the name after the HEAD was sent; then the node
    /// stays as it is. Returns the inode of the name.
    pub fn record_head(
        &mut self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        reply: &HeadReply,
        until: Instant,
    ) -> u64 {
        if let Some(n) = self.learnt_since(parent, name, reply.asked) {
            return n.ino;
        }
        let mut attr = NodeAttr {
            size: reply.size,
            mtime: reply.last_modified.unwrap_or_else(SystemTime::now),
            atime: None,
            ctime: None,
            mode: None,
            uid: None,
            gid: None,
            etag: reply.etag.clone(),
        };
        attr.apply(&reply.attrs);
        attr.ctime = reply.ctime();
        let ino = self.upsert_child(parent, name, kind, attr, until);
        self.record_meta(ino, reply.meta.clone(), &reply.attrs, until);
        ino
    }

    /// Record the reply to a HEAD of the object of `ino` (its metadata was asked for): a file
    /// takes the reply's version and metadata unless its attributes were set after the HEAD was
    /// sent; a directory's HEAD is of its marker, which exists and carries the metadata. True
    /// if recorded.
    pub fn record_head_of(&mut self, ino: u64, reply: &HeadReply, until: Instant) -> bool {
        let Some(n) = self.nodes.get(&ino) else {
            return false;
        };
        if n.kind == NodeKind::Dir {
            self.set_marker(ino, true);
        } else if n.attr_set > reply.asked {
            return false;
        } else {
            self.set_version(ino, reply.size, reply.etag.clone(), reply.last_modified);
        }
        self.record_meta(ino, reply.meta.clone(), &reply.attrs, until);
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr.ctime = reply.ctime().or(n.attr.ctime);
        }
        true
    }

    /// The object's full metadata (from a HEAD, or as the mount just wrote it), trusted until
    /// `until`; `attrs` is what it says of the attributes (mode, owner, mtime), which the node
    /// takes.
    pub fn record_meta(&mut self, ino: u64, meta: ObjectMeta, attrs: &AttrUpdate, until: Instant) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr.apply(attrs);
            n.meta = Some(meta);
            n.meta_expires = until;
        }
    }

    /// An attribute change (`chmod`, `chown`, `utimes`) the node takes at once. A time set
    /// explicitly replaces what the mount moved in memory.
    pub fn apply_attrs(&mut self, ino: u64, attrs: &AttrUpdate) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr.apply(attrs);
            if attrs.atime.is_some() {
                n.local.atime = None;
            }
            if attrs.mtime.is_some() {
                n.local.mtime = None;
            }
            if attrs.ctime.is_some() {
                n.local.ctime = None;
            }
        }
    }

    /// The entries of directory `ino` changed through the mount at `now` (a create, an unlink,
    /// a rename, a mkdir or rmdir in it): its mtime and ctime move, in memory (S3 keeps no
    /// directory times; the marker is not rewritten for it).
    pub fn entries_changed(&mut self, ino: u64, now: SystemTime) {
        self.touched_in_memory(ino, now);
    }

    /// The node's mtime and ctime move to `now` in memory only, with no write to record them
    /// (a directory's entries changed; a file's `fallocate` that changed no byte).
    pub fn touched_in_memory(&mut self, ino: u64, now: SystemTime) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.local.mtime = Some(now);
            n.local.ctime = Some(now);
        }
    }

    /// The node changed at `now` without a write that records it (an unlink, a rename whose
    /// copy kept the metadata): its ctime moves, in memory.
    pub fn changed(&mut self, ino: u64, now: SystemTime) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.local.ctime = Some(now);
        }
    }

    /// The content was written at `now` (not uploaded yet): mtime and ctime move.
    pub fn modified(&mut self, ino: u64, now: SystemTime) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr.mtime = now;
            n.attr.ctime = Some(now);
            n.local.mtime = None;
            n.local.ctime = None;
            // Newer than any listing asked for before the write.
            n.attr_set = Instant::now();
        }
    }

    /// The node was read at `now`: its atime moves by relatime's rule — when it is not later
    /// than the mtime or the ctime, or older than [`RELATIME_MAX_AGE`] — in memory only (a
    /// write per read would change the object's ETag, dropping caches and failing open
    /// readers). True if it moved.
    pub fn accessed(&mut self, ino: u64, now: SystemTime) -> bool {
        let Some(n) = self.nodes.get_mut(&ino) else {
            return false;
        };
        let t = n.times();
        let stale = now
            .duration_since(t.atime)
            .is_ok_and(|age| age >= RELATIME_MAX_AGE);
        if t.atime <= t.mtime || t.atime <= t.ctime || stale {
            n.local.atime = Some(now);
            return true;
        }
        false
    }

    /// The object was copied with its metadata (a self-copy, or a rename's copy): same content
    /// and metadata, the copy's ETag. Like every new ETag, newer than any listing or HEAD
    /// asked for before now: their replies describe the version before the copy.
    pub fn follow_etag(&mut self, ino: u64, etag: Option<String>) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            if let Some(m) = n.meta.as_mut() {
                m.etag = etag.clone();
            }
            n.attr.etag = etag;
            n.attr_set = Instant::now();
        }
    }

    /// After a copy of the version with ETag `old` got ETag `new`: the node follows it if it
    /// still shows `old`; if it changed meanwhile (or nothing was known), it is looked at again.
    pub fn follow_copy(&mut self, ino: u64, old: Option<&str>, new: Option<String>) {
        let same = self
            .nodes
            .get(&ino)
            .is_some_and(|n| n.attr.etag.is_some() && n.attr.etag.as_deref() == old);
        if same {
            self.follow_etag(ino, new);
        } else {
            self.expire(ino);
        }
    }

    /// Directories: whether a `dir/` marker object exists.
    pub fn set_marker(&mut self, ino: u64, exists: bool) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.has_marker = exists;
        }
    }

    /// Files: the storage class a listing named for it (None: STANDARD).
    pub fn set_listed_class(&mut self, ino: u64, class: Option<&str>) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.listed_class = class.map(Box::from);
        }
    }

    /// Directories: the marker another tool wrote for it (found in a listing or by a HEAD).
    pub fn set_foreign_marker(&mut self, ino: u64, marker: Option<ForeignMarker>) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.foreign = marker;
        }
    }

    /// Directories: whether files of the listing wait for their metadata until the first
    /// lookup of one of them (see `Node::heads_deferred`).
    pub fn set_heads_deferred(&mut self, ino: u64, deferred: bool) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.heads_deferred = deferred;
        }
    }

    /// Directories: `children` is the complete listing, trusted until `until`, and it took
    /// more than one page if `paged`; names known absent are forgotten (the listing says what
    /// is there).
    pub fn listing_complete(&mut self, ino: u64, until: Instant, paged: bool) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.listing_expires = Some(until);
            n.listing_paged = paged;
            n.negative.clear();
        }
    }

    /// The kernel dropped `n` lookups of `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.drop_if_unused(ino);
    }

    /// Count one kernel lookup of `ino`.
    pub fn add_lookup(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups += 1;
        }
    }

    fn drop_if_unused(&mut self, ino: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(n) = self.nodes.get(&ino) {
            if n.parent == 0 && n.lookups == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    /// Number of nodes (for tests and stats).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if only the root is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::values::CTIME_SLACK;
    use std::time::Duration;

    fn file(size: u64) -> NodeAttr {
        NodeAttr {
            size,
            ..NodeAttr::dir()
        }
    }

    #[test]
    fn keys_follow_renames() {
        let mut t = InodeTable::new("pre/");
        let later = Instant::now() + Duration::from_secs(5);
        let a = t.upsert_child(ROOT_INO, "a", NodeKind::Dir, NodeAttr::dir(), later);
        let b = t.upsert_child(a, "b", NodeKind::Dir, NodeAttr::dir(), later);
        let f = t.upsert_child(b, "f.txt", NodeKind::File, file(3), later);
        assert_eq!(t.key_of(ROOT_INO).as_deref(), Some("pre/"));
        assert_eq!(t.key_of(b).as_deref(), Some("pre/a/b/"));
        assert_eq!(t.key_of(f).as_deref(), Some("pre/a/b/f.txt"));
        assert_eq!(t.move_child(ROOT_INO, "a", ROOT_INO, "z"), Some(a));
        assert_eq!(t.key_of(f).as_deref(), Some("pre/z/b/f.txt"));
        assert_eq!(t.child(ROOT_INO, "a"), None);
    }

    #[test]
    fn unlinked_nodes_live_while_looked_up() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(5);
        let f = t.upsert_child(ROOT_INO, "f", NodeKind::File, file(1), later);
        t.add_lookup(f);
        t.remove_child(ROOT_INO, "f");
        assert!(t.get(f).is_some());
        assert_eq!(t.key_of(f), None);
        t.forget(f, 1);
        assert!(t.get(f).is_none());
    }

    #[test]
    fn negative_entries_expire_and_clear_on_create() {
        let mut t = InodeTable::new("");
        let now = Instant::now();
        t.set_negative(ROOT_INO, "x", now + Duration::from_secs(1));
        assert!(t.is_negative(ROOT_INO, "x", now));
        assert!(!t.is_negative(ROOT_INO, "x", now + Duration::from_secs(2)));
        t.upsert_child(ROOT_INO, "x", NodeKind::File, file(0), now);
        assert!(!t.is_negative(ROOT_INO, "x", now));
    }

    #[test]
    fn only_the_mounts_own_removals_answer_lookups() {
        let mut t = InodeTable::new("");
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        t.set_absent(ROOT_INO, "asked", later);
        assert!(!t.is_negative(ROOT_INO, "asked", now), "lookups ask again");
        assert!(t.known_absent(ROOT_INO, "asked", now), "a create need not");
        assert_eq!(t.negative_until(ROOT_INO, "asked"), None);
        t.set_negative(ROOT_INO, "removed", later);
        assert!(t.is_negative(ROOT_INO, "removed", now));
        assert!(t.known_absent(ROOT_INO, "removed", now));
        // A later 404 does not turn the removal into a mere answer.
        t.set_absent(ROOT_INO, "removed", later);
        assert!(t.is_negative(ROOT_INO, "removed", now));
        // A removal after a 404 is a removal.
        t.set_negative(ROOT_INO, "asked", later);
        assert!(t.is_negative(ROOT_INO, "asked", now));
        assert!(!t.known_absent(ROOT_INO, "asked", later));
    }

    #[test]
    fn kind_change_resets_dir_state() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(5);
        let x = t.upsert_child(ROOT_INO, "x", NodeKind::File, file(1), later);
        let y = t.upsert_child(ROOT_INO, "x", NodeKind::Dir, NodeAttr::dir(), later);
        assert_eq!(x, y);
        assert_eq!(t.get(x).map(|n| n.kind()), Some(NodeKind::Dir));
        assert_eq!(t.key_of(x).as_deref(), Some("x/"));
    }

    fn meta(etag: &str, pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            metadata: pairs.iter().copied().collect(),
            content_headers: vec![("content-type".into(), "text/plain".into())],
            etag: Some(etag.into()),
        }
    }

    #[test]
    fn a_recorded_head_is_kept_until_it_expires_and_sets_what_it_carries() {
        let mut t = InodeTable::new("");
        let now = Instant::now();
        let f = t.upsert_child(ROOT_INO, "f", NodeKind::File, file(1), now);
        let mtime = std::time::UNIX_EPOCH + Duration::from_secs(7);
        t.set_version(f, 9, Some("e1".into()), Some(mtime));
        let attrs = AttrUpdate {
            mode: Some(0o100600),
            uid: Some(5),
            ..AttrUpdate::default()
        };
        let until = now + Duration::from_secs(5);
        t.record_meta(f, meta("e1", &[("uid", "5")]), &attrs, until);
        let n = t.get(f).unwrap();
        assert_eq!(n.attr().size, 9);
        assert_eq!(n.attr().etag.as_deref(), Some("e1"));
        assert_eq!(
            n.attr().mode,
            Some(0o600),
            "only the permission bits are kept"
        );
        assert_eq!((n.attr().uid, n.attr().gid), (Some(5), None));
        assert_eq!(n.attr().mtime, mtime, "not in the update: kept");
        assert!(n.fresh_meta(now).is_some());
        assert!(n.fresh_meta(until).is_none());
        // A version without an mtime keeps the one known.
        t.set_version(f, 10, None, None);
        assert_eq!(t.get(f).unwrap().attr().mtime, mtime);
        // Unknown inodes are ignored.
        t.record_meta(999, ObjectMeta::default(), &attrs, until);
        t.set_version(999, 1, None, None);
        assert!(t.get(999).is_none());
    }

    #[test]
    fn expiring_forgets_attributes_and_metadata_and_a_refresh_is_newer_than_before() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(60);
        let f = t.upsert_child(ROOT_INO, "f", NodeKind::File, file(1), later);
        t.record_meta(f, meta("e", &[]), &AttrUpdate::default(), later);
        t.expire_attr(f);
        let now = Instant::now();
        assert!(!t.get(f).unwrap().attr_fresh(now));
        assert!(t.get(f).unwrap().fresh_meta(now).is_some(), "metadata kept");
        t.expire(f);
        assert!(t.get(f).unwrap().meta().is_none());
        let before = Instant::now();
        t.refresh_attr(f, later);
        let n = t.get(f).unwrap();
        assert!(n.attr_fresh(Instant::now()));
        assert!(n.attr_set() >= before);
    }

    #[test]
    fn a_copy_is_followed_only_from_the_version_it_copied() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(60);
        let a = t.upsert_child(ROOT_INO, "a", NodeKind::File, file(1), later);
        t.set_version(a, 1, Some("old".into()), None);
        t.record_meta(a, meta("old", &[]), &AttrUpdate::default(), later);
        t.follow_copy(a, Some("old"), Some("new".into()));
        let n = t.get(a).unwrap();
        assert_eq!(n.attr().etag.as_deref(), Some("new"));
        assert_eq!(n.meta().and_then(|m| m.etag.as_deref()), Some("new"));
        assert!(n.attr_fresh(Instant::now()));
        // Changed meanwhile: looked at again, not pointed at the copy.
        t.follow_copy(a, Some("old"), Some("newer".into()));
        let n = t.get(a).unwrap();
        assert_eq!(n.attr().etag.as_deref(), Some("new"));
        assert!(!n.attr_fresh(Instant::now()));
        assert!(n.meta().is_none());
        // Nothing known: looked at again too.
        let b = t.upsert_child(ROOT_INO, "b", NodeKind::File, file(1), later);
        t.follow_copy(b, None, Some("x".into()));
        assert!(!t.get(b).unwrap().attr_fresh(Instant::now()));
    }

    #[test]
    fn a_followed_copy_is_newer_than_anything_asked_for_before_it() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(60);
        let a = t.upsert_child(ROOT_INO, "a", NodeKind::File, file(1), later);
        t.set_version(a, 1, Some("old".into()), None);
        // A listing or HEAD asked for now, answered after the copy (the pause makes "after"
        // strict: instants may compare equal).
        let asked = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        t.follow_etag(a, Some("self-copy".into()));
        assert!(t.get(a).unwrap().attr_set() > asked);
        let asked = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        t.follow_copy(a, Some("self-copy"), Some("renamed".into()));
        let n = t.get(a).unwrap();
        assert_eq!(n.attr().etag.as_deref(), Some("renamed"));
        assert!(n.attr_set() > asked);
    }

    fn head(etag: &str, asked: Instant) -> HeadReply {
        HeadReply {
            asked,
            size: 4,
            etag: Some(etag.into()),
            last_modified: Some(std::time::UNIX_EPOCH + Duration::from_secs(3)),
            meta: meta(etag, &[("mode", "33184")]),
            attrs: AttrUpdate {
                mode: Some(0o640),
                ..AttrUpdate::default()
            },
        }
    }

    /// The file `f`, as a HEAD sent now saw it with ETag `etag`.
    fn file_from_head(t: &mut InodeTable, etag: &str, until: Instant) -> u64 {
        let reply = head(etag, Instant::now());
        t.record_head(ROOT_INO, "f", NodeKind::File, &reply, until)
    }

    #[test]
    fn a_head_reply_is_recorded_with_what_it_says() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(60);
        let f = file_from_head(&mut t, "e1", later);
        assert_eq!(t.child(ROOT_INO, "f"), Some(f));
        let n = t.get(f).unwrap();
        assert_eq!(n.attr().size, 4);
        assert_eq!(n.attr().etag.as_deref(), Some("e1"));
        assert_eq!(n.attr().mode, Some(0o640));
        assert_eq!(
            n.attr().mtime,
            std::time::UNIX_EPOCH + Duration::from_secs(3)
        );
        assert_eq!(
            n.fresh_meta(Instant::now()).and_then(|m| m.etag.as_deref()),
            Some("e1")
        );
        assert!(n.attr_fresh(Instant::now()));
        // By inode, a later HEAD of a changed object: the new version and metadata.
        std::thread::sleep(Duration::from_millis(1));
        assert!(t.record_head_of(f, &head("e2", Instant::now()), later));
        let n = t.get(f).unwrap();
        assert_eq!(n.attr().etag.as_deref(), Some("e2"));
        assert_eq!(n.meta().and_then(|m| m.etag.as_deref()), Some("e2"));
        assert!(!t.record_head_of(999, &head("e3", Instant::now()), later));
    }

    #[test]
    fn a_head_reply_never_undoes_what_the_mount_learnt_after_sending_it() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(60);
        let f = file_from_head(&mut t, "old", later);
        // HEADs sent now, answered after the mount's own copy (the pause makes "after" strict:
        // instants may compare equal).
        let asked = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        t.follow_etag(f, Some("copied".into()));
        assert_eq!(
            t.learnt_since(ROOT_INO, "f", asked).map(|n| n.ino()),
            Some(f)
        );
        let late = head("old", asked);
        assert_eq!(
            t.record_head(ROOT_INO, "f", NodeKind::File, &late, later),
            f
        );
        assert!(!t.record_head_of(f, &late, later));
        let n = t.get(f).unwrap();
        assert_eq!(n.attr().etag.as_deref(), Some("copied"));
        assert_eq!(n.meta().and_then(|m| m.etag.as_deref()), Some("copied"));
        // An upload (a new version) is newer too.
        let asked = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        t.set_version(f, 9, Some("uploaded".into()), None);
        assert!(!t.record_head_of(f, &head("copied", asked), later));
        assert_eq!(t.get(f).unwrap().attr().etag.as_deref(), Some("uploaded"));
        // A HEAD sent after the change is recorded.
        std::thread::sleep(Duration::from_millis(1));
        let fresh = head("other client's", Instant::now());
        assert_eq!(
            t.learnt_since(ROOT_INO, "f", fresh.asked).map(|n| n.ino()),
            None
        );
        t.record_head(ROOT_INO, "f", NodeKind::File, &fresh, later);
        assert_eq!(
            t.get(f).unwrap().attr().etag.as_deref(),
            Some("other client's")
        );
        // A directory's HEAD is of its marker: it exists and carries the metadata, whatever
        // a listing set meanwhile (directories have no version to put back).
        let d = t.upsert_child(ROOT_INO, "d", NodeKind::Dir, NodeAttr::dir(), later);
        assert!(t.learnt_since(ROOT_INO, "d", asked).is_none());
        assert!(t.record_head_of(d, &head("marker", asked), later));
        let n = t.get(d).unwrap();
        assert!(n.has_marker());
        assert_eq!(n.attr().mode, Some(0o640));
        assert_eq!(n.attr().etag, None, "a directory has no version");
    }

    #[test]
    fn attribute_changes_set_only_what_they_name() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(60);
        let f = t.upsert_child(ROOT_INO, "f", NodeKind::File, file(3), later);
        let before = t.get(f).unwrap().attr().clone();
        t.apply_attrs(f, &AttrUpdate::default());
        assert_eq!(t.get(f).unwrap().attr(), &before);
        assert!(AttrUpdate::default().is_empty());
        let mtime = std::time::UNIX_EPOCH + Duration::from_secs(99);
        let change = AttrUpdate {
            mode: Some(0o4755),
            gid: Some(8),
            mtime: Some(mtime),
            ..AttrUpdate::default()
        };
        assert!(!change.is_empty());
        t.apply_attrs(f, &change);
        let a = t.get(f).unwrap().attr();
        assert_eq!(
            (a.mode, a.uid, a.gid, a.mtime),
            (Some(0o4755), None, Some(8), mtime)
        );
        assert_eq!(a.size, 3);
    }

    #[test]
    fn markers_and_complete_listings_of_directories() {
        let mut t = InodeTable::new("");
        let now = Instant::now();
        let d = t.upsert_child(ROOT_INO, "d", NodeKind::Dir, NodeAttr::dir(), now);
        assert!(!t.get(d).unwrap().has_marker());
        t.set_marker(d, true);
        assert!(t.get(d).unwrap().has_marker());
        t.set_marker(d, false);
        assert!(!t.get(d).unwrap().has_marker());
        let until = now + Duration::from_secs(5);
        t.set_negative(d, "gone", until);
        assert_eq!(t.negative_until(d, "gone"), Some(until));
        assert_eq!(t.negative_until(d, "other"), None);
        assert!(!t.get(d).unwrap().listing_fresh(now));
        t.listing_complete(d, until, false);
        let n = t.get(d).unwrap();
        assert!(n.listing_fresh(now) && !n.listing_fresh(until));
        assert_eq!(n.listing_expires(), Some(until));
        assert_eq!(
            t.negative_until(d, "gone"),
            None,
            "the listing says what is there"
        );
    }

    #[test]
    fn times_move_in_memory_and_an_explicit_set_replaces_them() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(60);
        let t0 = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
        let f = t.upsert_child(ROOT_INO, "f", NodeKind::File, file(1), later);
        t.apply_attrs(
            f,
            &AttrUpdate {
                mtime: Some(t0),
                ..AttrUpdate::default()
            },
        );
        // Without atime or ctime of its own, a node shows its mtime.
        let times = t.get(f).unwrap().times();
        assert_eq!((times.atime, times.mtime, times.ctime), (t0, t0, t0));
        // relatime: an atime not after the mtime moves with a read...
        let t1 = t0 + Duration::from_secs(10);
        assert!(t.accessed(f, t1));
        assert_eq!(t.get(f).unwrap().times().atime, t1);
        // ... then not again while it is later than mtime and ctime and younger than a day,
        assert!(!t.accessed(f, t1 + Duration::from_secs(5)));
        // ... but once a day,
        let t2 = t1 + RELATIME_MAX_AGE;
        assert!(t.accessed(f, t2));
        // ... and after a change.
        t.changed(f, t2 + Duration::from_secs(1));
        assert_eq!(t.get(f).unwrap().times().ctime, t2 + Duration::from_secs(1));
        assert!(t.accessed(f, t2 + Duration::from_secs(2)));
        // An explicit atime replaces what reads moved, even backwards.
        t.apply_attrs(
            f,
            &AttrUpdate {
                atime: Some(t0),
                ..AttrUpdate::default()
            },
        );
        assert_eq!(t.get(f).unwrap().times().atime, t0);
        // A write moves mtime and ctime.
        let t3 = t2 + Duration::from_secs(9);
        t.modified(f, t3);
        let times = t.get(f).unwrap().times();
        assert_eq!((times.mtime, times.ctime), (t3, t3));
    }

    #[test]
    fn a_directory_moved_in_memory_keeps_it_over_a_refresh_until_set_explicitly() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(60);
        let d = t.upsert_child(ROOT_INO, "d", NodeKind::Dir, NodeAttr::dir(), later);
        let now = SystemTime::now() + Duration::from_secs(100);
        t.entries_changed(d, now);
        // A listing or lookup records the directory again (its marker's times, or none).
        t.upsert_child(ROOT_INO, "d", NodeKind::Dir, NodeAttr::dir(), later);
        let times = t.get(d).unwrap().times();
        assert_eq!((times.mtime, times.ctime), (now, now));
        let set = std::time::UNIX_EPOCH + Duration::from_secs(5);
        t.apply_attrs(
            d,
            &AttrUpdate {
                mtime: Some(set),
                ..AttrUpdate::default()
            },
        );
        assert_eq!(t.get(d).unwrap().times().mtime, set);
    }

    #[test]
    fn a_head_reply_ctime_is_its_stamp_unless_a_later_copy_kept_old_metadata() {
        let mut reply = head("e", Instant::now());
        let lm = reply.last_modified.unwrap();
        assert_eq!(reply.ctime(), Some(lm), "no stamp: Last-Modified");
        reply.attrs.ctime = Some(lm + Duration::from_millis(300));
        assert_eq!(
            reply.ctime(),
            reply.attrs.ctime,
            "rounded down by the server"
        );
        let stamp = lm - Duration::from_millis(700);
        reply.attrs.ctime = Some(stamp);
        assert_eq!(
            reply.ctime(),
            Some(stamp),
            "the same write, ending in the next second: stable across refreshes"
        );
        reply.attrs.ctime = Some(lm - CTIME_SLACK - Duration::from_secs(1));
        assert_eq!(reply.ctime(), Some(lm), "copied with old metadata later");
    }

    #[test]
    fn subdirectories_and_unlinked_nodes() {
        let mut t = InodeTable::new("");
        let later = Instant::now() + Duration::from_secs(60);
        let d = t.upsert_child(ROOT_INO, "d", NodeKind::Dir, NodeAttr::dir(), later);
        t.upsert_child(d, "a", NodeKind::Dir, NodeAttr::dir(), later);
        t.upsert_child(d, "b", NodeKind::Dir, NodeAttr::dir(), later);
        let f = t.upsert_child(d, "f", NodeKind::File, file(1), later);
        assert_eq!(t.get(d).unwrap().subdirs_known(&t), 2);
        t.add_lookup(f);
        assert!(!t.get(f).unwrap().is_unlinked());
        t.remove_child(d, "f");
        assert!(t.get(f).unwrap().is_unlinked());
        t.set_foreign_marker(d, Some(ForeignMarker::Folder));
        assert_eq!(
            t.get(d).unwrap().foreign_marker(),
            Some(ForeignMarker::Folder)
        );
        assert_eq!(ForeignMarker::Folder.key("x/d/"), "x/d_$folder$");
        assert_eq!(ForeignMarker::Plain.key("x/d/"), "x/d");
    }

    #[test]
    fn node_kinds_and_their_mode_bits() {
        for k in [
            NodeKind::File,
            NodeKind::Dir,
            NodeKind::Symlink,
            NodeKind::Fifo,
            NodeKind::Socket,
            NodeKind::CharDevice { rdev: 259 },
            NodeKind::BlockDevice { rdev: 1801 },
        ] {
            assert_eq!(
                NodeKind::from_mode(k.type_bits() | 0o644, k.rdev()),
                Some(k)
            );
        }
        assert_eq!(NodeKind::from_mode(0o644, 0), None, "no type bits");
        assert_eq!(NodeKind::CharDevice { rdev: 5 }.rdev(), 5);
        assert_eq!(NodeKind::Fifo.rdev(), 0);
        assert!(NodeKind::Socket.is_special() && !NodeKind::Symlink.is_special());
    }

    #[test]
    fn fuzz_keys_of_nodes_are_their_paths() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let count = std::cell::Cell::new(0u64);
        let name = "[a-zA-Z0-9 é._-]{1,6}";
        // Operations: (parent index, name, is_dir) creations, then (from, to-parent, name)
        // moves; indices pick among nodes made so far.
        let ops = (
            proptest::collection::vec((any::<usize>(), name, any::<bool>()), 1..25),
            proptest::collection::vec((any::<usize>(), any::<usize>(), name), 0..10),
            prop_oneof![Just(String::new()), Just("pre/".to_string())],
        );
        let mut runner = TestRunner::new(Config {
            cases: 500,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&ops, |(creates, moves, prefix)| {
                count.set(count.get() + 1);
                let later = Instant::now() + Duration::from_secs(60);
                let mut t = InodeTable::new(&prefix);
                // Model: ino → (parent ino, name, is_dir).
                let mut model: HashMap<u64, (u64, String, bool)> = HashMap::new();
                let mut dirs = vec![ROOT_INO];
                for (p, n, is_dir) in creates {
                    let parent = dirs[p % dirs.len()];
                    let kind = if is_dir {
                        NodeKind::Dir
                    } else {
                        NodeKind::File
                    };
                    if t.child(parent, &n).is_some() {
                        continue;
                    }
                    let ino = t.upsert_child(parent, &n, kind, file(0), later);
                    model.insert(ino, (parent, n, is_dir));
                    if is_dir {
                        dirs.push(ino);
                    }
                }
                let path = |model: &HashMap<u64, (u64, String, bool)>, mut ino: u64| {
                    let mut parts = Vec::new();
                    let dir = model.get(&ino).is_some_and(|m| m.2);
                    while ino != ROOT_INO {
                        let (p, n, _) = &model[&ino];
                        parts.push(n.clone());
                        ino = *p;
                    }
                    parts.reverse();
                    format!("{prefix}{}{}", parts.join("/"), if dir { "/" } else { "" })
                };
                for (from, to, n) in moves {
                    let inos: Vec<u64> = model.keys().copied().collect();
                    let Some(&ino) = inos.get(from % inos.len().max(1)) else {
                        continue;
                    };
                    let new_parent = dirs[to % dirs.len()];
                    // Not into itself or below, not onto an existing name.
                    let mut up = new_parent;
                    let mut inside = false;
                    while up != ROOT_INO {
                        if up == ino {
                            inside = true;
                        }
                        up = model.get(&up).map_or(ROOT_INO, |m| m.0);
                    }
                    if inside || t.child(new_parent, &n).is_some() {
                        continue;
                    }
                    let (old_parent, old_name, is_dir) = model[&ino].clone();
                    prop_assert_eq!(
                        t.move_child(old_parent, &old_name, new_parent, &n),
                        Some(ino)
                    );
                    model.insert(ino, (new_parent, n, is_dir));
                }
                for &ino in model.keys() {
                    prop_assert_eq!(t.key_of(ino), Some(path(&model, ino)));
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "inode table keys: {} operation sequences fuzzed",
            count.get()
        );
    }
}
