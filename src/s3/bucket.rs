//! [`Bucket`]: the policy layer over an [`ObjectStore`], for one bucket, keyed by object key.
//!
//! This is what the file system and the seed API use; everything that is more than one
//! request lives here or in the rooms it calls:
//! - reads: [`Bucket::read_range`] (exact ranges, a broken body resumed with `If-Match`) and
//!   [`Bucket::download`] (see [`super::read`]);
//! - writes: [`Bucket::put`] (a conditional PUT whose reply is lost is looked into, not resent
//!   blindly: [`super::reconcile`]) and [`Bucket::put_file`] (one PUT up to
//!   [`TransferConfig::multipart_threshold`], a parallel multipart upload above it);
//! - [`Bucket::copy`]: one CopyObject, or UploadPartCopy above
//!   [`TransferConfig::copy_threshold`] (5 GiB, S3's limit for a single copy), sent at least
//!   [`super::spacing::SPACING`] after the last write of its target (see [`super::spacing`]);
//! - deletes and listings: [`Bucket::delete`] and [`Bucket::delete_many`] (DeleteObjects in
//!   batches of 1000), each given the version meant when known, [`Bucket::list_page`],
//!   [`Bucket::list_all`], [`Bucket::list_uploads`], [`Bucket::list_parts`];
//! - multipart uploads fed by a caller ([`super::StreamingUpload`]):
//!   [`Bucket::begin_multipart`], [`Bucket::upload_part`], [`Bucket::finish_multipart`],
//!   [`Bucket::abort_upload`], each upload in the [`UploadJournal`] while it runs (see
//!   [`super::transfer`]).
//!
//! The retries of single requests belong to the client below the store; the loops here (a
//! resumed body, the looks after a lost reply) count their attempts with the bucket's
//! [`RetryPolicy`]. Every write that is not blindly repeatable — a conditional PUT, a
//! completion, a copy, a delete — has its lost reply looked into ([`super::reconcile`]). A
//! capability the server rejects is learnt on first use and replaced by a weaker behaviour
//! ([`super::capability`], [`super::fallback`]); what was learnt is in the bucket's
//! [`Capabilities`], shared by its clones. A `Bucket` is cheap to clone and thread-safe.

use std::fs::File;
use std::sync::Arc;

use super::body::RequestBody;
use super::capability::{with_fallbacks, Capabilities, Capability};
use super::client::RetryPolicy;
use super::error::{Result, StorageError};
use super::fallback;
use super::journal::UploadJournal;
use super::metrics::{S3Metrics, UploadTicket};
use super::name::ObjectRef;
use super::read;
use super::reconcile;
use super::requests::delete::MAX_KEYS as DELETE_BATCH;
use super::spacing::RecentWrites;
use super::store::{head_if_any, ObjectStore, MAX_SINGLE_COPY};
use super::tags;
use super::transfer::{self, MultipartUpload, TransferConfig, Transfers};
use super::types::{
    CopyRequest, CopyResult, DeleteResult, GetObject, KeyVersion, ListPage, ListRequest,
    ListedObject, ListedPart, ObjectInfo, PendingUpload, PutOptions,
};

/// One bucket of an object store, with the policy above single requests (see the module
/// note).
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    name: String,
    transfer: TransferConfig,
    retry: RetryPolicy,
    journal: Option<Arc<UploadJournal>>,
    /// Where the uploads in flight are shown (`s3mount status`), if anywhere.
    metrics: Option<Arc<S3Metrics>>,
    caps: Arc<Capabilities>,
    /// When keys were last written, for spacing copies after them.
    recent: Arc<RecentWrites>,
}

impl Bucket {
    /// The bucket `name` of `store`, with default transfer settings and retry policy, no
    /// journal, and nothing learnt about the server's capabilities.
    pub fn new(store: Arc<dyn ObjectStore>, name: impl Into<String>) -> Self {
        Bucket {
            store,
            name: name.into(),
            transfer: TransferConfig::default(),
            retry: RetryPolicy::default(),
            journal: None,
            metrics: None,
            caps: Arc::new(Capabilities::new()),
            recent: Arc::default(),
        }
    }

