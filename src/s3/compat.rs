//! `Storage`'s object calls as the file system, the binary and the integration tests make them
//! today, by [`ObjectRef`]: each a thin delegation, to the [`ObjectStore`] impl for a single
//! request, or to the object's [`super::Bucket`] for the policy (reconciled PUTs, multipart transfers
//! and copies, batched deletes, all pages of a listing, resumed reads).
//!
//! Transitional: once the file system holds a [`super::Bucket`] (issue 14's next step) these go, and
//! callers use `storage.bucket(name)` or the trait. Note the two that differ from the trait's
//! method of the same name: `put_object` here reconciles a lost reply and `copy_object` goes
//! multipart above the copy threshold; the trait's send one request.

use std::fs::File;

use super::body::RequestBody;
use super::error::Result;
use super::name::ObjectRef;
use super::storage::Storage;
use super::store::{abort_if_open, ObjectStore};
use super::stream::StreamingUpload;
use super::transfer::MultipartUpload;
use super::types::{
    CopyRequest, CopyResult, DeleteResult, GetObject, KeyVersion, ListPage, ListRequest,
    ListedObject, ListedPart, ObjectInfo, PendingUpload, PutOptions,
};

impl Storage {
    // ---- single requests ------------------------------------------------------------------

    /// HEAD the bucket: `Ok` if it exists and is reachable with these credentials.
    pub fn head_bucket(&self, bucket: &str) -> Result<()> {
        ObjectStore::head_bucket(self, bucket)
    }

