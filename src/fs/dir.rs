//! Names and directories: lookup, mkdir, rmdir, unlink, symlink, readlink.
//!
//! A directory is a key prefix ending in `/`: explicit when a zero-byte marker object `dir/`
//! exists, implicit when only keys below it do. A lookup answers from a fresh listing of the
//! parent when there is one; otherwise it sends `HEAD key` and `LIST prefix=key/ max-keys=1` in
//! parallel, and a directory shadows a file of the same name. Misses are remembered for the
//! negative TTL.
//!
//! Keys that cannot be file names (an empty component from `//`, `.`, `..`, more than 255
//! bytes) are hidden from listings and logged once.

use std::time::{Instant, SystemTime};

use super::attr::{format_mtime, metadata_attrs, metadata_kind, FileAttrs, S_IFDIR, S_IFLNK};
use super::error::{FsError, FsResult};
use super::names::{name_str, valid_component};
use super::S3Fs;
use crate::cache::inode::{
    start_time, AttrUpdate, HeadReply, NodeAttr, NodeKind, ObjectMeta, ROOT_INO,
};
use crate::s3::{ListRequest, Metadata, ObjectInfo, PutOptions, RequestBody, StorageError};

/// Longest symlink target we read back.
const MAX_SYMLINK_TARGET: u64 = 4096;

/// One directory entry.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Inode.
    pub ino: u64,
    /// Name.
    pub name: String,
    /// Attributes (from the listing).
    pub attrs: FileAttrs,
}