    /// Show the uploads in flight, and their progress, in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<S3Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where the uploads in flight are shown, if anywhere.
    pub fn metrics(&self) -> Option<&Arc<S3Metrics>> {
        self.metrics.as_ref()
    }

    /// An upload of `key` (`total` bytes so far) in flight until the ticket is dropped.
    pub(crate) fn upload_ticket(&self, key: &str, total: u64) -> Option<UploadTicket> {
        self.metrics.as_ref().map(|m| m.upload_started(key, total))
    }

    /// Share `caps`: what one bucket learns about the server, the others know (a
    /// [`super::Storage`] gives all its buckets one set).
    pub fn with_capabilities(mut self, caps: Arc<Capabilities>) -> Self {
        self.caps = caps;
        self
    }

    /// Change the transfer settings.
    pub fn with_transfer(mut self, transfer: TransferConfig) -> Self {
        self.transfer = transfer;
        self
    }

    /// Change the policy that bounds the loops here (resumed bodies, looks after a lost reply).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Record every multipart upload in `journal` until it is completed or aborted.
    pub fn with_journal(mut self, journal: Option<Arc<UploadJournal>>) -> Self {
        self.journal = journal;
        self
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store underneath.
    pub fn store(&self) -> &dyn ObjectStore {
        &*self.store
    }

    /// The transfer settings.
    pub fn transfer(&self) -> &TransferConfig {
        &self.transfer
    }

    /// The retry policy of the loops here.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The upload journal, if any.
    pub fn journal(&self) -> Option<&UploadJournal> {
        self.journal.as_deref()
    }

    /// What the server was found not to implement so far.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// `key` in this bucket.
    pub fn obj(&self, key: &str) -> ObjectRef {
        ObjectRef {
            bucket: self.name.clone(),
            key: key.to_string(),
        }
    }

    fn transfers(&self) -> Transfers<'_> {
        Transfers {
            store: &*self.store,
            config: &self.transfer,
            retry: &self.retry,
            journal: self.journal.as_deref(),
            metrics: self.metrics.as_ref(),
            caps: &self.caps,
        }
    }

    // ---- reads ----------------------------------------------------------------------------

    /// HEAD `key`.
    pub fn head(&self, key: &str) -> Result<ObjectInfo> {
        self.learnt(key, self.store.head_object(&self.obj(key)))
    }

    /// HEAD `key`; `None` when there is no such object.
    pub fn head_if_any(&self, key: &str) -> Result<Option<ObjectInfo>> {
        self.learnt(key, head_if_any(&*self.store, &self.obj(key)))
    }

    /// GET `key`, or bytes `[start, end)` of it, only if its ETag is `if_match` when given
    /// (412 otherwise, also from a server that rejects `If-Match` on GET: the reply's ETag is
    /// compared).
    pub fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<GetObject> {
        fallback::get(&*self.store, &self.caps, &self.obj(key), range, if_match)
    }

    /// Read exactly `buf.len()` bytes at `offset` (fewer only at the end of the object) of the
    /// version whose ETag is `etag` (any version when `None`); a broken body is resumed, never
    /// mixed with another version. Returns the bytes read and the ETag.
    pub fn read_range(
        &self,
        key: &str,
        offset: u64,
        buf: &mut [u8],
        etag: Option<&str>,
    ) -> Result<(usize, Option<String>)> {
        let obj = self.obj(key);
        read::read_range(
            &*self.store,
            &self.caps,
            self.retry.resumes(),
            &obj,
            offset,
            buf,
            etag,
        )
    }

    /// Download `key` into `out` (from its current position), resuming a broken body.
    pub fn download(&self, key: &str, out: &mut File) -> Result<ObjectInfo> {
        let obj = self.obj(key);
        read::download(&*self.store, &self.caps, self.retry.resumes(), &obj, out)
    }

    // ---- writes ---------------------------------------------------------------------------

    /// PUT `body` as `key`; returns the new ETag. A conditional PUT (`If-None-Match: *`,
    /// `If-Match`) whose reply is lost is looked into before it is sent again, and a write
    /// whose outcome stays open is [`super::StorageError::OutcomeUnknown`]; a condition the
    /// server rejects is checked with a HEAD instead.
    pub fn put(
        &self,
        key: &str,
        body: RequestBody<'_>,
        opts: &PutOptions,
    ) -> Result<Option<String>> {
        let obj = self.obj(key);
        self.noted(
            key,
            fallback::put(&*self.store, &self.retry, &self.caps, &obj, body, opts),
        )
    }

