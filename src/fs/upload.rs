//! Uploading a written file: at `close`, and while a large file is still being written.
//!
//! At `flush` (every `close`), `fsync` and the last `release`, a dirty file is uploaded with the
//! object's existing metadata and content headers plus the changes made while it was open
//! (`S3Fs::upload_plan`), so overwriting content never drops metadata. `close` returns only
//! once the object is complete on the server, and fails with EIO if the upload failed after
//! retries; the staging file is then hard-linked under `<cache-dir>/unsaved/` (with a `.key`
//! note naming the object and its headers) and stays there until a later upload succeeds.
//!
//! **Streaming.** A file written front to back from empty (a new file, `O_TRUNC`, `cp`, `dd`)
//! does not wait for `close`: once the staging file holds more than the multipart threshold
//! (16 MiB), a multipart upload is created with the headers the upload at close would carry,
//! and every part the writer has filled is sent in the background while it goes on writing
//! ([`crate::s3::stream`]: parts read back from the staging file, a bounded number in flight,
//! the writer waits when it is too far ahead). `close` then sends the tail as the last part,
//! waits for the parts and completes the upload under the same `If-None-Match` condition a PUT
//! would carry — so a 1 GiB `dd` costs at `close` about one part's upload instead of the whole
//! file's.
//!
//! The bytes already handed to the upload must stay as they are. Anything that could change
//! them or the upload's headers gives the streamed upload up (`S3Fs::abandon_stream`: it is
//! aborted in the background, and `close` uploads the whole file as before): a write or a
//! truncate below what was sent, a part failing after retries, a metadata change while open
//! (`setxattr`, `chmod`, `utimes`: a multipart upload's metadata is fixed at its creation), an
//! unlink, a rename of the file or its directory (the key changed). A write elsewhere (above
//! what was sent, but not at the end) only stops further parts until `close`. The upload's
//! `x-amz-meta-mtime`, when the object carries one, is the time the upload started, as S3's
//! own Last-Modified of a multipart object is.
//!
//! **Lost replies.** A completion (or a conditional PUT) whose reply is lost is looked into by
//! the storage layer ([`crate::s3::reconcile`]): when the server holds the write, `close`
//! succeeds; the whole file is uploaded again only when the streamed upload's completion
//! certainly did not happen; when that cannot be known, `close` fails with EIO and the bytes
//! are kept, never uploaded a second time under a condition the first completion may have
//! used up.

use std::sync::Arc;

use super::attr::format_mtime;
use super::file::OpenFile;
use super::{lock, now, FsError, FsResult, S3Fs};
use crate::cache::inode::ObjectMeta;
use crate::s3::storage::guess_content_type;
use crate::s3::stream::UploadQueue;
use crate::s3::{Metadata, PutOptions, StreamingUpload};

/// What an upload of a file carries.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadPlan {
    /// User metadata.
    pub metadata: Metadata,
    /// Content headers (at least a Content-Type).
    pub content_headers: Vec<(String, String)>,
    /// `If-None-Match: *` (created with `O_EXCL`).
    pub exclusive: bool,
}

impl UploadPlan {
    fn put_options(&self) -> PutOptions {
        PutOptions {
            metadata: self.metadata.clone(),
            content_headers: self.content_headers.clone(),
            if_none_match_any: self.exclusive,
            if_match: None,
        }
    }

    /// Would an upload with `other` store the same headers? The `mtime` metadata is left out
    /// unless it was set explicitly (it is otherwise just the time of the upload).
    fn same_headers(&self, other: &UploadPlan, mtime_explicit: bool) -> bool {
        let strip = |m: &Metadata| {
            let mut m = m.clone();
            if !mtime_explicit {
                m.remove("mtime");
            }
            m
        };
        self.content_headers == other.content_headers
            && strip(&self.metadata) == strip(&other.metadata)
    }
}

/// A multipart upload fed while the file is written, and what it was created for.
#[derive(Debug)]
pub struct Streaming {
    upload: StreamingUpload,
    key: String,
    plan: UploadPlan,
}

