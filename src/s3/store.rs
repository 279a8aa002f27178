//! The storage seam: [`ObjectStore`], one method per raw S3 request.
//!
//! Everything above the seam — [`super::Bucket`] (ranged reads with resume, multipart
//! transfers, reconciliation of lost replies, the journal), the seed API, the file system —
//! talks to S3 through this trait, so it can run against the real server
//! ([`super::Storage`], over the HTTP client) or against [`super::MemoryStore`] (an S3 in
//! memory with switches to fail, delay or change objects, for unit tests without a server).
//!
//! The contract, which both implementations keep:
//! - **One request per call, no policy.** No loop over pages, no multipart decision, no
//!   resend after a lost reply, no batching: a method does what its [`super::Operation`] does
//!   and answers what S3 answers. (The HTTP client below [`super::Storage`] retries idempotent
//!   requests on transient failures; an error from a method is what is left after that.)
//! - **S3's meaning, as [`StorageError`]s**: a missing key is
//!   [`StorageError::NotFound`] (code `NoSuchKey`; `None` for a HEAD, which has no body), a
//!   missing upload `NotFound` with `NoSuchUpload`, a missing bucket
//!   [`StorageError::NoSuchBucket`], a failed condition
//!   [`StorageError::PreconditionFailed`], anything else [`StorageError::Http`] with S3's
//!   status and code.
//! - **ETags bare** (no quotes), keys and prefixes decoded, as the request rooms return them.

use std::sync::Arc;

use super::body::RequestBody;
use super::error::{Result, StorageError};
use super::meta::TagSet;
use super::name::ObjectRef;
use super::types::{
    CopyRequest, CopyResult, DeleteResult, GetObject, ListPage, ListRequest, ObjectInfo, PartsPage,
    PutOptions, UploadsPage, UploadsRequest,
};

/// S3's limit for a single-request CopyObject (a larger source is copied part by part).
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// S3's minimum size for every multipart part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's maximum number of parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object (5 TiB): a file cannot grow past it.
pub const MAX_OBJECT_SIZE: u64 = 5 << 40;

/// An S3-compatible object store, one method per request (see the module note).
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// The same store sending each request once, without the client's retries: for callers
    /// whose own loop counts attempts (the looks after a lost reply). A store without retries
    /// returns itself.
    fn single_attempt(&self) -> Arc<dyn ObjectStore>;

    /// HeadBucket: `Ok` if the bucket exists and may be used.
    fn head_bucket(&self, bucket: &str) -> Result<()>;

    /// CreateBucket.
    fn create_bucket(&self, bucket: &str) -> Result<()>;

    /// DeleteBucket (it must be empty).
    fn delete_bucket(&self, bucket: &str) -> Result<()>;

    /// HeadObject.
    fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo>;

    /// GetObject of the whole object or of bytes `[start, end)` (clipped at the object's end;
    /// a start at or past it is 416), only if its ETag is `if_match` when given (else 412).
    fn get_object(
        &self,
        obj: &ObjectRef,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<GetObject>;

    /// PutObject with `opts`' metadata, content headers and conditions (`If-None-Match: *`,
    /// `If-Match`); returns the new ETag. A conditional PUT is sent once, even by the client.
    fn put_object(
        &self,
        obj: &ObjectRef,
        body: RequestBody<'_>,
        opts: &PutOptions,
    ) -> Result<Option<String>>;

    /// One CopyObject (S3 refuses sources over 5 GiB): metadata directive COPY, or REPLACE
    /// with `c.replace`; only if the source's ETag is `c.if_match` when given. `c.size` is not
    /// sent.
    fn copy_object(&self, c: &CopyRequest) -> Result<CopyResult>;

    /// DeleteObject (no error for a key that does not exist).
    fn delete_object(&self, obj: &ObjectRef) -> Result<()>;

    /// GetObjectTagging: the object's tags (a missing key is `NotFound`).
    fn get_object_tagging(&self, obj: &ObjectRef) -> Result<TagSet>;

    /// One quiet DeleteObjects of at most 1000 keys: the result lists the keys not deleted.
    fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<DeleteResult>;

    /// One ListObjectsV2 page.
    fn list_objects_v2(&self, bucket: &str, list: &ListRequest) -> Result<ListPage>;

    /// CreateMultipartUpload with `opts`' metadata and content headers (its conditions are
    /// ignored: they belong to the completion); returns the upload id. Sent once.
    fn create_multipart_upload(&self, obj: &ObjectRef, opts: &PutOptions) -> Result<String>;

    /// UploadPart; returns the part's ETag.
    fn upload_part(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        body: RequestBody<'_>,
    ) -> Result<String>;

    /// UploadPartCopy of bytes `[start, end)` of `src`, only if its ETag is `if_match` when
    /// given; returns the part's ETag.
    fn upload_part_copy(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        src: &ObjectRef,
        range: (u64, u64),
        if_match: Option<&str>,
    ) -> Result<String>;

    /// CompleteMultipartUpload with these `(number, ETag)` parts, only if `cond`'s
    /// `if_none_match_any` / `if_match` hold (its other fields are ignored). Sent once.
    fn complete_multipart_upload(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        parts: &[(u32, String)],
        cond: &PutOptions,
    ) -> Result<CopyResult>;

    /// AbortMultipartUpload (an upload that is gone is `NotFound` with `NoSuchUpload`).
    fn abort_multipart_upload(&self, obj: &ObjectRef, upload_id: &str) -> Result<()>;

    /// One ListParts page: parts after number `marker`, at most `max_parts` (S3: 1000).
    fn list_parts(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        marker: Option<u32>,
        max_parts: Option<u32>,
    ) -> Result<PartsPage>;

    /// One ListMultipartUploads page.
    fn list_multipart_uploads(&self, bucket: &str, list: &UploadsRequest) -> Result<UploadsPage>;
}

/// Abort a multipart upload; `Ok(false)` if it was gone already (404 NoSuchUpload: completed
/// or aborted before). The one reading of that 404, for the journal's recovery and for
/// [`super::Bucket`].
pub fn abort_if_open(store: &dyn ObjectStore, obj: &ObjectRef, upload_id: &str) -> Result<bool> {
    match store.abort_multipart_upload(obj, upload_id) {
        Ok(()) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// HEAD an object; `None` when there is no such key (a missing bucket stays an error). The one
/// reading of a HEAD's 404, for `exists`, the looks after a lost reply, and [`super::Bucket`].
pub fn head_if_any(store: &dyn ObjectStore, obj: &ObjectRef) -> Result<Option<ObjectInfo>> {
    match store.head_object(obj) {
        Ok(info) => Ok(Some(info)),
        Err(e) if e.is_not_found() && !matches!(e, StorageError::NoSuchBucket { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