    /// Upload `len` bytes of `file` as `key`: one PUT up to the multipart threshold, a parallel
    /// multipart upload above it (aborted if any part fails, so nothing partial is left).
    pub fn put_file(
        &self,
        key: &str,
        file: &File,
        len: u64,
        opts: &PutOptions,
    ) -> Result<Option<String>> {
        if len <= self.transfer.multipart_threshold {
            let body = RequestBody::File {
                file,
                offset: 0,
                len,
            };
            let ticket = self.upload_ticket(key, len);
            let result = self.put(key, body, opts);
            if let (Ok(_), Some(t)) = (&result, &ticket) {
                t.sent(len);
            }
            return result;
        }
        self.noted(
            key,
            self.transfers()
                .upload_file(&self.obj(key), file, len, opts),
        )
    }

    /// Server-side copy: one CopyObject, or UploadPartCopy above the copy threshold (the
    /// source's size is asked for when `c.size` does not say it and it matters). The
    /// destination is normally in this bucket; a multipart copy's upload is made where it is.
    /// A lost reply is looked into (the copy is never made twice); a condition or `REPLACE`
    /// the server rejects is replaced by a weaker behaviour (see [`super::fallback`]).
    pub fn copy(&self, c: &CopyRequest) -> Result<CopyResult> {
        self.noted(&c.dst.key, self.copy_now(c))
    }

    fn copy_now(&self, c: &CopyRequest) -> Result<CopyResult> {
        if c.dst.bucket == self.name {
            self.recent.space(&c.dst.key);
        }
        let size = match c.size {
            Some(s) => s,
            None if self.transfer.copy_threshold >= MAX_SINGLE_COPY => 0,
            None => self.store.head_object(&c.src)?.size,
        };
        if size > self.transfer.copy_threshold {
            let used: &[Capability] = match c.if_match {
                Some(_) => &[Capability::CopySourceIfMatch],
                None => &[],
            };
            return with_fallbacks(&self.caps, used, |without| {
                let c = fallback::checked_copy(&*self.store, c, without)?;
                self.transfers().copy_parts(&c, size)
            });
        }
        fallback::copy(&*self.store, &self.retry, &self.caps, c)
    }

    /// The headers of a copy into `key` that is to keep `key`'s own tags (none for a new
    /// object) instead of taking its source's: `content_headers` (the target's, with the
    /// count of its tags as its HEAD said) with the tags themselves, read if it has some.
    pub fn with_own_tags(
        &self,
        key: &str,
        content_headers: &[(String, String)],
    ) -> Vec<(String, String)> {
        tags::own_tags(&*self.store, &self.obj(key), content_headers)
    }

    /// DELETE `key` (no error if it is already gone, as in S3); `etag`: the version meant,
    /// when known — after a lost reply, a key found holding another version was written by
    /// another client since and is left alone.
    /// A delete is a write of the key too: a copy onto it is spaced from it
    /// ([`super::spacing`]).
    pub fn delete(&self, key: &str, etag: Option<&str>) -> Result<()> {
        self.noted(
            key,
            reconcile::delete(&*self.store, &self.retry, &self.obj(key), etag),
        )
    }

    /// Delete many keys with DeleteObjects, 1000 per request (one DeleteObject each on a
    /// server that rejects DeleteObjects), each at the version given when known (see
    /// [`Bucket::delete`]). Keys S3 reports as not deleted are returned in `errors`.
    pub fn delete_many(&self, keys: &[KeyVersion]) -> Result<DeleteResult> {
        let mut all = DeleteResult::default();
        for chunk in keys.chunks(DELETE_BATCH) {
            let r =
                fallback::delete_batch(&*self.store, &self.retry, &self.caps, &self.name, chunk)?;
            // The reply may list only the errors (quiet mode).
            for kv in chunk
                .iter()
                .filter(|kv| r.errors.iter().all(|e| e.0 != kv.key))
            {
                self.recent.written(&kv.key);
            }
            all.deleted.extend(r.deleted);
            all.errors.extend(r.errors);
        }
        Ok(all)
    }