    /// Create a bucket (in the client's region).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        ObjectStore::create_bucket(self, bucket)
    }

    /// Delete an (empty) bucket.
    pub fn delete_bucket(&self, bucket: &str) -> Result<()> {
        ObjectStore::delete_bucket(self, bucket)
    }

    /// HEAD an object.
    pub fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        ObjectStore::head_object(self, obj)
    }

    /// GET an object, or the bytes `[start, end)` of it, optionally only if its ETag matches.
    pub fn get_object(
        &self,
        obj: &ObjectRef,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<GetObject> {
        ObjectStore::get_object(self, obj, range, if_match)
    }

    /// One ListObjectsV2 page (`encoding-type=url`, so any key survives the XML).
    pub fn list_objects_v2(&self, bucket: &str, list: &ListRequest) -> Result<ListPage> {
        ObjectStore::list_objects_v2(self, bucket, list)
    }

    /// Start a multipart upload; returns its id (no journal entry: see
    /// [`Storage::begin_multipart`]).
    pub fn create_multipart_upload(&self, obj: &ObjectRef, opts: &PutOptions) -> Result<String> {
        ObjectStore::create_multipart_upload(self, obj, opts)
    }

    /// Upload one part; returns its ETag.
    pub fn upload_part(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        body: RequestBody<'_>,
    ) -> Result<String> {
        ObjectStore::upload_part(self, obj, upload_id, part_number, body)
    }

    /// Copy bytes `[start, end)` of `src` into part `part_number`; returns the part's ETag.
    pub fn upload_part_copy(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        src: &ObjectRef,
        range: (u64, u64),
        if_match: Option<&str>,
    ) -> Result<String> {
        ObjectStore::upload_part_copy(self, obj, upload_id, part_number, src, range, if_match)
    }

    /// Complete a multipart upload: one request, not retried (a completion whose reply was lost
    /// cannot be sent again blindly; [`Storage::finish_multipart`] looks before it resends).
    pub fn complete_multipart_upload(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<CopyResult> {
        ObjectStore::complete_multipart_upload(self, obj, upload_id, parts, &PutOptions::default())
    }

    /// Complete a multipart upload only if `cond`'s `if_none_match_any` / `if_match` hold (412 →
    /// [`super::StorageError::PreconditionFailed`]; the upload stays open and should be
    /// aborted). One request, not retried.
    pub fn complete_multipart_upload_if(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        parts: &[(u32, String)],
        cond: &PutOptions,
    ) -> Result<CopyResult> {
        ObjectStore::complete_multipart_upload(self, obj, upload_id, parts, cond)
    }

    /// Abort a multipart upload (its parts are freed). An upload that is already gone is fine.
    pub fn abort_multipart_upload(&self, obj: &ObjectRef, upload_id: &str) -> Result<()> {
        abort_if_open(self, obj, upload_id).map(|_| ())
    }

    // ---- through the object's bucket ------------------------------------------------------

    /// Read exactly `buf.len()` bytes at `offset` (see [`super::Bucket::read_range`]).
    pub fn read_range(
        &self,
        obj: &ObjectRef,
        offset: u64,
        buf: &mut [u8],
        etag: Option<&str>,
    ) -> Result<(usize, Option<String>)> {
        self.bucket(&obj.bucket)
            .read_range(&obj.key, offset, buf, etag)
    }

    /// Download a whole object into `out` (see [`super::Bucket::download`]).
    pub fn download(&self, obj: &ObjectRef, out: &mut File) -> Result<ObjectInfo> {
        self.bucket(&obj.bucket).download(&obj.key, out)
    }

    /// PUT `body` as `obj`, a lost reply of a conditional PUT looked into (see
    /// [`super::Bucket::put`]). Returns the new ETag.
    pub fn put_object(
        &self,
        obj: &ObjectRef,
        body: RequestBody<'_>,
        opts: &PutOptions,
    ) -> Result<Option<String>> {
        self.bucket(&obj.bucket).put(&obj.key, body, opts)
    }

    /// Upload `len` bytes of `file` as `obj`, multipart above the threshold (see
    /// [`super::Bucket::put_file`]).
    pub fn put_file(
        &self,
        obj: &ObjectRef,
        file: &File,
        len: u64,
        opts: &PutOptions,
    ) -> Result<Option<String>> {
        self.bucket(&obj.bucket).put_file(&obj.key, file, len, opts)
    }

    /// CopyObject, multipart UploadPartCopy above the copy threshold (see
    /// [`super::Bucket::copy`]).
    pub fn copy_object(&self, c: &CopyRequest) -> Result<CopyResult> {
        self.bucket(&c.dst.bucket).copy(c)
    }

    /// DELETE an object, whatever version it holds; a lost reply is looked into (see
    /// [`super::Bucket::delete`]).
    pub fn delete_object(&self, obj: &ObjectRef) -> Result<()> {
        self.bucket(&obj.bucket).delete(&obj.key, None)
    }

    /// Delete many keys with DeleteObjects, 1000 per request (see
    /// [`super::Bucket::delete_many`]).
    pub fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<DeleteResult> {
        let keys: Vec<KeyVersion> = keys.iter().cloned().map(KeyVersion::from).collect();
        self.bucket(bucket).delete_many(&keys)
    }

    /// Every page of a listing, concatenated: (objects, common prefixes).
    pub fn list_all(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(Vec<ListedObject>, Vec<String>)> {
        self.bucket(bucket).list_all(prefix, delimiter)
    }

    /// Every in-progress multipart upload of `bucket` whose key starts with `prefix`.
    pub fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<PendingUpload>> {
        self.bucket(bucket).list_uploads(prefix)
    }

    /// The parts uploaded so far to a multipart upload.
    pub fn list_parts(&self, obj: &ObjectRef, upload_id: &str) -> Result<Vec<ListedPart>> {
        self.bucket(&obj.bucket).list_parts(&obj.key, upload_id)
    }

    /// Start a multipart upload recorded in the journal (see
    /// [`super::Bucket::begin_multipart`]).
    pub fn begin_multipart(&self, obj: &ObjectRef, opts: &PutOptions) -> Result<MultipartUpload> {
        self.bucket(&obj.bucket).begin_multipart(&obj.key, opts)
    }

    /// Complete `upload`, or abort it if a part failed (see
    /// [`super::Bucket::finish_multipart`]).
    pub fn finish_multipart(
        &self,
        upload: MultipartUpload,
        parts: Result<Vec<(u32, String)>>,
        size: u64,
        cond: &PutOptions,
    ) -> Result<Option<String>> {
        let bucket = self.bucket(&upload.obj.bucket);
        bucket.finish_multipart(upload, parts, size, cond)
    }

    /// Abort an upload this process started (see [`super::Bucket::abort_upload`]).
    pub fn abort_upload(&self, upload: MultipartUpload) -> Result<()> {
        self.bucket(&upload.obj.bucket).abort_upload(upload)
    }
}

impl StreamingUpload {
    /// [`StreamingUpload::start_in`] the bucket of `obj`.
    pub fn start(
        storage: &Storage,
        obj: &ObjectRef,
        options: &PutOptions,
        file: File,
    ) -> Result<Self> {
        Self::start_in(&storage.bucket(&obj.bucket), &obj.key, options, file)
    }
}
