//! `rename`: server-side copy, then delete.
//!
//! A file: flush it if it has unsaved changes, `CopyObject` (guarded by the source ETag;
//! multipart above 5 GiB), then `DeleteObject` of the source. When the mount holds the file's
//! metadata (or must read it: the Content-Type guessed from the old name is re-derived from the
//! new one, an explicit one is kept) the copy rewrites it (directive REPLACE) with the times
//! of the change (`ctime`, and the mtime the file shows); otherwise it keeps it (COPY). The target, if
//! any, is replaced. `RENAME_NOREPLACE` gives EEXIST when the target exists; `RENAME_EXCHANGE`
//! is not possible on S3 (EINVAL), nor is `RENAME_WHITEOUT` (EINVAL, not a plain rename).
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
//! Uploads and other writes through this mount of the keys being moved wait for the rename, and
//! renames touching the same keys wait for each other (see [`super::gate`]): a file closed
//! meanwhile is uploaded to its new name afterwards, never to the old one between the copy and
//! the delete, where the delete would remove it; a name made, removed or renamed inside a
//! directory being renamed changes before the rename or after it, never in between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::attr::{metadata_attrs, stamp_change};
use super::error::{FsError, FsResult};
use super::names::{name_str, new_name_str, valid_component};
use super::S3Fs;
use crate::cache::inode::{HeadReply, NodeKind, ObjectMeta};
use crate::s3::meta::guess_content_type;
use crate::s3::{CopyRequest, KeyVersion, ReplaceMetadata, StorageError};

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
        // RENAME_WHITEOUT (overlayfs's) and any flag not known: EINVAL, as a file system
        // without them says, never a plain rename that silently leaves the flag undone.
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(FsError::new(
                libc::EINVAL,
                format!("rename flags {flags:#x} are not supported"),
            ));
        }
        let src = self.lookup(parent, name)?;
        let name_s = name_str(name)?.to_string();
        let new_name_s = new_name_str(new_name)?.to_string();
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
        let now = std::time::SystemTime::now();
        // A renamed file's new ETag (None inside: unknown, look at the server next time).
        let mut new_etag: Option<Option<String>> = None;
        // Uploads of the source keys wait until the names have moved (see `gate`).
        let moving;
        // Open readers follow the copies (see `own_copies`): in flight until they are re-pinned.
        let _copying;
        let mut follow = None;
        // A target open elsewhere, replaced by the copy (its name gone for good).
        let mut replaced_open = None;
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
            // Objects kept for unlinked open files are not moved: their files take them now.
            self.settle_kept_under(&src_key)?;
            // Open files under the directory are uploaded first so their content moves too.
            self.flush_under(&src_key)?;
            // From here until the names have moved, nothing is written under either prefix.
            let guard = self.rename_gate.rename(&[&src_key, &dst_key]);
            if self.rename_keys(src.ino, new_parent, &new_name_s)?
                != (src_key.clone(), dst_key.clone())
            {
                drop(guard);
                return self.rename(parent, name, new_parent, new_name, flags);
            }
            _copying = self.own_copies.begin(&[&src_key, &dst_key]);
            dir_copies = self.rename_dir(src.ino, &src_key, &dst_key)?;
            moving = Some(guard);
            // What another tool marked the directory with stays behind otherwise, and the
            // directory with it.
            self.delete_foreign_marker(src.ino, &src_key)?;
        } else {
            self.flush_inode(src.ino)?;
            let dst_key = format!("{dst_parent_key}{new_name_s}");
            self.check_key_len(&dst_key)?;
            // A file replaced while open keeps its bytes: the copy is about to overwrite them.
            self.settle_kept(&dst_key)?;
            // Until the copy replaces it, a failure leaves the target its name, and its open
            // file its upload at close (given back once the gate is open again: an upload
            // waiting there holds its file's lock).
            let replaced = target.as_ref().map(|t| t.ino);
            if let Some(ino) = replaced {
                self.detach_open_file(ino, &dst_key, false)?;
            }
            let give_back = || {
                if let Some(ino) = replaced {
                    self.detach_failed(ino);
                }
            };
            let guard = self.rename_gate.rename(&[&src_key, &dst_key]);
            let keys = self.rename_keys(src.ino, new_parent, &new_name_s);
            if !matches!(&keys, Ok(k) if *k == (src_key.clone(), dst_key.clone())) {
                drop(guard);
                give_back();
                keys?;
                // Moved by a directory rename meanwhile: again, under the new names.
                return self.rename(parent, name, new_parent, new_name, flags);
            }
            moving = Some(guard);
            _copying = self.own_copies.begin(&[&src_key, &dst_key]);
            // The Content-Type S3 keeps is re-derived from the new name when it was the guess
            // from the old one (`mv a.txt b.html`); that needs the object's headers.
            let copy = || -> FsResult<_> {
                let (old_type, new_type) =
                    (guess_content_type(&src_key), guess_content_type(&dst_key));
                if old_type != new_type && self.copied_version(src.ino).1.is_none() {
                    self.object_meta(src.ino)?;
                }
                let (version, known) = self.copied_version(src.ino);
                // The copy carries the file's times (see `attr::stamp_change`) when its
                // metadata is known: rewritten with REPLACE, at no extra request.
                let cur_mtime = self.attrs_of(src.ino)?.mtime;
                let rewrite = |m: &ObjectMeta| {
                    let mut metadata = m.metadata.clone();
                    stamp_change(&mut metadata, false, cur_mtime, now);
                    ReplaceMetadata {
                        metadata,
                        content_headers: retyped(&m.content_headers, &old_type, &new_type),
                    }
                };
                Ok(self.copy_key(&src_key, &dst_key, version, known, Some(&rewrite))?)
            };
            let copied = match copy() {
                Ok(c) => c,
                Err(e) => {
                    drop(moving);
                    give_back();
                    return Err(e);
                }
            };
            replaced_open = replaced;
            if let Some(reply) = &copied.looked {
                // Another client's version was moved: the file shows it (size, metadata).
                self.table().record_head_of(src.ino, reply, self.expiry());
            }
            // The version copied is the one to delete: a lost reply never lets the delete
            // take another client's.
            let moved = copied.from.clone();
            if let Some(w) = &copied.written {
                let attrs = metadata_attrs(&w.metadata);
                let meta = ObjectMeta {
                    metadata: w.metadata.clone(),
                    content_headers: w.content_headers.clone(),
                    etag: copied.etag.clone(),
                };
                self.table()
                    .record_meta(src.ino, meta, &attrs, self.expiry());
            }
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
                    drop(moving);
                    if let Some(ino) = replaced_open {
                        self.detached_for_good(ino);
                    }
                    return Err(FsError::new(
                        libc::EIO,
                        format!("{src_key} copied to {dst_key} but not deleted: {e}"),
                    ));
                }
            }
        }
        let mut t = self.table();
        if let Some(replaced) = &target {
            // Unlinked by the rename: an open descriptor of it sees its link count drop.
            t.changed(replaced.ino, now);
        }
        t.move_child(parent, &name_s, new_parent, &new_name_s);
        t.changed(src.ino, now);
        t.entries_changed(parent, now);
        t.entries_changed(new_parent, now);
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
        if let Some(ino) = replaced_open {
            self.detached_for_good(ino);
        }
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

    /// The keys a rename of `ino` to `new_parent/new_name` moves and writes, as they are now:
    /// its own and its new one (with a `/` for a directory). A rename that had to wait at the
    /// gate compares them with those it waited for (see [`super::gate`]).
    fn rename_keys(&self, ino: u64, new_parent: u64, new_name: &str) -> FsResult<(String, String)> {
        let src_key = self.key_of(ino)?;
        let slash = if src_key.ends_with('/') { "/" } else { "" };
        Ok((
            src_key,
            format!("{}{new_name}{slash}", self.key_of(new_parent)?),
        ))
    }

    /// Upload the open files under the directory `prefix` that have changes.
    fn flush_under(&self, prefix: &str) -> FsResult<()> {
        for o in self.open_files.inos() {
            if self
                .table()
                .key_of(o)
                .is_some_and(|k| k.starts_with(prefix))
            {
                self.flush_inode(o)?;
            }
        }
        Ok(())
    }

    /// Copy every key under `src_key` to `dst_key`, then delete the sources: with the gate
    /// closed on both (the caller moves the names, then opens it).
    fn rename_dir(&self, ino: u64, src_key: &str, dst_key: &str) -> FsResult<Vec<Copied>> {
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
                    let listed = (o.etag.clone(), Some(o.size), o.storage_class.clone());
                    match self.copy_key(&o.key, &dst, listed, None, None) {
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
        Ok(copied)
    }
}

