//! Lookups: what a name in a directory is.
//!
//! A lookup of a name the mount holds answers from the inode table or a fresh listing of the
//! parent; a name it does not hold is asked of the server — `HEAD key` and `LIST prefix=key/
//! max-keys=1` in parallel, a directory shadowing a file of the same name — even when a fresh
//! listing lacks it, so an object another client has just created is found by name at once (S3
//! is strongly consistent for new objects; only listings lag, by the metadata TTL). A name
//! that is probably new — the mount has known a complete listing of the parent, and the name
//! was not in it — is first asked with one `LIST prefix=key delimiter=/` (no slash: one page
//! shows both a file `key` and a directory `key/`); only if that shows either does the full
//! lookup follow. A create thus costs one request before its `PUT`. Only the
//! mount's own removals (unlink, rmdir, a rename's source) answer ENOENT without asking, for
//! the negative TTL. A 404 is remembered for the create that follows the kernel's lookup
//! (`lookup_to_create`), not for other lookups. A key over S3's 1024 bytes is ENAMETOOLONG at
//! once on a server known to refuse it, and asked with a HEAD elsewhere, whose refusal teaches
//! that the server does (moto and Garage keep such keys).

use std::time::Instant;

use super::attr::{marker_attrs, metadata_attrs, metadata_kind, FileAttrs};
use super::dir::is_foreign_dir;
use super::error::{FsError, FsResult};
use super::names::{name_str, too_long, valid_component, MAX_KEY_BYTES, NAME_MAX};
use super::S3Fs;
use crate::cache::inode::{
    start_time, AttrUpdate, ForeignMarker, HeadReply, NodeAttr, NodeKind, ObjectMeta,
};
use crate::s3::{ListRequest, ObjectInfo, StorageError};

