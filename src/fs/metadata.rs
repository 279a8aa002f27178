//! An inode's object metadata, and the one door through which it changes.
//!
//! The metadata of an object (its `x-amz-meta-*` and content headers) is read with a HEAD and
//! kept in the inode table for the metadata TTL (`S3Fs::object_meta`). The root of a
//! whole-bucket mount is the bucket, which has none: its metadata is empty, without a request. It holds the
//! attributes S3 has no place for (mode, owner, mtime: see [`super::attr`]) and the extended
//! attributes (see [`super::xattr`]).
//!
//! Every change — `chmod`, `chown`, `utimes`, `setxattr`, `removexattr` — goes through
//! `S3Fs::update_metadata`, an edit of the metadata:
//! - a file open with unsaved changes takes the edit into its pending upload (the upload at
//!   close carries it; a streamed upload, whose headers are fixed, is given up);
//! - otherwise the object is changed in place by [`crate::s3::metadata`]'s one loop: a
//!   self-copy with `REPLACE`, guarded by the ETag the edit was based on, retried on the new
//!   version when another client replaced the object meanwhile. Its first attempt starts from
//!   the metadata cached here. Readers of the file then follow the copy's new ETag, and the
//!   table learns what was written. A directory without a marker object gets one, carrying the
//!   metadata.

use std::time::SystemTime;

use super::attr::{format_mtime, leave_times_out_to_fit, metadata_attrs, stamp_change, FileAttrs};
use super::error::{FsError, FsResult};
use super::open_file::OpenFile;
use super::S3Fs;
use crate::cache::inode::{AttrUpdate, HeadReply, NodeKind, ObjectMeta};
use crate::s3::meta::MAX_USER_METADATA_BYTES;
use crate::s3::metadata::{update_metadata, CurrentMetadata, UpdateError};
use crate::s3::{Metadata, PutOptions, ReplaceMetadata, RequestBody};

