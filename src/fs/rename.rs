//! `rename`: server-side copy, then delete.
//!
//! A file: flush it if it has unsaved changes, `CopyObject` (metadata directive COPY, guarded by
//! the source ETag; multipart above 5 GiB), then `DeleteObject` of the source. The target, if
//! any, is replaced. `RENAME_NOREPLACE` gives EEXIST when the target exists; `RENAME_EXCHANGE`
//! is not possible on S3 (EINVAL).
//!
//! The guard is the ETag the mount knows, which may be older than the object (another client
//! replaced it within the metadata TTL). The server then refuses the copy (412), and the rename
//! looks at the source again and moves the version there now, as a disk moves whatever the file
//! holds: at most [`RENAME_COPY_ATTEMPTS`] copies, in one place (`S3Fs::copy_key`), for files
//! and for every key of a directory. Open readers follow a copy only from the version they
//! read (a reader of a version replaced by another client gets EIO, as it would without the
//! rename).
//!
//! A directory: every key under the prefix is copied (in parallel), and only when all copies
//! succeeded are the sources deleted. It is not atomic — another client can see both trees for a
//! moment — but a source is never deleted before its copy exists; on failure the operation stops
//! with EIO and the sources are intact.
//!
//! Uploads through this mount of the keys being moved wait for the rename (see [`super::gate`]):
//! a file closed meanwhile is uploaded to its new name afterwards, never to the old one between
//! the copy and the delete, where the delete would remove it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::attr::metadata_attrs;
use super::error::{FsError, FsResult};
use super::names::{name_str, valid_component};
use super::S3Fs;
use crate::cache::inode::{HeadReply, NodeKind};
use crate::s3::{CopyRequest, KeyVersion, StorageError};

/// Copies in flight during a directory rename.
const DIR_RENAME_PARALLELISM: usize = 16;

/// Copies of one key a rename tries while the source keeps changing on the server: a few,
/// because each refused copy after the first means another client replaced the object in the
/// short time between a HEAD and a copy (as many as a metadata update tries).
pub const RENAME_COPY_ATTEMPTS: u32 = 4;