impl S3Fs {
    /// Find `name` in `parent`.
    pub fn lookup(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<FileAttrs> {
        let name = name_str(name)?;
        if !valid_component(name) {
            return Err(FsError::not_found(format!("{name:?} is not a valid name")));
        }
        let now = Instant::now();
        {
            let t = self.table();
            let p = t
                .get(parent)
                .ok_or_else(|| FsError::not_found(format!("parent inode {parent} unknown")))?;
            if p.kind() != NodeKind::Dir {
                return Err(FsError::new(libc::ENOTDIR, "parent is not a directory"));
            }
            if let Some(ino) = p.children().get(name).copied() {
                if let Some(n) = t.get(ino) {
                    if n.attr_fresh(now) || p.listing_fresh(now) {
                        return Ok(self.to_attrs(ino, n.kind(), n.attr()));
                    }
                }
            } else if p.listing_fresh(now) || t.is_negative(parent, name, now) {
                return Err(FsError::not_found(format!("{name}: no such key")));
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

    /// Ask the server what `name` in `parent` is now, and record it.
    pub(crate) fn revalidate(&self, parent: u64, name: &str) -> FsResult<FileAttrs> {
        let parent_key = self.key_of(parent)?;
        let key = format!("{parent_key}{name}");
        let dir_prefix = format!("{key}/");
        let asked = Instant::now();
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
        if !is_dir && self.known_dir(parent, name) {
            // A directory we know, now empty: some servers leave `dir/` markers out of
            // listings, so ask for the marker itself before deciding the directory is gone.
            if let Ok(info) = self.bucket.head(&dir_prefix) {
                is_dir = true;
                marker_found = Some(info);
            }
        }
        let expires = self.expiry();
        if is_dir {
            if head.is_ok() {
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
            } else {
                None
            };
            let mut t = self.table();
            let ino = t.upsert_child(parent, name, NodeKind::Dir, NodeAttr::dir(), expires);
            t.set_marker(ino, has_marker);
            if let Some(info) = marker {
                let attrs = metadata_attrs(&info.metadata);
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
            Ok(info) => Ok(self.record_object(parent, name, &info, asked)),
            Err(e) if e.is_not_found() => {
                let mut t = self.table();
                if let Some(n) = t.learnt_since(parent, name, asked) {
                    // Known since the HEAD was sent (created by this mount, or a later reply):
                    // this 404 is older news.
                    return Ok(self.to_attrs(n.ino(), n.kind(), n.attr()));
                }
                if let Some(ino) = t.child(parent, name) {
                    // Keep a file that is open and not yet uploaded.
                    if self.open_files.is_open(ino) {
                        drop(t);
                        return self
                            .open_file_attrs(ino)
                            .ok_or_else(|| FsError::not_found(key));
                    }
                    t.remove_child(parent, name);
                }
                t.set_negative(parent, name, Instant::now() + self.opts.negative_ttl);
                Err(FsError::not_found(format!("{key}: no such key")))
            }
            Err(e) => Err(e.into()),
        }
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
    ) -> FileAttrs {
        let kind = match metadata_kind(&info.metadata) {
            Some(NodeKind::Symlink) => NodeKind::Symlink,
            _ => NodeKind::File,
        };
        let reply = HeadReply::new(info, metadata_attrs(&info.metadata), asked);
        let expires = self.expiry();
        let mut t = self.table();
        let ino = t.record_head(parent, name, kind, &reply, expires);
        match t.get(ino) {
            Some(n) => self.to_attrs(ino, n.kind(), n.attr()),
            // Never: the name was just recorded, or known.
            None => self.to_attrs(ino, kind, &NodeAttr::dir()),
        }
    }

    /// The parent inode of a directory (for `..`).
    pub fn parent_of(&self, ino: u64) -> u64 {
        self.table()
            .get(ino)
            .map(|n| n.parent())
            .filter(|p| *p != 0)
            .unwrap_or(ROOT_INO)
    }

    /// A new entry `name` in `parent`: the mount is writable, the name valid, nothing there yet.
    fn check_new_name<'a>(&self, parent: u64, name: &'a std::ffi::OsStr) -> FsResult<&'a str> {
        self.check_writable()?;
        let name = name_str(name)?;
        if !valid_component(name) {
            return Err(FsError::new(libc::EINVAL, format!("{name:?}")));
        }
        if self.lookup(parent, std::ffi::OsStr::new(name)).is_ok() {
            return Err(FsError::new(libc::EEXIST, format!("{name} exists")));
        }
        Ok(name)
    }

    /// `mkdir`: a zero-byte `name/` marker with the mode in its metadata.
    pub fn mkdir(&self, parent: u64, name: &std::ffi::OsStr, mode: u32) -> FsResult<FileAttrs> {
        let name = self.check_new_name(parent, name)?;
        let key = format!("{}{name}/", self.key_of(parent)?);
        let mut metadata = Metadata::new();
        metadata.insert("mode", ((mode & 0o7777) | S_IFDIR).to_string());
        let mtime = SystemTime::now();
        metadata.insert("mtime", format_mtime(mtime));
        self.bucket.put(
            &key,
            RequestBody::Empty,
            &PutOptions {
                metadata: metadata.clone(),
                content_headers: vec![("content-type".into(), "application/x-directory".into())],
                ..Default::default()
            },
        )?;
        let attr = NodeAttr::created(0, mtime, mode, None);
        let expires = self.expiry();
        let mut t = self.table();
        let ino = t.upsert_child(parent, name, NodeKind::Dir, attr.clone(), expires);
        t.set_marker(ino, true);
        // A new directory is known to be empty.
        t.listing_complete(ino, expires);
        Ok(self.to_attrs(ino, NodeKind::Dir, &attr))
    }

    /// `rmdir`: ENOTEMPTY unless the prefix holds nothing but its marker.
    pub fn rmdir(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let attrs = self.lookup(parent, name)?;
        let name = name_str(name)?;
        if attrs.kind != NodeKind::Dir {
            return Err(FsError::new(
                libc::ENOTDIR,
                format!("{name} is not a directory"),
            ));
        }
        let key = self.key_of(attrs.ino)?;
        let page = self.bucket.list_page(&ListRequest {
            prefix: key.clone(),
            delimiter: Some("/".into()),
            max_keys: Some(2),
            ..Default::default()
        })?;
        if page.objects.iter().any(|o| o.key != key) || !page.common_prefixes.is_empty() {
            return Err(FsError::new(libc::ENOTEMPTY, format!("{key} is not empty")));
        }
        // The marker's version, so a lost reply never lets the delete take another client's.
        let marker_etag = page
            .objects
            .iter()
            .find(|o| o.key == key)
            .and_then(|o| o.etag.clone());
        let has_local = {
            let t = self.table();
            t.get(attrs.ino)
                .is_some_and(|n| self.open_files.any_open(n.children().values()))
        };
        if has_local {
            return Err(FsError::new(
                libc::ENOTEMPTY,
                format!("{key} has open files"),
            ));
        }
        self.bucket.delete(&key, marker_etag.as_deref())?;
        let mut t = self.table();
        t.remove_child(parent, name);
        t.set_negative(parent, name, Instant::now() + self.opts.negative_ttl);
        Ok(())
    }

    /// `parent/name` is a directory in the table.
    fn known_dir(&self, parent: u64, name: &str) -> bool {
        let t = self.table();
        t.child(parent, name)
            .and_then(|c| t.get(c))
            .is_some_and(|n| n.kind() == NodeKind::Dir)
    }

    /// After the mount removed a key from `dir`: a directory without a marker would vanish
    /// from the server with its last key, so when none is known to be left, write its marker
    /// (a directory stays until `rmdir`, as on a disk).
    pub(crate) fn keep_emptied_dir(&self, dir: u64) {
        let key = {
            let t = self.table();
            match t.get(dir) {
                Some(n) if dir != ROOT_INO && !n.has_marker() && n.children().is_empty() => {
                    t.key_of(dir)
                }
                _ => None,
            }
        };
        let Some(key) = key else { return };
        // Only if there is none: an existing marker carries the directory's metadata.
        let opts = PutOptions {
            if_none_match_any: true,
            ..PutOptions::default()
        };
        match self.bucket.put(&key, RequestBody::Empty, &opts) {
            Ok(_) => {}
            Err(e) if e.is_precondition_failed() => {}
            Err(e) => {
                log::warn!("{key}: could not keep the emptied directory: {e}");
                return;
            }
        }
        self.table().set_marker(dir, true);
    }

    /// `unlink`: DeleteObject. An open file is not uploaded at close any more.
    pub fn unlink(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let attrs = self.lookup(parent, name)?;
        let name = name_str(name)?;
        if attrs.kind == NodeKind::Dir {
            return Err(FsError::new(libc::EISDIR, format!("{name} is a directory")));
        }
        let key = self.key_of(attrs.ino)?;
        // The version the mount knows: a lost reply never lets the delete take another's.
        let etag = self
            .table()
            .get(attrs.ino)
            .and_then(|n| n.attr().etag.clone());
        self.unlink_open_file(attrs.ino);
        self.bucket.delete(&key, etag.as_deref())?;
        {
            let mut t = self.table();
            t.remove_child(parent, name);
            t.set_negative(parent, name, Instant::now() + self.opts.negative_ttl);
        }
        self.keep_emptied_dir(parent);
        Ok(())
    }

    /// `symlink`, stored the s3fs way: the body is the target, the mode says S_IFLNK.
    pub fn symlink(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        target: &std::path::Path,
    ) -> FsResult<FileAttrs> {
        let name = self.check_new_name(parent, name)?;
        let target = target
            .to_str()
            .ok_or_else(|| FsError::new(libc::EINVAL, "symlink target must be UTF-8"))?;
        let key = format!("{}{name}", self.key_of(parent)?);
        let mtime = SystemTime::now();
        let mut metadata = Metadata::new();
        metadata.insert("mode", (S_IFLNK | 0o777).to_string());
        metadata.insert("mtime", format_mtime(mtime));
        let etag = self.bucket.put(
            &key,
            RequestBody::Bytes(target.as_bytes()),
            &PutOptions {
                metadata: metadata.clone(),
                ..Default::default()
            },
        )?;
        let attr = NodeAttr::created(target.len() as u64, mtime, 0o777, etag.clone());
        let expires = self.expiry();
        let mut t = self.table();
        let ino = t.upsert_child(parent, name, NodeKind::Symlink, attr.clone(), expires);
        let attrs = metadata_attrs(&metadata);
        let meta = ObjectMeta {
            metadata,
            content_headers: Vec::new(),
            etag,
        };
        t.record_meta(ino, meta, &attrs, expires);
        Ok(self.to_attrs(ino, NodeKind::Symlink, &attr))
    }

    /// `readlink`: the object's body.
    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        if self.kind_of(ino)? != NodeKind::Symlink {
            return Err(FsError::new(libc::EINVAL, "not a symlink"));
        }
        let key = self.key_of(ino)?;
        let size = self.table().get(ino).map(|n| n.attr().size).unwrap_or(0);
        if size > MAX_SYMLINK_TARGET {
            return Err(FsError::new(
                libc::ENAMETOOLONG,
                format!("{key}: symlink target too long"),
            ));
        }
        let mut buf = vec![0u8; size as usize];
        let (n, _) = self.bucket.read_range(&key, 0, &mut buf, None)?;
        buf.truncate(n);
        Ok(buf)
    }
}