    // ---- listings -------------------------------------------------------------------------

    /// One ListObjectsV2 page. A truncated page whose next token is the one just sent is a
    /// bad reply: a server that ignores the token (answering with the first page again, as
    /// NooBaa 2.10 and RunPod's S3 API were reported to) would otherwise make every listing
    /// loop for ever — an `ls` that never returns, a directory `mv` gathering keys until
    /// memory runs out. The AWS SDKs stop the same way.
    pub fn list_page(&self, list: &ListRequest) -> Result<ListPage> {
        let page = self.store.list_objects_v2(&self.name, list)?;
        if page.is_truncated
            && list.continuation_token.is_some()
            && page.next_continuation_token == list.continuation_token
        {
            return Err(StorageError::BadReply {
                what: format!("ListObjectsV2 s3://{}/{}", self.name, list.prefix),
                detail: "the next continuation token is the one sent: the listing would never end"
                    .into(),
            });
        }
        Ok(page)
    }

    /// Every page of a listing, concatenated: (objects, common prefixes).
    pub fn list_all(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(Vec<ListedObject>, Vec<String>)> {
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        let mut req = ListRequest {
            prefix: prefix.to_string(),
            delimiter: delimiter.map(str::to_string),
            ..ListRequest::default()
        };
        loop {
            let page = self.list_page(&req)?;
            objects.extend(page.objects);
            prefixes.extend(page.common_prefixes);
            match page.next_continuation_token {
                Some(t) if page.is_truncated => req.continuation_token = Some(t),
                _ => break,
            }
        }
        Ok((objects, prefixes))
    }

    /// Every multipart upload in progress whose key starts with `prefix`, all pages.
    pub fn list_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        transfer::all_uploads(&*self.store, &self.name, prefix)
    }

    /// The parts uploaded so far to an upload of `key`, all pages.
    pub fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<ListedPart>> {
        transfer::all_parts(&*self.store, &self.obj(key), upload_id)
    }

    // ---- multipart uploads fed by the caller ----------------------------------------------

    /// Start a multipart upload of `key` with `opts`' metadata and content headers, recorded
    /// in the journal before any part is sent.
    pub fn begin_multipart(&self, key: &str, opts: &PutOptions) -> Result<MultipartUpload> {
        self.learnt(key, self.transfers().begin(&self.obj(key), opts))
    }

    /// Send part `part_number` of the upload `upload_id` of `key`; returns its ETag.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: RequestBody<'_>,
    ) -> Result<String> {
        self.store
            .upload_part(&self.obj(key), upload_id, part_number, body)
    }

    /// Complete `upload` with these part results (`size` bytes in all) under `cond`'s
    /// conditions, or abort it if a part failed (see [`super::transfer`]).
    pub fn finish_multipart(
        &self,
        upload: MultipartUpload,
        parts: Result<Vec<(u32, String)>>,
        size: u64,
        cond: &PutOptions,
    ) -> Result<Option<String>> {
        let key = upload.obj.key.clone();
        self.noted(&key, self.transfers().finish(upload, parts, size, cond))
    }

    /// `result` of a write of `key`: if it succeeded, the key was just written (copies onto it
    /// are spaced from it: [`super::spacing`]); if it failed, what it says is learnt.
    fn noted<T>(&self, key: &str, result: Result<T>) -> Result<T> {
        if result.is_ok() {
            self.recent.written(key);
        }
        self.learnt(key, result)
    }

    /// `result`, the answer to a request on `key`, after learning from it whether the server
    /// refuses long keys ([`Capabilities::learn_key_limit`]).
    fn learnt<T>(&self, key: &str, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.caps.learn_key_limit(key, e);
        }
        result
    }

    /// Abort an upload this process started (one already gone is fine).
    pub fn abort_upload(&self, upload: MultipartUpload) -> Result<()> {
        self.transfers().abort(upload)
    }
}

#[cfg(test)]
mod lost_replies;
#[cfg(test)]
mod tests;
