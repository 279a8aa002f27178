//! Uploading a written file: at `close`, and while a large file is still being written.
//!
//! At `flush` (every `close`), `fsync` and the last `release`, a dirty file is uploaded with the
//! object's existing metadata and content headers plus the changes made while it was open
//! (`S3Fs::upload_plan`), so overwriting content never drops metadata. `close` returns only
//! once the object is complete on the server, and fails with EIO if the upload failed after
//! retries; the staging file is then kept under `<cache-dir>/unsaved/` with a note naming the
//! object and its headers ([`super::unsaved`]) until a later upload succeeds.
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
//! them or the upload's headers gives the streamed upload up (`OpenFile::give_up_stream`: it is
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
use std::time::SystemTime;

use super::attr::{format_mtime, leave_times_out_to_fit, metadata_attrs};
use super::error::{FsError, FsResult};
use super::open_file::OpenFile;
use super::upload_plan::{Streaming, UploadPlan};
use super::S3Fs;
use crate::cache::inode::ObjectMeta;
use crate::s3::meta::STORAGE_CLASS_HEADER;
use crate::s3::storage::guess_content_type;
use crate::s3::stream::UploadQueue;
use crate::s3::{Metadata, PutOptions, StreamingUpload};

/// Metadata that describes the bytes of the object, not the file: wrong once they change, so
/// an upload of new content drops it (copies of the same bytes — chmod, setxattr, rename —
/// keep it). `md5chksum`: rclone's base64 MD5 of a multipart upload's content, which rclone
/// takes as the object's hash and checks downloads against ("corrupted on transfer").
pub(crate) const CONTENT_DIGEST_METADATA: [&str; 1] = ["md5chksum"];