impl S3Fs {
    /// Find `name` in `parent`. A name longer than the mount gives (an object another client
    /// named so) that is not there is ENAMETOOLONG, as on a disk, not ENOENT.
    pub fn lookup(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<FileAttrs> {
        let found = self.lookup_name(parent, name);
        match found {
            Err(e) if e.errno == libc::ENOENT && name.len() > NAME_MAX => {
                Err(too_long(&name.to_string_lossy(), NAME_MAX))
            }
            other => other,
        }
    }

    fn lookup_name(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<FileAttrs> {
        let name = name_str(name)?;
        if !valid_component(name) {
            return Err(FsError::not_found(format!("{name:?} is not a valid name")));
        }
        // A path S3 cannot hold is ENAMETOOLONG on every call; the name of a file unlinked
        // while open is gone even if its object is kept (see `unlinked`).
        let key = format!("{}{name}", self.key_of(parent)?);
        self.check_key_len(&key)?;
        if self.kept.is_hidden(&key) {
            return Err(FsError::not_found(format!("{key}: unlinked")));
        }
        let now = Instant::now();
        let deferred = {
            let t = self.table();
            let p = t
                .get(parent)
                .ok_or_else(|| FsError::not_found(format!("parent inode {parent} unknown")))?;
            if p.kind() != NodeKind::Dir {
                return Err(FsError::new(libc::ENOTDIR, "parent is not a directory"));
            }
            match p.children().get(name).copied() {
                Some(ino) => {
                    let trusted = t
                        .get(ino)
                        .is_some_and(|n| n.attr_fresh(now) || p.listing_fresh(now));
                    let deferred = self.metadata_deferred(&t, ino);
                    if trusted && !deferred {
                        return self.attrs_in(&t, ino);
                    }
                    deferred.then_some(ino)
                }
                None if t.is_negative(parent, name, now) => {
                    return Err(FsError::not_found(format!("{name}: removed by this mount")));
                }
                None => None,
            }
        };
        // Metadata a listing left for the first lookup: HEADed with its siblings' (which, once
        // the listing expired, also tells the file is still there); asked as below if that
        // could not be done (the HEAD failed, the file is gone).
        if let Some(ino) = deferred {
            self.complete_deferred(ino);
            if !self.table().get(ino).is_some_and(|n| n.metadata_unknown()) {
                return self.attrs_of(ino);
            }
        }
        let known = self.table().child(parent, name);
        if let Some(ino) = known {
            if let Some(a) = self.open_file_attrs(ino) {
                return Ok(a);
            }
        }
        self.revalidate(parent, name)
    }

    /// `lookup` for a call that makes `name` in `parent` (create, mkdir, symlink): the kernel
    /// looked the name up just before, and a name the server said absent since (within the
    /// negative TTL) is taken as absent without asking again.
    pub(crate) fn lookup_to_create(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
    ) -> FsResult<FileAttrs> {
        if let Some(n) = name.to_str() {
            let t = self.table();
            if t.child(parent, n).is_none() && t.known_absent(parent, n, Instant::now()) {
                return Err(FsError::not_found(format!("{n}: absent")));
            }
        }
        self.lookup(parent, name)
    }

    /// Ask the server what `name` in `parent` is now, and record it.
    pub(crate) fn revalidate(&self, parent: u64, name: &str) -> FsResult<FileAttrs> {
        let parent_key = self.key_of(parent)?;
        let key = format!("{parent_key}{name}");
        let dir_prefix = format!("{key}/");
        let asked = Instant::now();
        // A key longer than S3 keeps, on a server not known to refuse it: asked with a HEAD,
        // whose refusal (a bare 400) says so, rather than a listing, which would not.
        let long = key.len() > MAX_KEY_BYTES;
        if !long && self.probably_new(parent, name) && self.absent_by_listing(&key)? {
            return self.absent(parent, name, &key, asked);
        }
        let (head, list) = std::thread::scope(|s| {
            let list = s.spawn(|| {
                self.bucket.list_page(&ListRequest {
                    prefix: dir_prefix.clone(),
                    // With a delimiter the server need only look one level down: one
                    // key or common prefix proves a directory (and servers that keep
                    // keys as files answer it without walking the whole subtree).
                    delimiter: Some("/".into()),
                    max_keys: Some(1),
                    ..Default::default()
                })
            });
            let head = self.bucket.head(&key);
            let list = list
                .join()
                .unwrap_or_else(|_| Err(StorageError::invalid("listing", "worker panicked")));
            (head, list)
        });
        let list = list?;
        let mut is_dir = !list.objects.is_empty() || !list.common_prefixes.is_empty();
        let mut marker_found = None;
        // A zero-byte `name` marked as a directory (old s3fs): the directory's marker.
        let foreign_plain = head.as_ref().is_ok_and(is_foreign_dir);
        if !is_dir && self.known_dir(parent, name) {
            // A directory we know, now empty: some servers leave `dir/` markers out of
            // listings, so ask for the marker itself before deciding the directory is gone
            // (or for the `name_$folder$` another tool marked it with).
            if let Ok(info) = self.bucket.head(&dir_prefix) {
                is_dir = true;
                marker_found = Some(info);
            } else if self.foreign_marker_of(parent, name) == Some(ForeignMarker::Folder) {
                is_dir = self
                    .bucket
                    .head(&ForeignMarker::Folder.key(&dir_prefix))
                    .is_ok();
            }
        }
        let expires = self.expiry();
        if is_dir {
            if head.is_ok() && !foreign_plain {
                self.warn_once(format!(
                    "s3://{}/{key} is both a file and a directory; showing the directory",
                    self.bucket.name()
                ));
            }
            let has_marker =
                marker_found.is_some() || list.objects.first().is_some_and(|o| o.key == dir_prefix);
            // The marker carries the directory's mode/owner/mtime and xattrs (the listing
            // does not): HEAD it, or a remount (or a TTL expiry) would reset them to defaults.
            let marker = if marker_found.is_some() {
                marker_found
            } else if has_marker {
                match self.bucket.head(&dir_prefix) {
                    Ok(info) => Some(info),
                    Err(e) => {
                        log::debug!("{dir_prefix}: HEAD of the marker failed: {e}");
                        None
                    }
                }
            } else if foreign_plain {
                // Old s3fs kept them on its `name` object, whose HEAD is in hand (s3fs 1.90
                // still shows them).
                head.as_ref().ok().cloned()
            } else {
                None
            };
            let mut t = self.table();
            let ino = t.upsert_child(parent, name, NodeKind::Dir, NodeAttr::dir(), expires);
            t.set_marker(ino, has_marker);
            if foreign_plain {
                t.set_foreign_marker(ino, Some(ForeignMarker::Plain));
            }
            if let Some(info) = marker {
                let attrs = marker_attrs(&info);
                t.record_meta(ino, ObjectMeta::from(&info), &attrs, expires);
            }
            // No mtime of its own: the date of its first key.
            let first = list.objects.first().and_then(|o| o.last_modified);
            if t.get(ino).is_some_and(|n| n.attr().mtime == start_time()) && first.is_some() {
                let mtime = AttrUpdate {
                    mtime: first,
                    ..AttrUpdate::default()
                };
                t.apply_attrs(ino, &mtime);
            }
            drop(t);
            return self.attrs_of(ino);
        }
        match head {
            Ok(info) => self.record_object(parent, name, &info, asked),
            Err(e) if e.is_not_found() => self.absent(parent, name, &key, asked),
            Err(e) => Err(e.into()),
        }
    }

    /// True if `name` is probably not in `parent`: the mount has known a complete listing of
    /// `parent` (listed, or made by the mount) and `name` is not among its entries. A hint
    /// only, for which question to ask the server first ([`S3Fs::absent_by_listing`]).
    fn probably_new(&self, parent: u64, name: &str) -> bool {
        let t = self.table();
        t.child(parent, name).is_none()
            && t.get(parent).is_some_and(|p| p.listing_expires().is_some())
    }

    /// One `LIST prefix=key delimiter=/` — the prefix without its slash, so that the one
    /// listing shows both the object `key` and the directory `key/` — for a name that is
    /// probably new: true if the server has neither (one request, where `HEAD` and `LIST
    /// prefix=key/` are two). False if it has either, or if the page stops before where `key/`
    /// sorts (siblings such as `key.txt` come first): the full lookup then asks.
    fn absent_by_listing(&self, key: &str) -> FsResult<bool> {
        let page = self.bucket.list_page(&ListRequest {
            prefix: key.to_string(),
            delimiter: Some("/".into()),
            ..Default::default()
        })?;
        let dir = format!("{key}/");
        let found = page
            .objects
            .iter()
            .any(|o| o.key == key || o.key.starts_with(&dir))
            || page.common_prefixes.contains(&dir);
        if found {
            return Ok(false);
        }
        if !page.is_truncated {
            return Ok(true);
        }
        let last = page
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .chain(page.common_prefixes.iter().map(String::as_str))
            .max();
        Ok(last.is_some_and(|l| l > dir.as_str()))
    }

    /// The server has no `name` in `parent` (asked at `asked`): ENOENT, remembered for the
    /// create that follows — unless the mount learnt of it since, or holds it open.
    fn absent(&self, parent: u64, name: &str, key: &str, asked: Instant) -> FsResult<FileAttrs> {
        let mut t = self.table();
        if let Some(n) = t.learnt_since(parent, name, asked) {
            // Known since the request was sent (created by this mount, or a later reply): this
            // "absent" is older news.
            let ino = n.ino();
            return self.attrs_in(&t, ino);
        }
        if let Some(ino) = t.child(parent, name) {
            // Keep a file that is open and not yet uploaded.
            if self.open_files.is_open(ino) {
                drop(t);
                return self
                    .open_file_attrs(ino)
                    .ok_or_else(|| FsError::not_found(key.to_string()));
            }
            t.remove_child(parent, name);
        }
        t.set_absent(parent, name, Instant::now() + self.opts.negative_ttl);
        Err(FsError::not_found(format!("{key}: no such key")))
    }

    /// Record the result of a HEAD of `parent/name` sent at `asked` — unless the mount learnt
    /// something newer about the name since (an upload, a copy, a rename, a later HEAD): then
    /// the attributes it has are the answer (see [`crate::cache::inode::InodeTable::record_head`]).
    pub(crate) fn record_object(
        &self,
        parent: u64,
        name: &str,
        info: &ObjectInfo,
        asked: Instant,
    ) -> FsResult<FileAttrs> {
        let foreign_dir = is_foreign_dir(info);
        let kind = match metadata_kind(&info.metadata) {
            _ if foreign_dir => NodeKind::Dir,
            Some(NodeKind::Dir) | None => NodeKind::File,
            Some(k) => k,
        };
        let reply = HeadReply::new(info, metadata_attrs(&info.metadata), asked);
        let expires = self.expiry();
        let mut t = self.table();
        let ino = t.record_head(parent, name, kind, &reply, expires);
        if foreign_dir {
            t.set_foreign_marker(ino, Some(ForeignMarker::Plain));
        }
        self.attrs_in(&t, ino)
    }
}
