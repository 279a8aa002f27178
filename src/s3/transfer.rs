//! The multipart machinery of a [`super::Bucket`]: large uploads and copies part by part, in
//! parallel, each upload on disk in the journal while it runs.
//!
//! Every multipart upload starts with `begin` (CreateMultipartUpload, then the
//! journal entry, before any part is sent) and ends with `finish` (completion,
//! looked into when its reply is lost: see [`super::reconcile`]) or `abort`; the
//! journal entry goes once it is completed or aborted (see [`super::journal`]). A part that
//! fails aborts the upload, so nothing partial is left behind.
//!
//! `upload_file` sends a file in parts of [`TransferConfig::part_size_for`] its
//! length; `copy_parts` copies an object above S3's 5 GiB single-copy limit with
//! UploadPartCopy, carrying its metadata over (a multipart upload does not copy it).

use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::body::RequestBody;
use super::capability::Capabilities;
use super::client::RetryPolicy;
use super::error::{Result, StorageError};
use super::fallback;
use super::journal::{JournalEntry, UploadJournal};
use super::meta::Metadata;
use super::metrics::S3Metrics;
use super::name::ObjectRef;
use super::reconcile::{self, Completion};
use super::store::{abort_if_open, ObjectStore, MAX_PARTS, MAX_SINGLE_COPY, MIN_PART_SIZE};
use super::tags;
use super::types::{CopyRequest, CopyResult, ListedPart, PendingUpload, PutOptions};
use super::types::{UploadsPage, UploadsRequest};

/// Pages of ListMultipartUploads read at most: a server that keeps answering "truncated"
/// without advancing is an error, not a loop.
const MAX_UPLOAD_PAGES: usize = 100_000;

/// Sizes and parallelism of large transfers.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Files larger than this are uploaded with multipart.
    pub multipart_threshold: u64,
    /// Preferred part size; grown when needed to stay under 10 000 parts.
    pub part_size: u64,
    /// Objects larger than this are copied with UploadPartCopy.
    pub copy_threshold: u64,
    /// Part size for multipart copies.
    pub copy_part_size: u64,
    /// Parts in flight at once.
    pub parallelism: usize,
}

impl Default for TransferConfig {
    /// 16 MiB threshold and 8 MiB parts (the size AWS tools use; large enough that request
    /// overhead is small, small enough that a retry resends little); 5 GiB copy threshold with
    /// 512 MiB copy parts; 8 parts in flight, enough to fill a fast link from one host.
    fn default() -> Self {
        TransferConfig {
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            copy_threshold: MAX_SINGLE_COPY,
            copy_part_size: 512 * 1024 * 1024,
            parallelism: 8,
        }
    }
}

impl TransferConfig {
    /// The part size for an object of `len` bytes: the preferred size, doubled until the upload
    /// fits in [`MAX_PARTS`] parts.
    pub fn part_size_for(&self, len: u64) -> u64 {
        let mut size = self.part_size.max(MIN_PART_SIZE);
        while len.div_ceil(size) > MAX_PARTS {
            size = size.saturating_mul(2);
        }
        size
    }
}

/// A multipart upload this process started: its object, its id and, when the bucket has an
/// [`UploadJournal`], its journal entry (removed once the upload is completed or aborted).
#[derive(Debug)]
pub struct MultipartUpload {
    /// The object being uploaded.
    pub obj: ObjectRef,
    /// The upload id.
    pub upload_id: String,
    /// The user metadata it was created with (the object it makes will carry it).
    metadata: Metadata,
    entry: Option<JournalEntry>,
}

impl MultipartUpload {
    /// The user metadata the upload was created with.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The upload is completed or aborted: forget its journal entry.
    fn done(self) {
        if let Some(entry) = self.entry {
            entry.remove();
        }
    }
}

/// What the multipart machinery works with: a bucket's store, settings and journal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transfers<'a> {
    pub store: &'a dyn ObjectStore,
    pub config: &'a TransferConfig,
    pub retry: &'a RetryPolicy,
    pub journal: Option<&'a UploadJournal>,
    /// Where the uploads in flight are shown, if anywhere.
    pub metrics: Option<&'a Arc<S3Metrics>>,
    pub caps: &'a Capabilities,
}

