//! Names and directories: mkdir, rmdir, unlink, symlink, mknod, readlink (lookups:
//! [`super::lookup`]).
//!
//! A directory is a key prefix ending in `/`: explicit when a zero-byte marker object `dir/`
//! exists, implicit when only keys below it do.
//!
//! Keys that cannot be file names (an empty component from `//`, `.`, `..`, more than 255
//! bytes) are hidden from listings and logged once.

use std::time::{Instant, SystemTime};

use super::acl::CreateMode;
use super::attr::{
    format_mtime, metadata_attrs, metadata_kind, Caller, FileAttrs, NewOwner, S_IFDIR, S_IFMT,
};
use super::error::{FsError, FsResult};
use super::names::{name_str, new_name_str, valid_component};
use super::unlinked::Detached;
use super::S3Fs;
use crate::cache::inode::{ForeignMarker, NodeAttr, NodeKind, ObjectMeta, ROOT_INO};
use crate::s3::{ListRequest, Metadata, ObjectInfo, PutOptions, RequestBody};

/// The Content-Type of a directory marker, as s3fs writes it (and as old s3fs marks a
/// directory object without a trailing `/`).
pub const DIRECTORY_CONTENT_TYPE: &str = "application/x-directory";

/// A zero-byte object without a trailing `/` that old s3fs wrote for a directory: its
/// Content-Type is [`DIRECTORY_CONTENT_TYPE`], or its mode says S_IFDIR.
pub fn is_foreign_dir(info: &ObjectInfo) -> bool {
    let typed = info.content_headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type")
            && v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(DIRECTORY_CONTENT_TYPE))
    });
    info.size == 0 && (typed || metadata_kind(&info.metadata) == Some(NodeKind::Dir))
}

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
        let name = new_name_str(name)?;
        if !valid_component(name) {
            return Err(FsError::new(libc::EINVAL, format!("{name:?}")));
        }
        if self
            .lookup_to_create(parent, std::ffi::OsStr::new(name))
            .is_ok()
        {
            return Err(FsError::new(libc::EEXIST, format!("{name} exists")));
        }
        Ok(name)
    }

    /// `mkdir`: a zero-byte `name/` marker with the mode (and, with other users let in, the
    /// owner) in its metadata.
    pub fn mkdir(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        mode: impl Into<CreateMode>,
        caller: Option<Caller>,
    ) -> FsResult<FileAttrs> {
        let name = self.check_new_name(parent, name)?;
        let owner = self.new_entry_owner(parent, caller, NodeKind::Dir, mode.into())?;
        let mut metadata = Metadata::new();
        metadata.insert("mode", (owner.mode | S_IFDIR).to_string());
        owner.write_to(&mut metadata);
        let mtime = SystemTime::now();
        metadata.insert("mtime", format_mtime(mtime));
        let content_headers = vec![("content-type".into(), DIRECTORY_CONTENT_TYPE.into())];
        let key_of = || Ok(format!("{}{name}/", self.key_of(parent)?));
        self.write_key(key_of, |key| {
            self.check_key_len(key)?;
            let etag = self.bucket.put(
                key,
                RequestBody::Empty,
                &PutOptions {
                    metadata: metadata.clone(),
                    content_headers: content_headers.clone(),
                    ..Default::default()
                },
            )?;
            let attr = NodeAttr::created(0, mtime, owner.mode, None).owned_by(owner.ids);
            let meta = ObjectMeta {
                metadata,
                content_headers,
                etag,
            };
            self.record_new_entry(parent, name, NodeKind::Dir, attr, meta)
        })
    }

    /// A name this mount just created in `parent` (its object written): the table learns it
    /// with the metadata written, and the directory's mtime and ctime move. A new directory is
    /// known to be empty, and to have its marker.
    fn record_new_entry(
        &self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        attr: NodeAttr,
        meta: ObjectMeta,
    ) -> FsResult<FileAttrs> {
        let expires = self.expiry();
        let mtime = attr.mtime;
        let mut t = self.table();
        let ino = t.upsert_child(parent, name, kind, attr, expires);
        let attrs = metadata_attrs(&meta.metadata);
        t.record_meta(ino, meta, &attrs, expires);
        if kind == NodeKind::Dir {
            t.set_marker(ino, true);
            t.listing_complete(ino, expires, false);
        }
        t.entries_changed(parent, mtime);
        self.attrs_in(&t, ino)
    }

    /// The attributes of `parent/name` for a call that removes it (unlink, rmdir): the kernel
    /// resolved the name just before, and the removal's own request goes to the server anyway,
    /// so a child the table holds is taken as it is (no HEAD per file of an `rm -r` whose
    /// listing has expired); a name it does not hold is looked up.
    fn resolve_to_remove(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<FileAttrs> {
        let known = name.to_str().and_then(|n| self.table().child(parent, n));
        if let Some(a) = known.and_then(|ino| self.attrs_of(ino).ok()) {
            return Ok(a);
        }
        self.lookup(parent, name)
    }

    /// `rmdir`: ENOTEMPTY unless the prefix holds nothing but its marker.
    pub fn rmdir(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let attrs = self.resolve_to_remove(parent, name)?;
        let name = name_str(name)?;
        if attrs.kind != NodeKind::Dir {
            return Err(FsError::new(
                libc::ENOTDIR,
                format!("{name} is not a directory"),
            ));
        }
        // Not while a rename moves the directory: its marker would come back where it went.
        self.write_key(
            || self.key_of(attrs.ino),
            |key| self.remove_dir(parent, name, &attrs, key),
        )
    }

    /// `rmdir` of `parent/name` (`attrs`), whose key is `key`.
    fn remove_dir(&self, parent: u64, name: &str, attrs: &FileAttrs, key: &str) -> FsResult<()> {
        let key = key.to_string();
        // Objects kept for unlinked open files are not entries: their files take them now.
        self.settle_kept_under(&key)?;
        let page = self.bucket.list_page(&ListRequest {
            prefix: key.clone(),
            delimiter: Some("/".into()),
            max_keys: Some(2),
            ..Default::default()
        })?;
        if page.objects.iter().any(|o| o.key != key) || !page.common_prefixes.is_empty() {
            return Err(FsError::new(libc::ENOTEMPTY, format!("{key} is not empty")));
        }
        let marker = page.objects.iter().find(|o| o.key == key);
        // Markers are empty; one holding bytes was written by another tool, whose bytes the
        // mount cannot show: an `rmdir` would delete them unseen.
        if let Some(m) = marker.filter(|m| m.size > 0) {
            return Err(FsError::new(
                libc::ENOTEMPTY,
                format!(
                    "{key}: its marker object holds {} bytes, which rmdir would delete (remove it with an S3 client)",
                    m.size
                ),
            ));
        }
        // The marker's version, so a lost reply never lets the delete take another client's.
        let marker_etag = marker.and_then(|o| o.etag.clone());
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
        self.delete_foreign_marker(attrs.ino, &key)?;
        let mut t = self.table();
        t.remove_child(parent, name);
        t.set_negative(parent, name, Instant::now() + self.opts.negative_ttl);
        t.entries_changed(parent, SystemTime::now());
        Ok(())
    }

    /// The marker another tool wrote for the directory `parent/name`, if the table knows one.
    pub(crate) fn foreign_marker_of(&self, parent: u64, name: &str) -> Option<ForeignMarker> {
        let t = self.table();
        t.child(parent, name)
            .and_then(|c| t.get(c))
            .and_then(|n| n.foreign_marker())
    }

    /// Delete the marker another tool wrote for the directory `ino` (whose key is `key`), if
    /// any: after an `rmdir`, or a rename that moved what was under it.
    pub(crate) fn delete_foreign_marker(&self, ino: u64, key: &str) -> FsResult<()> {
        let marker = self.table().get(ino).and_then(|n| n.foreign_marker());
        if let Some(m) = marker {
            self.bucket.delete(&m.key(key), None)?;
            self.table().set_foreign_marker(ino, None);
        }
        Ok(())
    }

    /// `parent/name` is a directory in the table.
    pub(crate) fn known_dir(&self, parent: u64, name: &str) -> bool {
        let t = self.table();
        t.child(parent, name)
            .and_then(|c| t.get(c))
            .is_some_and(|n| n.kind() == NodeKind::Dir)
    }

    /// After the mount removed a key from `dir`: a directory without a marker would vanish
    /// from the server with its last key, so when none is known to be left, write its marker
    /// (a directory stays until `rmdir`, as on a disk).
    pub(crate) fn keep_emptied_dir(&self, dir: u64) {
        let key_of = || {
            let t = self.table();
            match t.get(dir) {
                Some(n) if dir != ROOT_INO && !n.has_marker() && n.children().is_empty() => {
                    t.key_of(dir).ok_or_else(|| FsError::not_found("gone"))
                }
                _ => Err(FsError::not_found("not emptied")),
            }
        };
        // Not while a rename moves the directory: the marker would bring it back.
        let _ = self.write_key(key_of, |key| {
            // Only if there is none: an existing marker carries the directory's metadata.
            let opts = PutOptions {
                if_none_match_any: true,
                ..PutOptions::default()
            };
            match self.bucket.put(key, RequestBody::Empty, &opts) {
                Ok(_) => {}
                Err(e) if e.is_precondition_failed() => {}
                Err(e) => {
                    log::warn!("{key}: could not keep the emptied directory: {e}");
                    return Ok(());
                }
            }
            self.table().set_marker(dir, true);
            Ok(())
        });
    }

    /// `unlink`: DeleteObject. An open file is not uploaded at close any more.
    pub fn unlink(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let attrs = self.resolve_to_remove(parent, name)?;
        let name = name_str(name)?;
        if attrs.kind == NodeKind::Dir {
            return Err(FsError::new(libc::EISDIR, format!("{name} is a directory")));
        }
        // Not while a rename moves it: it would come back where it went.
        self.write_key(
            || self.key_of(attrs.ino),
            |key| {
                // The version the mount knows: a lost reply never lets the delete take another's.
                let etag = self
                    .table()
                    .get(attrs.ino)
                    .and_then(|n| n.attr().etag.clone());
                // An open file keeps its bytes (fetched now, or its object kept until its last
                // close).
                if self.detach_open_file(attrs.ino, key, true)? == Detached::Free {
                    if let Err(e) = self.bucket.delete(key, etag.as_deref()) {
                        self.detach_failed(attrs.ino);
                        return Err(e.into());
                    }
                    self.detached_for_good(attrs.ino);
                }
                Ok(())
            },
        )?;
        {
            let now = SystemTime::now();
            let mut t = self.table();
            // Its link count drops to 0: its ctime moves (an open descriptor sees it).
            t.changed(attrs.ino, now);
            t.remove_child(parent, name);
            t.set_negative(parent, name, Instant::now() + self.opts.negative_ttl);
            t.entries_changed(parent, now);
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
        caller: Option<Caller>,
    ) -> FsResult<FileAttrs> {
        let name = self.check_new_name(parent, name)?;
        // Any bytes, as on a disk: the body holds them as they are (not a key, so not bound
        // to UTF-8), as s3fs stores them.
        let target = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
        let owner = self.new_entry_owner(parent, caller, NodeKind::Symlink, 0o777.into())?;
        self.write_entry(
            parent,
            name,
            NodeKind::Symlink,
            owner,
            RequestBody::Bytes(target),
            target.len() as u64,
        )
    }

    /// `mknod`: a FIFO, a socket (`bind()` makes one), a character or block device, stored as
    /// s3fs stores them — a zero-byte object whose `x-amz-meta-mode` carries the type bits and
    /// whose `x-amz-meta-rdev` the device number — or an empty regular file.
    pub fn mknod(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        mode: impl Into<CreateMode>,
        rdev: u32,
        caller: Option<Caller>,
    ) -> FsResult<FileAttrs> {
        let mode = mode.into();
        let kind = match NodeKind::from_mode(mode.mode, rdev) {
            Some(k) if k.is_special() || k == NodeKind::File => k,
            _ => {
                return Err(FsError::new(
                    libc::EINVAL,
                    format!("mknod of type {:o}", mode.mode & S_IFMT),
                ))
            }
        };
        let name = self.check_new_name(parent, name)?;
        let owner = self.new_entry_owner(parent, caller, kind, mode)?;
        self.write_entry(parent, name, kind, owner, RequestBody::Empty, 0)
    }

    /// Write the object of a new symlink, special file or empty file `parent/name`: `body`
    /// (`size` bytes) with the type, mode, owner, mtime and, for a device, its number in the
    /// metadata; a regular file gets the Content-Type of its name.
    fn write_entry(
        &self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        owner: NewOwner,
        body: RequestBody<'_>,
        size: u64,
    ) -> FsResult<FileAttrs> {
        // Not while a rename moves the directory: the name would stay behind under its old key.
        let key_of = || Ok(format!("{}{name}", self.key_of(parent)?));
        self.write_key(key_of, |key| {
            let key = key.to_string();
            self.check_key_len(&key)?;
            self.settle_kept(&key)?;
            let mtime = SystemTime::now();
            let mut metadata = Metadata::new();
            metadata.insert("mode", (owner.mode | kind.type_bits()).to_string());
            owner.write_to(&mut metadata);
            if matches!(
                kind,
                NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. }
            ) {
                metadata.insert("rdev", kind.rdev().to_string());
            }
            metadata.insert("mtime", format_mtime(mtime));
            let content_headers = match kind {
                NodeKind::File => self.new_file_headers(&key),
                _ => Vec::new(),
            };
            let etag = self.bucket.put(
                &key,
                body,
                &PutOptions {
                    metadata: metadata.clone(),
                    content_headers: content_headers.clone(),
                    ..Default::default()
                },
            )?;
            let attr = NodeAttr::created(size, mtime, owner.mode, etag.clone()).owned_by(owner.ids);
            let meta = ObjectMeta {
                metadata,
                content_headers,
                etag,
            };
            self.record_new_entry(parent, name, kind, attr, meta)
        })
    }

    /// `readlink`: the object's body.
    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        if self.kind_of(ino)? != NodeKind::Symlink {
            return Err(FsError::new(libc::EINVAL, "not a symlink"));
        }
        let key = self.key_of(ino)?;
        let (size, etag) = self
            .table()
            .get(ino)
            .map(|n| (n.attr().size, n.attr().etag.clone()))
            .unwrap_or_default();
        // The version the table knows was read already: no GET (the kernel asks at every
        // path resolution through the link).
        if let Some(target) = etag
            .as_deref()
            .and_then(|e| self.symlink_targets.get(&key, e))
        {
            self.table().accessed(ino, SystemTime::now());
            return Ok(target);
        }
        if size > MAX_SYMLINK_TARGET {
            return Err(FsError::new(
                libc::ENAMETOOLONG,
                format!("{key}: symlink target too long"),
            ));
        }
        let mut buf = vec![0u8; size as usize];
        let (n, read) = self.bucket.read_range(&key, 0, &mut buf, None)?;
        buf.truncate(n);
        // Kept only as the version the table knows: one read of a newer version (the table
        // still holding an older ETag) is not kept under the older ETag.
        if let (Some(read), Some(known)) = (read, etag) {
            if read == known {
                self.symlink_targets.put(&key, &read, &buf);
            }
        }
        // Reading a symlink moves its atime by relatime's rule, as a file's read does.
        self.table().accessed(ino, SystemTime::now());
        Ok(buf)
    }
}