impl S3Fs {
    /// What the next upload of `of` carries: the metadata the object had (or as changed while
    /// open) — never dropped but for digests of the old content ([`CONTENT_DIGEST_METADATA`]) —
    /// with `mtime` brought up to date unless it was set explicitly, and the content headers
    /// (a Content-Type from the extension for a new object).
    pub(super) fn upload_plan(&self, of: &OpenFile, key: &str) -> FsResult<UploadPlan> {
        let (mut metadata, content_headers) = match (of.pending_metadata(), of.version().exists()) {
            (Some(m), _) => (m.clone(), of.content_headers().cloned()),
            (None, true) => match self.object_meta(of.ino()) {
                Ok(m) => (m.metadata, Some(m.content_headers)),
                Err(e) if e.errno == libc::ENOENT => (Metadata::new(), None),
                Err(e) => return Err(e),
            },
            (None, false) => (Metadata::new(), None),
        };
        for name in CONTENT_DIGEST_METADATA {
            metadata.remove(name);
        }
        // Every upload records the times the file shows (its last write or truncate, its
        // creation; an mtime set explicitly), as a disk keeps them through a close — not the
        // time of the upload, and not its Last-Modified, whole seconds up to one earlier than
        // the last write: `make` took a header appended right after a build for older than the
        // object file compiled from it within that second, and rebuilt nothing.
        let now = SystemTime::now();
        let shown = self
            .table()
            .get(of.ino())
            .map(|n| (n.attr().mtime, n.attr().ctime));
        let mtime = shown.map_or(now, |(m, _)| m);
        let ctime = shown.and_then(|(_, c)| c).map_or(mtime, |c| c.max(mtime));
        if !of.mtime_explicit() {
            metadata.insert("mtime", format_mtime(mtime));
        }
        metadata.insert("ctime", format_mtime(ctime));
        // Those times may take more room than the ones they replace (s3fs writes whole
        // seconds, rclone no ctime), where `setxattr` let the metadata fill the 2 KB: they give
        // way rather than fail the upload. An mtime set explicitly stays; one that is the
        // last write's time is about what the object's Last-Modified says without it.
        leave_times_out_to_fit(&mut metadata, !of.mtime_explicit());
        let content_headers = content_headers
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| self.new_file_headers(key));
        Ok(UploadPlan {
            metadata,
            content_headers,
            exclusive: of.exclusive(),
        })
    }

    /// The headers of a new regular file `key`: a Content-Type from its name, and the storage
    /// class of `--storage-class` (an object that exists keeps its own, with its other kept
    /// headers; directory markers, symlinks and special files, which are tiny, stay in the
    /// default class).
    pub(crate) fn new_file_headers(&self, key: &str) -> Vec<(String, String)> {
        let mut h = vec![("content-type".into(), guess_content_type(key))];
        if let Some(class) = &self.opts.storage_class {
            h.push((STORAGE_CLASS_HEADER.into(), class.clone()));
        }
        h
    }

    /// Upload the staging file if it has changes: complete the streamed upload if there is one
    /// still valid, else upload the whole file (one PUT, or a parallel multipart upload).
    pub(crate) fn upload_if_dirty(&self, of: &mut OpenFile) -> FsResult<()> {
        let result = self.upload_if_dirty_inner(of);
        // Aborts of given-up streamed uploads finish before `close` returns, so nothing of
        // them is left on the server once the file is closed.
        of.join_aborts();
        result
    }

    fn upload_if_dirty_inner(&self, of: &mut OpenFile) -> FsResult<()> {
        if !of.is_dirty() {
            of.give_up_stream("not to be uploaded");
            return Ok(());
        }
        // A copy not made on the server: its bytes into the staging file, then uploaded.
        self.settle_copy(of)?;
        // Not while a rename is moving this key (it would delete the upload with its source).
        let ino = of.ino();
        let Some((key, _uploading)) = self.rename_gate.write(|| self.table().key_of(ino)) else {
            of.give_up_stream("unlinked");
            return Ok(());
        };
        let Some(staging) = of.staging() else {
            return Ok(());
        };
        let len = staging
            .file()
            .metadata()
            .map_err(|e| FsError::new(libc::EIO, format!("staging: {e}")))?
            .len();
        let plan = match self.upload_plan(of, &key) {
            Ok(p) => p,
            Err(e) => {
                of.give_up_stream("its metadata cannot be read");
                return Err(self.save_unsaved(of, &key, e));
            }
        };
        let streamed = match of.take_stream() {
            Some(s) if s.key() != key => {
                of.give_up(s, "the file was renamed meanwhile");
                None
            }
            Some(s) if !s.plan().same_headers(&plan, of.mtime_explicit()) => {
                of.give_up(s, "its metadata changed meanwhile");
                None
            }
            Some(s) => {
                let cond = PutOptions {
                    if_none_match_any: plan.exclusive,
                    ..PutOptions::default()
                };
                match s.finish(len, &cond) {
                    (Ok(etag), plan) => Some((Ok(etag), plan)),
                    // The condition would fail a whole-file upload too.
                    (Err(e), plan) if e.is_precondition_failed() => Some((Err(e), plan)),
                    // The completion may have happened: a second upload could only be wrong
                    // (under `If-None-Match` it would meet this one's object and blame someone
                    // else). The bytes are kept and `close` says EIO.
                    (Err(e), plan) if e.is_outcome_unknown() => Some((Err(e), plan)),
                    // Anything else means the completion did not happen (see
                    // `Bucket::finish_multipart`): upload the whole file instead.
                    (Err(e), _) => {
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
                let Some(staging) = of.staging() else {
                    return Ok(());
                };
                let r = self
                    .bucket
                    .put_file(&key, staging.file(), len, &plan.put_options());
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
                of.keep_plan(&plan);
                let e: FsError = if e.is_precondition_failed() && of.exclusive() {
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
    pub(super) fn uploaded(
        &self,
        of: &mut OpenFile,
        key: &str,
        len: u64,
        etag: Option<String>,
        plan: UploadPlan,
    ) {
        of.uploaded(len, etag.clone());
        self.drop_saved_copy(of, key);
        let expires = self.expiry();
        let attrs = metadata_attrs(&plan.metadata);
        let meta = ObjectMeta {
            metadata: plan.metadata,
            content_headers: plan.content_headers,
            etag: etag.clone(),
        };
        // The file keeps the times it shows: a close changes none on a disk (it showed the
        // upload's time, which a `chmod` then recorded).
        let mut t = self.table();
        t.set_version(of.ino(), len, etag, None);
        t.record_meta(of.ino(), meta, &attrs, expires);
        t.refresh_attr(of.ino(), expires);
    }

    /// After a write of `[offset, end)` into the staging file: start a streamed upload once
    /// the file written front to back is large enough, and hand it the parts now complete.
    /// Returns the upload's queue for the writer to wait on (after releasing the file's lock).
    pub(super) fn after_write(
        &self,
        of: &mut OpenFile,
        offset: u64,
        end: u64,
    ) -> Option<Arc<UploadQueue>> {
        let written = of.wrote(offset, end)?;
        if of.may_start_stream(written, self.bucket.transfer().multipart_threshold) {
            self.start_stream(of);
        }
        of.feed_stream(written)
    }

    /// Create the multipart upload for a file being written front to back. On failure the
    /// file is simply uploaded at close.
    fn start_stream(&self, of: &mut OpenFile) {
        if !of.claim_stream_start() {
            return;
        }
        let Some(key) = self.table().key_of(of.ino()) else {
            return;
        };
        let plan = match self.upload_plan(of, &key) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("{key}: no streamed upload ({e})");
                return;
            }
        };
        let file = match of.staging().map(|s| s.file().try_clone()) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                log::warn!("{key}: no streamed upload (staging file: {e})");
                return;
            }
            None => return,
        };
        match StreamingUpload::start_in(&self.bucket, &key, &plan.put_options(), file) {
            Ok(upload) => {
                log::debug!(
                    "{key}: streaming the upload while the file is written (upload {})",
                    upload.upload_id().unwrap_or_default()
                );
                // Fix the headers now: a later change gives this upload up.
                of.set_stream(Streaming::new(upload, key, plan));
            }
            Err(e) => log::warn!("{key}: cannot start a streamed upload ({e}); uploading at close"),
        }
    }
}