/// The version of an object a rename copies, as the mount knows it: ETag, size, and the storage
/// class its listing named (what a COPY-directive copy must name again, or S3 puts the copy in
/// STANDARD).
type Version = (Option<String>, Option<u64>, Option<String>);

impl S3Fs {
    /// The version of `ino` a rename copies — its ETag, size and listed storage class — and
    /// its metadata when the table holds it for that very version.
    fn copied_version(&self, ino: u64) -> (Version, Option<ObjectMeta>) {
        let t = self.table();
        let Some(n) = t.get(ino) else {
            return ((None, None, None), None);
        };
        let etag = n.attr().etag.clone();
        let meta = n
            .meta()
            .filter(|m| etag.is_some() && m.etag == etag)
            .cloned();
        let class = n.listed_class().map(str::to_string);
        ((etag, Some(n.attr().size), class), meta)
    }

    /// Copy `src_key` to `dst_key` guarded by `etag`, the version of `size` bytes the mount
    /// knows: with its metadata (directive COPY, in storage class `class`, the source's as
    /// listed: S3 would put the copy in STANDARD), or — given that version's metadata `known`
    /// and `rewrite` — with `rewrite(known)` (REPLACE, whose kept headers carry the class).
    /// When the server refuses the copy because the source changed (412), look at the source
    /// again (HEAD) and copy the version there now (rewriting its own metadata): at most
    /// [`RENAME_COPY_ATTEMPTS`] copies (see the module documentation). A source gone meanwhile
    /// is an error that says so (not found).
    fn copy_key(
        &self,
        src_key: &str,
        dst_key: &str,
        (mut etag, mut size, mut class): Version,
        known: Option<ObjectMeta>,
        rewrite: Option<&dyn Fn(&ObjectMeta) -> ReplaceMetadata>,
    ) -> Result<KeyCopy, StorageError> {
        let mut looked = None;
        let mut attempt = 1;
        let mut replace = known.as_ref().and_then(|m| rewrite.map(|f| f(m)));
        loop {
            let copied = self.bucket.copy(&CopyRequest {
                src: self.bucket.obj(src_key),
                dst: self.bucket.obj(dst_key),
                replace: replace.clone(),
                if_match: etag.clone(),
                size,
                storage_class: class.clone(),
            });
            match copied {
                Ok(c) => {
                    return Ok(KeyCopy {
                        from: etag,
                        etag: c.etag,
                        looked,
                        written: replace,
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
                    class = info.storage_class().map(str::to_string);
                    replace = rewrite.map(|f| f(&ObjectMeta::from(&info)));
                    looked = Some(HeadReply::new(&info, metadata_attrs(&info.metadata), asked));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Content headers `headers` of an object renamed from a name whose guessed Content-Type is
/// `old_type` to one whose guess is `new_type`: a Content-Type that was the old guess becomes
/// the new one; one set explicitly (any other value) is kept.
pub fn retyped(
    headers: &[(String, String)],
    old_type: &str,
    new_type: &str,
) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            if k.eq_ignore_ascii_case("content-type") && v.trim().eq_ignore_ascii_case(old_type) {
                (k.clone(), new_type.to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
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
    /// The metadata and content headers the copy was given (REPLACE), if not its own.
    written: Option<ReplaceMetadata>,
}

/// One key a directory rename copied: its path below the directory and its ETags.
#[derive(Debug)]
struct Copied {
    rest: String,
    old_etag: Option<String>,
    new_etag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::retyped;

    #[test]
    fn a_guessed_content_type_follows_the_name_an_explicit_one_stays() {
        let h = |v: &str| vec![("Content-Type".to_string(), v.to_string())];
        assert_eq!(
            retyped(&h("text/plain"), "text/plain", "text/html"),
            h("text/html")
        );
        assert_eq!(
            retyped(&h("application/x-custom"), "text/plain", "text/html"),
            h("application/x-custom")
        );
        let other = vec![("cache-control".to_string(), "text/plain".to_string())];
        assert_eq!(retyped(&other, "text/plain", "text/html"), other);
        assert!(retyped(&[], "a", "b").is_empty());
    }
}