impl S3Fs {
    /// HEAD metadata of an inode, from the table if fresh. The reply is recorded in the table
    /// unless the mount changed the file after the HEAD was sent (see
    /// [`crate::cache::inode::InodeTable::record_head_of`]).
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
        if key.is_empty() {
            // The root of a whole-bucket mount is the bucket: no object, no metadata. A HEAD of
            // the empty key would be a HeadBucket, whose reply describes no object (some
            // servers send it without a Content-Length).
            return Ok(ObjectMeta::default());
        }
        let kind = self.kind_of(ino)?;
        let info = match self.bucket.head(&key) {
            Ok(i) => i,
            Err(e) if e.is_not_found() && kind == NodeKind::Dir => {
                // Marked by another tool only: its marker holds the metadata (old s3fs kept
                // mode, owner, times and xattrs there), which a change carries over to ours.
                // Else an implicit directory: no marker, no metadata.
                let foreign = self.table().get(ino).and_then(|n| n.foreign_marker());
                return match foreign.map(|m| self.bucket.head(&m.key(&key))) {
                    Some(Ok(info)) => {
                        // Recorded as the directory's, which still has no marker of ours.
                        let reply = HeadReply::new(&info, metadata_attrs(&info.metadata), now);
                        let until = now + self.opts.metadata_ttl;
                        self.table()
                            .record_meta(ino, reply.meta.clone(), &reply.attrs, until);
                        Ok(reply.meta)
                    }
                    Some(Err(e)) if !e.is_not_found() => Err(e.into()),
                    _ => Ok(ObjectMeta::default()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        let reply = HeadReply::new(&info, metadata_attrs(&info.metadata), now);
        if self.open_files.local_size(ino).is_some() {
            // Open with content of its own (written, not uploaded yet): the file shows its own
            // size and times, which its upload records. Only the metadata is taken: with a TTL
            // of 0 the upload asks after the write, and the object's old mtime replaced it.
            let none = AttrUpdate::default();
            self.table()
                .record_meta(ino, reply.meta.clone(), &none, now + self.opts.metadata_ttl);
            return Ok(reply.meta);
        }
        self.table()
            .record_head_of(ino, &reply, now + self.opts.metadata_ttl);
        Ok(reply.meta)
    }

    /// The metadata an inode shows now: the pending upload's, if it is open with unsaved
    /// changes (or unlinked while open, see [`Self::unlinked_metadata`]), else the object's.
    pub(crate) fn current_metadata(&self, ino: u64) -> FsResult<Metadata> {
        if let Some(f) = self.open_files.get(ino) {
            let of = f.lock();
            if of.is_unlinked() {
                return Ok(self.unlinked_metadata(&of));
            }
            if let Some(m) = of.pending_metadata().filter(|_| of.is_dirty()) {
                return Ok(m.clone());
            }
        }
        Ok(self.object_meta(ino)?.metadata)
    }

    /// The metadata of a file unlinked (or renamed over) while open: it has no object to ask
    /// or change any more (at most one kept under its old name, for its bytes), so, as its
    /// mode does, its metadata lives in memory until the last close — what it was given
    /// since, else what the mount last knew of the object. On a disk `fgetxattr`,
    /// `flistxattr` and `fsetxattr` work until then; here they answered ENOENT.
    fn unlinked_metadata(&self, of: &OpenFile) -> Metadata {
        if let Some(m) = of.pending_metadata() {
            return m.clone();
        }
        self.table()
            .get(of.ino())
            .and_then(|n| n.meta())
            .map(|m| m.metadata.clone())
            .unwrap_or_default()
    }

    /// Change the metadata of `ino` by `edit` (see the module documentation), which is given
    /// the metadata and the inode's attributes now (for an edit that must write a mode where
    /// the object has none). `attrs`: what the change does to the attributes (empty for an
    /// xattr), which the inode shows at once when the change waits for an upload. Every change
    /// moves the ctime, and carries it (see [`super::attr::stamp_change`]).
    pub(crate) fn update_metadata(
        &self,
        ino: u64,
        edit: impl Fn(&mut Metadata, &FileAttrs) -> FsResult<()>,
        attrs: &AttrUpdate,
    ) -> FsResult<()> {
        // The ctime: the time of the request when it says (`AttrChange::now`), else now.
        let now = attrs.ctime.unwrap_or_else(SystemTime::now);
        let stamped = |meta: &mut Metadata, cur: &FileAttrs| -> FsResult<()> {
            let had_mtime = meta.get("mtime").is_some();
            edit(meta, cur)?;
            let edited = meta.clone();
            stamp_change(meta, had_mtime, cur.mtime, now);
            // The times never cost the user's own metadata its room: an edit that fits the
            // 2 KB goes without them (the ctime, then an mtime that only repeats the one
            // shown) rather than fail with E2BIG.
            if meta.encoded_size() > MAX_USER_METADATA_BYTES {
                *meta = edited;
                let shown = format_mtime(cur.mtime);
                let repeats_shown = meta.get("mtime") == Some(shown.as_str());
                leave_times_out_to_fit(meta, repeats_shown);
            }
            Ok(())
        };
        let attrs = AttrUpdate {
            ctime: Some(now),
            ..attrs.clone()
        };
        // Folded into an upload, the change needs no stamp: the upload is the write that
        // records the times (`S3Fs::upload_plan`).
        if self.fold_into_open_file(ino, &edit, &attrs)? {
            return Ok(());
        }
        self.change_object_metadata(ino, &stamped)?;
        self.rebase_open_file(ino, &edit, &attrs);
        // A time set explicitly replaces the one the mount moved in memory (a directory's
        // mtime moved by its entries, an atime by reads), as on a disk: `rsync -a`, `cp -a`
        // and `tar -x` set a directory's times after filling it.
        self.table().apply_attrs(ino, &attrs);
        Ok(())
    }

    /// If `ino` is open with unsaved changes, apply `edit` to its pending upload; if it was
    /// unlinked while open, to the metadata it keeps in memory ([`Self::unlinked_metadata`]).
    /// `Ok(false)` if neither (the object is then changed in place).
    fn fold_into_open_file(
        &self,
        ino: u64,
        edit: &impl Fn(&mut Metadata, &FileAttrs) -> FsResult<()>,
        attrs: &AttrUpdate,
    ) -> FsResult<bool> {
        let Some(f) = self.open_files.get(ino) else {
            return Ok(false);
        };
        let mut of = f.lock();
        if of.is_unlinked() {
            let m = self.unlinked_metadata(&of);
            of.set_base_metadata(m, None);
        } else if !of.is_dirty() {
            return Ok(false);
        } else if of.needs_base_metadata() {
            let (m, h) = if of.version().exists() {
                let om = self.object_meta(ino)?;
                (om.metadata, Some(om.content_headers))
            } else {
                (Metadata::new(), None)
            };
            of.set_base_metadata(m, h);
        }
        let cur = self.attrs_of(ino)?;
        let mut meta = of.pending_metadata().cloned().unwrap_or_default();
        edit(&mut meta, &cur)?;
        if meta.encoded_size() > MAX_USER_METADATA_BYTES {
            return Err(FsError::new(libc::E2BIG, "user metadata over 2 KB"));
        }
        of.set_pending_metadata(meta, attrs.mtime.is_some());
        drop(of);
        self.table().apply_attrs(ino, attrs);
        Ok(true)
    }

    /// After a change made in place to a file that is open: the metadata it kept from its last
    /// upload, the base of its next one (after a write, the upload at `close`), no longer is
    /// the object's, and that upload would take the change back (a `chmod` between an `fsync`
    /// and the next write was lost at `close`). A clean file forgets it: its next upload starts
    /// from the object's, which the copy recorded. One that a write made dirty meanwhile gets
    /// the edit too (an edit that fails there, as XATTR_CREATE of a name it has, is left out:
    /// the copy, which did not fail, was made from the object's metadata).
    fn rebase_open_file(
        &self,
        ino: u64,
        edit: &impl Fn(&mut Metadata, &FileAttrs) -> FsResult<()>,
        attrs: &AttrUpdate,
    ) {
        let Some(f) = self.open_files.get(ino) else {
            return;
        };
        let mut of = f.lock();
        if !of.is_dirty() {
            of.forget_base_metadata();
            return;
        }
        let (Some(mut meta), Ok(cur)) = (of.pending_metadata().cloned(), self.attrs_of(ino)) else {
            return;
        };
        if edit(&mut meta, &cur).is_ok() {
            of.set_pending_metadata(meta, attrs.mtime.is_some());
        }
    }

    /// Change the object's metadata in place (see the module documentation); after
    /// [`crate::s3::metadata::METADATA_UPDATE_ATTEMPTS`] copies refused because the object
    /// kept changing, EIO and nothing was changed.
    fn change_object_metadata(
        &self,
        ino: u64,
        edit: &impl Fn(&mut Metadata, &FileAttrs) -> FsResult<()>,
    ) -> FsResult<()> {
        // Not while a rename moves the object: the change would be deleted with the old name.
        self.write_key(
            || self.key_of(ino),
            |key| self.change_metadata_of(ino, key, edit),
        )
    }

    /// [`Self::change_object_metadata`] of `ino`, whose key is `key`.
    fn change_metadata_of(
        &self,
        ino: u64,
        key: &str,
        edit: &impl Fn(&mut Metadata, &FileAttrs) -> FsResult<()>,
    ) -> FsResult<()> {
        let key = key.to_string();
        if key.is_empty() {
            // Else the HEAD and PUT below would go to the bucket itself (a PUT is CreateBucket).
            return Err(FsError::new(
                libc::ENOTSUP,
                "the root of a whole-bucket mount has no object to hold metadata",
            ));
        }
        let kind = self.kind_of(ino)?;
        let first = self.object_meta(ino)?;
        let edited = |current: &CurrentMetadata| -> FsResult<ReplaceMetadata> {
            let cur = self.attrs_of(ino)?;
            let mut metadata = current.metadata.clone();
            edit(&mut metadata, &cur)?;
            if metadata.encoded_size() > MAX_USER_METADATA_BYTES {
                return Err(FsError::new(
                    libc::E2BIG,
                    format!("{key}: user metadata over 2 KB"),
                ));
            }
            Ok(ReplaceMetadata {
                metadata,
                content_headers: current.content_headers.clone(),
            })
        };
        // A directory another tool marked (`dir`, `dir_$folder$`) and no `dir/`: as s3fs does,
        // its metadata goes to a `dir/` marker of ours, which replaces the other tool's.
        let foreign_only = kind == NodeKind::Dir
            && self
                .table()
                .get(ino)
                .is_some_and(|n| n.foreign_marker().is_some() && !n.has_marker());
        if kind == NodeKind::Dir && (first.etag.is_none() || foreign_only) {
            let implicit = CurrentMetadata {
                metadata: first.metadata,
                content_headers: first.content_headers,
                ..CurrentMetadata::default()
            };
            self.write_marker(ino, &key, edited(&implicit)?)?;
            if foreign_only {
                // Left behind, it is only a second marker: `rmdir` would still remove it.
                if let Err(e) = self.delete_foreign_marker(ino, &key) {
                    log::warn!("{key}: the other tool's marker stays: {e}");
                }
            }
            return Ok(());
        }
        let mut first = Some(first);
        let read = |_attempt| -> FsResult<CurrentMetadata> {
            let meta = match first.take() {
                Some(m) => m,
                None => {
                    // After a 412: forget what we knew, and HEAD the object again.
                    self.table().expire(ino);
                    self.object_meta(ino)?
                }
            };
            let size = match kind {
                NodeKind::Dir => Some(0),
                _ => self.table().get(ino).map(|n| n.attr().size),
            };
            Ok(CurrentMetadata {
                metadata: meta.metadata,
                content_headers: meta.content_headers,
                etag: meta.etag,
                size,
            })
        };
        // Open readers of the file follow the copy; it is in flight until they are re-pinned.
        let _copying = (kind == NodeKind::File).then(|| self.own_copies.begin(&[&key]));
        let updated = match update_metadata(&self.bucket, &key, read, edited) {
            Ok(u) => u,
            Err(UpdateError::Failed(e)) => return Err(e),
            Err(UpdateError::KeptChanging { attempts, .. }) => {
                return Err(FsError::new(
                    libc::EIO,
                    format!("{key}: changed on the server during {attempts} metadata updates in a row; nothing was changed"),
                ))
            }
        };
        let attrs = metadata_attrs(&updated.written.metadata);
        let meta = ObjectMeta {
            metadata: updated.written.metadata,
            content_headers: updated.written.content_headers,
            etag: updated.etag.clone(),
        };
        let mut t = self.table();
        t.record_meta(ino, meta, &attrs, self.expiry());
        if kind == NodeKind::Dir {
            t.set_marker(ino, true);
        } else if updated.etag.is_some() {
            // Newer than any listing or HEAD asked for before the copy.
            t.follow_etag(ino, updated.etag.clone());
        } else {
            // A copy whose reply named no ETag: look at the server next time.
            t.expire_attr(ino);
        }
        drop(t);
        // After the table: an `open` that took the old ETag from it is re-pinned here, a later
        // one takes the new ETag.
        if kind == NodeKind::File {
            self.open_readers_follow(ino, updated.base.etag.as_deref(), updated.etag);
        }
        Ok(())
    }

    /// A directory without a marker object: write one carrying the metadata (nothing to copy,
    /// nothing another client could have replaced).
    fn write_marker(&self, ino: u64, key: &str, written: ReplaceMetadata) -> FsResult<()> {
        let etag = self.bucket.put(
            key,
            RequestBody::Empty,
            &PutOptions {
                metadata: written.metadata.clone(),
                ..Default::default()
            },
        )?;
        let attrs = metadata_attrs(&written.metadata);
        let meta = ObjectMeta {
            metadata: written.metadata,
            content_headers: written.content_headers,
            etag,
        };
        let mut t = self.table();
        t.record_meta(ino, meta, &attrs, self.expiry());
        t.set_marker(ino, true);
        Ok(())
    }

    /// After a copy of the object with the same content (a metadata self-copy, a rename's
    /// copy): the ETag may be new (a copy of a multipart object gets one), so readers pinned to
    /// the old ETag follow it instead of failing their next ranged GET with 412 → EIO.
    pub(crate) fn open_readers_follow(&self, ino: u64, old: Option<&str>, new: Option<String>) {
        if let (Some(f), Some(new)) = (self.open_files.get(ino), new) {
            f.lock().version_mut().follow_etag(old, new);
        }
    }
}