impl Transfers<'_> {
    /// Start a multipart upload (`CreateMultipartUpload` with `opts`' metadata and content
    /// headers) and record it in the journal, if any, before any part is sent. A journal that
    /// cannot be written is logged, not fatal: the upload itself is still sound.
    pub fn begin(&self, obj: &ObjectRef, opts: &PutOptions) -> Result<MultipartUpload> {
        // The object it replaces keeps its tags (see `super::tags`).
        let upload_id = tags::keeping_tags(self.store, obj, opts, |opts| {
            self.store.create_multipart_upload(obj, opts)
        })?;
        let entry = match self.journal {
            Some(j) => match j.record(obj, &upload_id) {
                Ok(e) => Some(e),
                Err(e) => {
                    log::warn!(
                        "{obj}: cannot record multipart upload {upload_id} in the journal {} ({e}); a crash would leave it for --abort-stale-uploads",
                        j.dir().display()
                    );
                    None
                }
            },
            None => None,
        };
        Ok(MultipartUpload {
            obj: obj.clone(),
            upload_id,
            metadata: opts.metadata.clone(),
            entry,
        })
    }

    /// Complete the upload with these part results (`size` bytes in all) under the conditions
    /// of `cond`, or abort it if any failed. Its journal entry goes once it is completed or
    /// aborted. A completion whose reply is lost is looked into before it is sent again (see
    /// [`super::reconcile`]): the error is [`StorageError::OutcomeUnknown`] only when the
    /// completion may have happened; any other error means it did not.
    pub fn finish(
        &self,
        upload: MultipartUpload,
        parts: Result<Vec<(u32, String)>>,
        size: u64,
        cond: &PutOptions,
    ) -> Result<Option<String>> {
        let parts = match parts {
            Ok(p) => p,
            Err(e) => {
                self.abort_logged(upload);
                return Err(e);
            }
        };
        let completion = Completion {
            obj: &upload.obj,
            upload_id: &upload.upload_id,
            metadata: &upload.metadata,
            parts: &parts,
            size,
        };
        let completed = fallback::complete(self.store, self.caps, &upload.obj, cond, |cond| {
            reconcile::complete(self.store, self.retry, completion, cond)
        });
        match completed {
            Ok(r) => {
                upload.done();
                Ok(r.etag)
            }
            Err(e) if e.is_outcome_unknown() => Err(self.abort_unknown(upload, e)),
            Err(e) => {
                self.abort_logged(upload);
                Err(e)
            }
        }
    }

    /// Abort an upload whose completion may have happened. An abort that finds the upload
    /// settles it: the completion did not happen, and now cannot (the error becomes a plain
    /// network error, so a caller may upload another way).
    fn abort_unknown(&self, upload: MultipartUpload, e: StorageError) -> StorageError {
        let (obj, id) = (upload.obj.clone(), upload.upload_id.clone());
        match abort_if_open(self.store, &obj, &id) {
            Ok(found) => {
                upload.done();
                match e {
                    StorageError::OutcomeUnknown { what, detail } if found => {
                        StorageError::Network {
                            what,
                            detail: format!("{detail}; the upload was still open and is aborted: it was not completed"),
                        }
                    }
                    e => e,
                }
            }
            Err(abort) => {
                log::warn!("{obj}: could not abort multipart upload {id}: {abort}");
                e
            }
        }
    }

    /// Abort an upload this process started (one already gone is fine); its journal entry goes
    /// once the abort succeeded (else it stays for the next start's recovery).
    pub fn abort(&self, upload: MultipartUpload) -> Result<()> {
        abort_if_open(self.store, &upload.obj, &upload.upload_id)?;
        upload.done();
        Ok(())
    }

    fn abort_logged(&self, upload: MultipartUpload) {
        let (obj, id) = (upload.obj.clone(), upload.upload_id.clone());
        if let Err(abort) = self.abort(upload) {
            log::warn!("{obj}: could not abort multipart upload {id}: {abort}");
        }
    }

    /// Upload `len` bytes of `file` as `obj` with a parallel multipart upload, completed under
    /// `opts`' conditions (S3 checks If-None-Match / If-Match at completion).
    pub fn upload_file(
        &self,
        obj: &ObjectRef,
        file: &File,
        len: u64,
        opts: &PutOptions,
    ) -> Result<Option<String>> {
        let part_size = self.config.part_size_for(len);
        let parts = len.div_ceil(part_size);
        let ticket = self.metrics.map(|m| m.upload_started(&obj.key, len));
        let upload = self.begin(obj, opts)?;
        let result = self.run_parts(parts, |n| {
            let offset = (u64::from(n) - 1) * part_size;
            let part_len = part_size.min(len - offset);
            let body = RequestBody::File {
                file,
                offset,
                len: part_len,
            };
            let etag = self.store.upload_part(obj, &upload.upload_id, n, body)?;
            if let Some(t) = &ticket {
                t.sent(part_len);
            }
            Ok(etag)
        });
        self.finish(upload, result, len, opts)
    }

    /// Copy `c.src` (`size` bytes) to `c.dst` with UploadPartCopy, pinned to `c.if_match`.
    pub fn copy_parts(&self, c: &CopyRequest, size: u64) -> Result<CopyResult> {
        let opts = match &c.replace {
            Some(r) => PutOptions {
                metadata: r.metadata.clone(),
                content_headers: r.content_headers.clone(),
                ..PutOptions::default()
            },
            None => {
                // Multipart uploads don't copy metadata: carry it over explicitly.
                let head = self.store.head_object(&c.src)?;
                PutOptions {
                    metadata: head.metadata,
                    content_headers: head.content_headers,
                    ..PutOptions::default()
                }
            }
        };
        // A copy keeps the source's tags (unless the request names its own); an upload only
        // has those it is given.
        let opts = tags::with_tags(self.store, &c.src, &opts);
        let part_size = self.config.copy_part_size.max(MIN_PART_SIZE);
        let parts = size.div_ceil(part_size);
        let upload = self.begin(&c.dst, &opts)?;
        let result = self.run_parts(parts, |n| {
            let start = (u64::from(n) - 1) * part_size;
            let end = (start + part_size).min(size);
            let if_match = c.if_match.as_deref();
            let id = &upload.upload_id;
            self.store
                .upload_part_copy(&c.dst, id, n, &c.src, (start, end), if_match)
        });
        let etag = self.finish(upload, result, size, &PutOptions::default())?;
        Ok(CopyResult {
            etag,
            last_modified: None,
        })
    }

    /// Run `part(n)` for n in 1..=parts on up to `parallelism` threads; results in part order.
    fn run_parts(
        &self,
        parts: u64,
        part: impl Fn(u32) -> Result<String> + Sync,
    ) -> Result<Vec<(u32, String)>> {
        let parts =
            u32::try_from(parts).map_err(|_| StorageError::invalid("upload", "too many parts"))?;
        let next = AtomicU32::new(1);
        let results: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::with_capacity(parts as usize));
        let first_error: Mutex<Option<StorageError>> = Mutex::new(None);
        let workers = self.config.parallelism.clamp(1, parts.max(1) as usize);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if first_error.lock().is_some() {
                        return;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n > parts {
                        return;
                    }
                    match part(n) {
                        Ok(etag) => results.lock().push((n, etag)),
                        Err(e) => {
                            first_error.lock().get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.lock().take() {
            return Err(e);
        }
        let mut done = std::mem::take(&mut *results.lock());
        done.sort_by_key(|(n, _)| *n);
        Ok(done)
    }
}

/// Every in-progress multipart upload of `bucket` whose key starts with `prefix`
/// (ListMultipartUploads, all pages), with the time each was started.
pub(crate) fn all_uploads(
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<PendingUpload>> {
    let mut out = Vec::new();
    let mut list = UploadsRequest {
        prefix: prefix.to_string(),
        ..UploadsRequest::default()
    };
    let what = format!("ListMultipartUploads s3://{bucket}/{prefix}");
    for _ in 0..MAX_UPLOAD_PAGES {
        let page: UploadsPage = store.list_multipart_uploads(bucket, &list)?;
        out.extend(page.uploads.into_iter().map(|u| PendingUpload {
            key: u.key,
            upload_id: u.upload_id,
            initiated: u.initiated,
        }));
        let next = page
            .next_key_marker
            .map(|k| (Some(k), page.next_upload_id_marker));
        let current = (list.key_marker.clone(), list.upload_id_marker.clone());
        match next {
            Some(n) if page.is_truncated && current != n => {
                (list.key_marker, list.upload_id_marker) = n;
            }
            Some(_) if page.is_truncated => return Err(not_advancing(what)),
            _ => return Ok(out),
        }
    }
    Err(StorageError::BadReply {
        what,
        detail: "too many pages".into(),
    })
}

/// The parts uploaded so far to a multipart upload (ListParts, all pages).
pub(crate) fn all_parts(
    store: &dyn ObjectStore,
    obj: &ObjectRef,
    upload_id: &str,
) -> Result<Vec<ListedPart>> {
    let mut out = Vec::new();
    let mut marker: Option<u32> = None;
    loop {
        let page = store.list_parts(obj, upload_id, marker, None)?;
        out.extend(page.parts);
        match page.next_part_number_marker {
            // Part numbers only grow, so this ends (at most 10 000 parts).
            Some(m) if page.is_truncated && marker.is_none_or(|old| m > old) => marker = Some(m),
            Some(_) if page.is_truncated => return Err(not_advancing(format!("ListParts {obj}"))),
            _ => return Ok(out),
        }
    }
}

fn not_advancing(what: String) -> StorageError {
    StorageError::BadReply {
        what,
        detail: "truncated listing does not advance".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_stays_under_part_limit() {
        let t = TransferConfig::default();
        assert_eq!(t.part_size_for(100 << 20), 8 << 20);
        let huge = 5u64 << 40; // 5 TiB
        let p = t.part_size_for(huge);
        assert!(huge.div_ceil(p) <= MAX_PARTS);
    }
}