impl S3Fs {
    /// What the next upload of `of` carries: the metadata the object had (or as changed while
    /// open) — never dropped — with `mtime` brought up to date unless it was set explicitly,
    /// and the content headers (a Content-Type from the extension for a new object).
    fn upload_plan(&self, of: &mut OpenFile, key: &str) -> FsResult<UploadPlan> {
        let (mut metadata, content_headers) = match (&of.pending_meta, of.remote_exists) {
            (Some(m), _) => (m.clone(), of.content_headers.clone()),
            (None, true) => match self.object_meta(of.ino) {
                Ok(m) => (m.metadata, Some(m.content_headers)),
                Err(e) if e.errno == libc::ENOENT => (Metadata::new(), None),
                Err(e) => return Err(e),
            },
            (None, false) => (Metadata::new(), None),
        };
        if !of.mtime_explicit && metadata.get("mtime").is_some() {
            metadata.insert("mtime", format_mtime(now()));
        }
        let content_headers = content_headers
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| vec![("content-type".into(), guess_content_type(key))]);
        Ok(UploadPlan {
            metadata,
            content_headers,
            exclusive: of.exclusive,
        })
    }

    /// Upload the staging file if it has changes: complete the streamed upload if there is one
    /// still valid, else upload the whole file (one PUT, or a parallel multipart upload).
    pub(crate) fn upload_if_dirty(&self, of: &mut OpenFile) -> FsResult<()> {
        let result = self.upload_if_dirty_inner(of);
        // Aborts of given-up streamed uploads finish before `close` returns, so nothing of
        // them is left on the server once the file is closed.
        for h in of.aborting.drain(..) {
            let _ = h.join();
        }
        result
    }

    fn upload_if_dirty_inner(&self, of: &mut OpenFile) -> FsResult<()> {
        if !of.is_dirty() {
            self.abandon_stream(of, "not to be uploaded");
            return Ok(());
        }
        // Not while a rename is moving this key (it would delete the upload with its source).
        let ino = of.ino;
        let Some((key, _uploading)) = self.rename_gate.upload(|| self.table().key_of(ino)) else {
            self.abandon_stream(of, "unlinked");
            return Ok(());
        };
        let Some(staging) = &of.staging else {
            return Ok(());
        };
        let len = staging
            .file
            .metadata()
            .map_err(|e| FsError::new(libc::EIO, format!("staging: {e}")))?
            .len();
        let plan = match self.upload_plan(of, &key) {
            Ok(p) => p,
            Err(e) => {
                self.abandon_stream(of, "its metadata cannot be read");
                return Err(self.save_unsaved(of, &key, e));
            }
        };
        let streamed = match of.stream.take() {
            Some(s) if s.key != key => {
                self.give_up(of, s, "the file was renamed meanwhile");
                None
            }
            Some(s) if !s.plan.same_headers(&plan, of.mtime_explicit) => {
                self.give_up(of, s, "its metadata changed meanwhile");
                None
            }
            Some(s) => {
                let cond = PutOptions {
                    if_none_match_any: plan.exclusive,
                    ..PutOptions::default()
                };
                match s.upload.finish(len, &cond) {
                    Ok(etag) => Some((Ok(etag), s.plan)),
                    // The condition would fail a whole-file upload too.
                    Err(e) if e.is_precondition_failed() => Some((Err(e), s.plan)),
                    // The completion may have happened: a second upload could only be wrong
                    // (under `If-None-Match` it would meet this one's object and blame someone
                    // else). The bytes are kept and `close` says EIO.
                    Err(e) if e.is_outcome_unknown() => Some((Err(e), s.plan)),
                    // Anything else means the completion did not happen (see
                    // `Storage::finish_multipart`): upload the whole file instead.
                    Err(e) => {
                        log::warn!(
                            "{key}: the streamed upload failed ({e}); uploading the whole file"
                        );
                        None
                    }
                }
            }
            None => None,
        };
        let (result, plan) = match streamed {
            Some(r) => r,
            None => {
                let Some(staging) = &of.staging else {
                    return Ok(());
                };
                let r =
                    self.storage
                        .put_file(&self.obj(&key), &staging.file, len, &plan.put_options());
                (r, plan)
            }
        };
        match result {
            Ok(etag) => {
                self.uploaded(of, &key, len, etag, plan);
                Ok(())
            }
            Err(e) => {
                // Keep what this upload carried for the retry at release and for the note.
                of.pending_meta = Some(plan.metadata);
                of.content_headers = Some(plan.content_headers);
                let e: FsError = if e.is_precondition_failed() && of.exclusive {
                    FsError::new(
                        libc::EEXIST,
                        format!("{key}: created by someone else meanwhile"),
                    )
                } else {
                    e.into()
                };
                Err(self.save_unsaved(of, &key, e))
            }
        }
    }

    /// The object is on the server: the file is clean, and the table knows the new version.
    fn uploaded(
        &self,
        of: &mut OpenFile,
        key: &str,
        len: u64,
        etag: Option<String>,
        plan: UploadPlan,
    ) {
        of.dirty = false;
        of.exclusive = false;
        of.remote_exists = true;
        of.etag = etag.clone();
        of.remote_size = len;
        of.stream_off = false;
        of.truncated_by = None;
        of.pending_meta = Some(plan.metadata.clone());
        of.content_headers = Some(plan.content_headers.clone());
        if let Some(p) = of.saved.take() {
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_file(p.with_extension("key"));
            log::info!("{key}: uploaded; removed the saved copy {}", p.display());
        }
        let expires = self.expiry();
        let mut t = self.table();
        if let Some(n) = t.get_mut(of.ino) {
            n.attr.size = len;
            n.attr.etag = etag.clone();
            n.attr.mtime = now();
            n.attr_expires = expires;
            n.attr_set = std::time::Instant::now();
            super::attr::apply_metadata(&mut n.attr, &plan.metadata);
            n.meta = Some(ObjectMeta {
                metadata: plan.metadata,
                content_headers: plan.content_headers,
                etag,
            });
            n.meta_expires = expires;
        }
    }

    /// After a write of `[offset, end)` into the staging file: keep track of whether the file
    /// is written front to back, start a streamed upload once it is large enough, hand it the
    /// parts now complete, or give it up if the write changed bytes already sent. Returns the
    /// upload's queue for the writer to wait on (after releasing the file's lock).
    pub(super) fn after_write(
        &self,
        of: &mut OpenFile,
        offset: u64,
        end: u64,
    ) -> Option<Arc<UploadQueue>> {
        of.seq_end = match of.seq_end {
            Some(e) if e == offset => Some(end),
            _ => None,
        };
        if of
            .stream
            .as_ref()
            .is_some_and(|s| offset < s.upload.shipped_end())
        {
            self.abandon_stream(of, "a write changed bytes already sent");
            return None;
        }
        let written = of.seq_end?;
        if of.stream.is_none() {
            if of.stream_off || written <= self.storage.transfer().multipart_threshold {
                return None;
            }
            self.start_stream(of);
        }
        let s = of.stream.as_mut()?;
        match s.upload.ship_up_to(written) {
            Ok(()) => Some(s.upload.queue()),
            Err(e) => {
                self.abandon_stream(of, &format!("a part failed ({e})"));
                None
            }
        }
    }

    /// After the staging file was truncated to `size`.
    pub(super) fn after_truncate(&self, of: &mut OpenFile, size: u64) {
        if of
            .stream
            .as_ref()
            .is_some_and(|s| size < s.upload.shipped_end())
        {
            self.abandon_stream(of, "truncated below what was already sent");
        }
        if size == 0 {
            of.seq_end = Some(0);
            of.stream_off = false;
        } else if of.seq_end != Some(size) {
            of.seq_end = None;
        }
    }

    /// Create the multipart upload for a file being written front to back. On failure the
    /// file is simply uploaded at close.
    fn start_stream(&self, of: &mut OpenFile) {
        of.stream_off = true; // until it started
        if of.unlinked {
            return;
        }
        let Some(key) = self.table().key_of(of.ino) else {
            return;
        };
        let plan = match self.upload_plan(of, &key) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("{key}: no streamed upload ({e})");
                return;
            }
        };
        let file = match of.staging.as_ref().map(|s| s.file.try_clone()) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                log::warn!("{key}: no streamed upload (staging file: {e})");
                return;
            }
            None => return,
        };
        match StreamingUpload::start(&self.storage, &self.obj(&key), &plan.put_options(), file) {
            Ok(upload) => {
                log::debug!(
                    "{key}: streaming the upload while the file is written (upload {})",
                    upload.upload_id().unwrap_or_default()
                );
                // Fix the headers now: a later change gives this upload up.
                of.pending_meta = Some(plan.metadata.clone());
                of.content_headers = Some(plan.content_headers.clone());
                of.stream = Some(Streaming { upload, key, plan });
                of.stream_off = false;
            }
            Err(e) => log::warn!("{key}: cannot start a streamed upload ({e}); uploading at close"),
        }
    }

    /// Give up the streamed upload, if any (aborted in the background; the whole file is
    /// uploaded at close instead), and start no other until the file is emptied or uploaded.
    pub(crate) fn abandon_stream(&self, of: &mut OpenFile, why: &str) {
        if let Some(s) = of.stream.take() {
            self.give_up(of, s, why);
        }
    }

    fn give_up(&self, of: &mut OpenFile, s: Streaming, why: &str) {
        log::info!(
            "{}: {why}: aborting the streamed upload; the whole file is uploaded at close",
            s.key
        );
        of.stream_off = true;
        if let Some(h) = s.upload.abort_in_background() {
            of.aborting.push(h);
        }
    }

    /// Keep the staging file under `unsaved/` after a failed upload; the error becomes EIO.
    pub(super) fn save_unsaved(&self, of: &mut OpenFile, key: &str, e: FsError) -> FsError {
        let Some(staging) = &of.staging else {
            return e;
        };
        if of.saved.is_none() {
            let stamp = now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let safe: String = key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(150)
                .collect();
            let path = self.unsaved_dir.join(format!("{stamp}-{safe}.data"));
            // A hard link shares the staging file's inode (later writes land in it too) and so
            // its mode, private since its creation; a copy is created private too.
            let linked = std::fs::hard_link(&staging.path, &path)
                .or_else(|_| crate::s3::private::copy_new(&staging.path, &path).map(|_| ()));
            match linked {
                Ok(()) => {
                    // The note: the object's name, then the headers its upload carried, so
                    // `s3mount --recover` restores metadata and Content-Type too.
                    let mut note = format!("s3://{}/{key}\n", self.opts.bucket);
                    for (n, v) in of.content_headers.iter().flatten() {
                        note.push_str(&format!("{n}: {v}\n"));
                    }
                    if let Some(m) = &of.pending_meta {
                        for (n, v) in m.iter() {
                            let v = crate::s3::meta::encode_value(v);
                            note.push_str(&format!("{n}: {v}\n"));
                        }
                    }
                    let _ = crate::s3::private::write(&path.with_extension("key"), note.as_bytes());
                    of.saved = Some(path);
                }
                Err(err) => log::error!("{key}: could not keep the unsaved content: {err}"),
            }
        }
        if let Some(p) = &of.saved {
            log::error!(
                "{key}: upload failed ({e}); the content is kept in {}",
                p.display()
            );
        }
        FsError::new(
            if e.errno == libc::EEXIST {
                libc::EEXIST
            } else {
                libc::EIO
            },
            e.message,
        )
    }

    /// Mark an open file unlinked: it is not uploaded any more, and a streamed upload of it is
    /// aborted.
    pub(crate) fn unlink_open_file(&self, ino: u64) {
        let open = lock(&self.files).get(&ino).cloned();
        if let Some(f) = open {
            let mut of = lock(&f);
            of.unlinked = true;
            self.abandon_stream(&mut of, "unlinked while open");
        }
    }
}