impl S3Fs {
    /// `rename(parent/name → new_parent/new_name)`.
    pub fn rename(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        new_parent: u64,
        new_name: &std::ffi::OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(FsError::new(
                libc::EINVAL,
                "RENAME_EXCHANGE cannot be done on S3",
            ));
        }
        let src = self.lookup(parent, name)?;
        let name_s = name_str(name)?.to_string();
        let new_name_s = name_str(new_name)?.to_string();
        if !valid_component(&new_name_s) {
            return Err(FsError::new(libc::EINVAL, format!("{new_name_s:?}")));
        }
        let target = match self.lookup(new_parent, new_name) {
            Ok(t) => Some(t),
            Err(e) if e.errno == libc::ENOENT => None,
            Err(e) => return Err(e),
        };
        if let Some(t) = &target {
            if t.ino == src.ino {
                return Ok(());
            }
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(FsError::new(libc::EEXIST, format!("{new_name_s} exists")));
            }
            match (src.kind == NodeKind::Dir, t.kind == NodeKind::Dir) {
                (true, false) => {
                    return Err(FsError::new(libc::ENOTDIR, "target is not a directory"))
                }
                (false, true) => return Err(FsError::new(libc::EISDIR, "target is a directory")),
                _ => {}
            }
        }
        let src_key = self.key_of(src.ino)?;
        let dst_parent_key = self.key_of(new_parent)?;
        // A renamed file's new ETag (None inside: unknown, look at the server next time).
        let mut new_etag: Option<Option<String>> = None;
        // Uploads of the source keys wait until the names have moved (see `gate`).
        let moving;
        // Open readers follow the copies (see `own_copies`): in flight until they are re-pinned.
        let _copying;
        let mut follow = None;
        let mut dir_copies = Vec::new();
        if src.kind == NodeKind::Dir {
            let dst_key = format!("{dst_parent_key}{new_name_s}/");
            if dst_key.starts_with(&src_key) {
                return Err(FsError::new(
                    libc::EINVAL,
                    "cannot move a directory into itself",
                ));
            }
            if let Some(t) = &target {
                // POSIX: replacing a directory requires it to be empty.
                let tkey = self.key_of(t.ino)?;
                let page = self.bucket.list_page(&crate::s3::ListRequest {
                    prefix: tkey.clone(),
                    max_keys: Some(2),
                    ..Default::default()
                })?;
                if page.objects.iter().any(|o| o.key != tkey) {
                    return Err(FsError::new(
                        libc::ENOTEMPTY,
                        format!("{tkey} is not empty"),
                    ));
                }
            }
            _copying = self.own_copies.begin(&[&src_key, &dst_key]);
            let (guard, copies) = self.rename_dir(src.ino, &src_key, &dst_key)?;
            moving = Some(guard);
            dir_copies = copies;
        } else {
            self.flush_inode(src.ino)?;
            moving = Some(self.rename_gate.rename(&src_key));
            let dst_key = format!("{dst_parent_key}{new_name_s}");
            _copying = self.own_copies.begin(&[&src_key, &dst_key]);
            let (etag, size) = {
                let t = self.table();
                let n = t.get(src.ino);
                (
                    n.and_then(|n| n.attr().etag.clone()),
                    n.map(|n| n.attr().size),
                )
            };
            let copied = self.copy_key(&src_key, &dst_key, etag, size)?;
            if let Some(reply) = &copied.looked {
                // Another client's version was moved: the file shows it (size, metadata).
                self.table().record_head_of(src.ino, reply, self.expiry());
            }
            // The version copied is the one to delete: a lost reply never lets the delete
            // take another client's.
            let moved = copied.from.clone();
            // An open reader of the version moved follows it to the copy's ETag too (once the
            // gate is open again: an upload waiting there holds the file's lock).
            follow = Some((copied.from, copied.etag.clone()));
            // The copy has its own ETag (a multipart source's `…-N` ETag does not carry over):
            // reads pin it with If-Match, so the old one would fail them with 412 → EIO.
            new_etag = Some(copied.etag);
            match self.bucket.delete(&src_key, moved.as_deref()) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    // The copy exists; the source could not be removed. Report it, keep both.
                    return Err(FsError::new(
                        libc::EIO,
                        format!("{src_key} copied to {dst_key} but not deleted: {e}"),
                    ));
                }
            }
        }
        let mut t = self.table();
        t.move_child(parent, &name_s, new_parent, &new_name_s);
        t.set_negative(
            parent,
            &name_s,
            std::time::Instant::now() + self.opts.negative_ttl,
        );
        t.refresh_attr(src.ino, self.expiry());
        match new_etag {
            // Metadata directive COPY: the metadata is the same, only the ETag is new.
            Some(Some(etag)) => t.follow_etag(src.ino, Some(etag)),
            Some(None) => t.expire_attr(src.ino),
            None => {}
        }
        drop(t);
        drop(moving);
        if let Some((old, new)) = follow {
            self.open_readers_follow(src.ino, old.as_deref(), new);
        }
        self.follow_dir_copies(src.ino, &dir_copies);
        if parent != new_parent {
            self.keep_emptied_dir(parent);
        }
        Ok(())
    }

    /// After a directory rename: the copies may have new ETags (a copy of a multipart object
    /// always has), so known files under the directory and their open readers follow them —
    /// else reads pinned to the old ETag would fail with 412 → EIO until the TTL runs out.
    fn follow_dir_copies(&self, dir: u64, copies: &[Copied]) {
        for c in copies {
            let ino = {
                let t = self.table();
                c.rest
                    .split('/')
                    .try_fold(dir, |cur, name| t.child(cur, name))
            };
            let Some(ino) = ino else { continue };
            // Changed meanwhile (or unknown): looked at on the server next time.
            self.table()
                .follow_copy(ino, c.old_etag.as_deref(), c.new_etag.clone());
            self.open_readers_follow(ino, c.old_etag.as_deref(), c.new_etag.clone());
        }
    }

    /// Copy every key under `src_key` to `dst_key`, then delete the sources. Returns with the
    /// gate still closed on `src_key`: the caller moves the names, then drops the guard.
    fn rename_dir(
        &self,
        ino: u64,
        src_key: &str,
        dst_key: &str,
    ) -> FsResult<(super::gate::RenameGuard<'_>, Vec<Copied>)> {
        // Open files under the directory are uploaded first so their content moves too.
        for o in self.open_files.inos() {
            if self
                .table()
                .key_of(o)
                .is_some_and(|k| k.starts_with(src_key))
            {
                self.flush_inode(o)?;
            }
        }
        // From here until the names have moved, nothing is uploaded under the prefix.
        let moving = self.rename_gate.rename(src_key);
        let (objects, _) = self.bucket.list_all(src_key, None)?;
        let next = AtomicUsize::new(0);
        let failed: Mutex<Option<StorageError>> = Mutex::new(None);
        let copied: Mutex<Vec<Copied>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..DIR_RENAME_PARALLELISM.min(objects.len().max(1)) {
                s.spawn(|| loop {
                    if failed.lock().is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(o) = objects.get(i) else { return };
                    // A server answering keys from outside the prefix: not ours to move.
                    let Some(rest) = o.key.strip_prefix(src_key) else {
                        continue;
                    };
                    let dst = format!("{dst_key}{rest}");
                    match self.copy_key(&o.key, &dst, o.etag.clone(), Some(o.size)) {
                        Ok(c) => copied.lock().push(Copied {
                            rest: rest.to_string(),
                            old_etag: c.from,
                            new_etag: c.etag,
                        }),
                        // Deleted since the listing (by an unlink, or another client): as if
                        // the delete had come first.
                        Err(e) if e.is_not_found() => {}
                        Err(e) => {
                            failed.lock().get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.lock().take() {
            return Err(FsError::new(
                libc::EIO,
                format!("rename {src_key} -> {dst_key} stopped, sources intact: {e}"),
            ));
        }
        // Each at the version copied (else the one listed): a lost reply never lets the
        // deletes take what another client wrote since.
        let copied = copied.into_inner();
        let moved: HashMap<&str, &Option<String>> = copied
            .iter()
            .map(|c| (c.rest.as_str(), &c.old_etag))
            .collect();
        let keys: Vec<KeyVersion> = objects
            .iter()
            .filter_map(|o| {
                let rest = o.key.strip_prefix(src_key)?;
                let etag = moved.get(rest).map_or(&o.etag, |e| *e);
                Some(KeyVersion::new(o.key.clone(), etag.clone()))
            })
            .collect();
        let result = self.bucket.delete_many(&keys)?;
        if let Some((key, code, msg)) = result.errors.first() {
            return Err(FsError::new(
                libc::EIO,
                format!(
                    "rename {src_key} -> {dst_key}: copied, but {key} not deleted: {code} {msg}"
                ),
            ));
        }
        if objects.is_empty() {
            // An empty implicit directory that only exists locally: give it a marker.
            self.bucket
                .put(dst_key, crate::s3::RequestBody::Empty, &Default::default())?;
        }
        self.table().invalidate_dir(ino);
        Ok((moving, copied))
    }
}

impl S3Fs {
    /// Copy `src_key` to `dst_key` with its metadata (directive COPY), guarded by `etag`, the
    /// version of `size` bytes the mount knows. When the server refuses the copy because the
    /// source changed (412), look at the source again (HEAD) and copy the version there now:
    /// at most [`RENAME_COPY_ATTEMPTS`] copies (see the module documentation). A source gone
    /// meanwhile is an error that says so (not found).
    fn copy_key(
        &self,
        src_key: &str,
        dst_key: &str,
        mut etag: Option<String>,
        mut size: Option<u64>,
    ) -> Result<KeyCopy, StorageError> {
        let mut looked = None;
        let mut attempt = 1;
        loop {
            let copied = self.bucket.copy(&CopyRequest {
                src: self.bucket.obj(src_key),
                dst: self.bucket.obj(dst_key),
                replace: None,
                if_match: etag.clone(),
                size,
            });
            match copied {
                Ok(c) => {
                    return Ok(KeyCopy {
                        from: etag,
                        etag: c.etag,
                        looked,
                    })
                }
                Err(e) if e.is_precondition_failed() && attempt < RENAME_COPY_ATTEMPTS => {
                    let asked = Instant::now();
                    let info = self.bucket.head(src_key)?;
                    log::info!(
                        "rename {src_key} -> {dst_key}: the source changed on the server (ETag {etag:?}, now {:?}); moving the version there now",
                        info.etag
                    );
                    etag = info.etag.clone();
                    size = Some(info.size);
                    looked = Some(HeadReply::new(&info, metadata_attrs(&info.metadata), asked));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// What a rename's copy of one key did ([`S3Fs::copy_key`]).
#[derive(Debug)]
struct KeyCopy {
    /// ETag of the version copied.
    from: Option<String>,
    /// The copy's ETag.
    etag: Option<String>,
    /// The HEAD that found the version copied, when the one the mount knew was gone.
    looked: Option<HeadReply>,
}

/// One key a directory rename copied: its path below the directory and its ETags.
#[derive(Debug)]
struct Copied {
    rest: String,
    old_etag: Option<String>,
    new_etag: Option<String>,
}
