//! The values S3 requests take and give: what a HEAD says about an object, a PUT's options, a
//! listing's request and page, a copy, a GET's reply, multipart pages, DeleteObjects' result.
//!
//! Plain data shared by the raw requests (`requests/`), the [`super::ObjectStore`]
//! trait that names them, and everything above it.

use std::io::Read;
use std::time::SystemTime;

use super::error::Result;
use super::meta::Metadata;
use super::name::ObjectRef;

/// What a HEAD (or the first bytes of a GET) says about an object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    /// Content length in bytes.
    pub size: u64,
    /// ETag without quotes.
    pub etag: Option<String>,
    /// Last-Modified.
    pub last_modified: Option<SystemTime>,
    /// User metadata.
    pub metadata: Metadata,
    /// Content headers (`content-type`, `cache-control`, ...) and the other headers an object
    /// keeps across changes (storage class, encryption: [`crate::s3::meta::KEPT_HEADERS`]),
    /// lower-case names.
    pub content_headers: Vec<(String, String)>,
}

impl ObjectInfo {
    /// Its storage class, if the server named one other than STANDARD.
    pub fn storage_class(&self) -> Option<&str> {
        self.content_headers
            .iter()
            .find(|(n, _)| n == super::meta::STORAGE_CLASS_HEADER)
            .and_then(|(_, v)| super::meta::other_class(v))
    }

    /// The Content-Type, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.content_headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| v.as_str())
    }
}

/// Options of a PUT (or of a multipart upload's creation).
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// User metadata to store.
    pub metadata: Metadata,
    /// Content headers to store (`content-type`, ...).
    pub content_headers: Vec<(String, String)>,
    /// `If-None-Match: *`: fail with 412 if the key exists.
    pub if_none_match_any: bool,
    /// `If-Match: etag`: fail with 412 unless the current object has this ETag.
    pub if_match: Option<String>,
}

impl PutOptions {
    /// Its metadata and content headers, as request headers (see
    /// [`super::meta::request_headers`]).
    pub(crate) fn headers(&self) -> Result<Vec<(String, String)>> {
        let mut h = self.metadata.to_headers()?;
        h.extend(super::meta::request_headers(&self.content_headers));
        Ok(h)
    }
}

/// One ListObjectsV2 request.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Only keys starting with this.
    pub prefix: String,
    /// Group keys by this (usually "/").
    pub delimiter: Option<String>,
    /// Continue a truncated listing.
    pub continuation_token: Option<String>,
    /// Start after this key.
    pub start_after: Option<String>,
    /// Page size (S3's maximum and default is 1000).
    pub max_keys: Option<u32>,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedObject {
    /// The key (url-decoded).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Quotes stripped.
    pub etag: Option<String>,
    /// LastModified.
    pub last_modified: Option<SystemTime>,
    /// StorageClass, when the listing names one other than STANDARD.
    pub storage_class: Option<String>,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListPage {
    /// Objects on this page, in key order.
    pub objects: Vec<ListedObject>,
    /// `CommonPrefixes` (with a delimiter), url-decoded.
    pub common_prefixes: Vec<String>,
    /// More pages follow.
    pub is_truncated: bool,
    /// Token for the next page when truncated.
    pub next_continuation_token: Option<String>,
    /// Lossy renderings of keys/prefixes that were not valid UTF-8 after url-decoding.
    pub skipped_invalid: Vec<String>,
}

/// A metadata change for CopyObject: replace metadata and content headers.
#[derive(Debug, Clone, Default)]
pub struct ReplaceMetadata {
    /// The new user metadata.
    pub metadata: Metadata,
    /// Content headers to keep/set (S3 drops them on REPLACE unless sent).
    pub content_headers: Vec<(String, String)>,
}

/// A CopyObject request.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// Source.
    pub src: ObjectRef,
    /// Destination.
    pub dst: ObjectRef,
    /// `None`: metadata directive COPY; `Some`: REPLACE with this.
    pub replace: Option<ReplaceMetadata>,
    /// `x-amz-copy-source-if-match`: copy only if the source still has this ETag.
    pub if_match: Option<String>,
    /// Source size, when known (avoids a HEAD to decide single vs multipart copy).
    pub size: Option<u64>,
    /// `x-amz-storage-class` of a COPY-directive copy (S3 puts a copy in STANDARD unless told
    /// otherwise): the source's, from a listing. A REPLACE copy carries it in its headers.
    pub storage_class: Option<String>,
}

/// ETag and date of a copy or a completed multipart upload.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyResult {
    /// ETag of the new object (quotes stripped).
    pub etag: Option<String>,
    /// LastModified of the new object.
    pub last_modified: Option<SystemTime>,
}

/// A GET's reply: what the object is, and the body.
pub struct GetObject {
    /// ETag of the version being read.
    pub etag: Option<String>,
    /// Bytes in this reply's body.
    pub content_length: u64,
    /// The object's total size (from Content-Range, or Content-Length for a full GET).
    pub total_size: u64,
    /// The body.
    pub body: Box<dyn Read + Send>,
    /// Everything else a HEAD would say.
    pub info: ObjectInfo,
}

impl std::fmt::Debug for GetObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetObject")
            .field("etag", &self.etag)
            .field("content_length", &self.content_length)
            .field("total_size", &self.total_size)
            .finish()
    }
}

/// A key to delete, and the version meant when the caller knows it: after a lost reply, a key
/// found holding another version was written by another client since, and is left alone (see
/// [`super::reconcile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    /// The key.
    pub key: String,
    /// ETag of the version to delete (quotes stripped); `None`: whatever is there.
    pub etag: Option<String>,
}

impl KeyVersion {
    /// `key`, at version `etag` when known.
    pub fn new(key: impl Into<String>, etag: Option<String>) -> Self {
        KeyVersion {
            key: key.into(),
            etag,
        }
    }
}

impl From<String> for KeyVersion {
    /// Whatever version the key holds.
    fn from(key: String) -> Self {
        KeyVersion { key, etag: None }
    }
}

/// Outcome of DeleteObjects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeleteResult {
    /// Keys reported deleted.
    pub deleted: Vec<String>,
    /// (key, code, message)
    pub errors: Vec<(String, String, String)>,
}

/// An in-progress multipart upload found by ListMultipartUploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Key being uploaded.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// When it was started, if the server said so readably.
    pub initiated: Option<SystemTime>,
}

/// One ListMultipartUploads request (a page).
#[derive(Debug, Clone, Default)]
pub struct UploadsRequest {
    /// Only uploads of keys starting with this.
    pub prefix: String,
    /// Continue after this key (`NextKeyMarker` of the page before).
    pub key_marker: Option<String>,
    /// With `key_marker`: continue after this upload of that key.
    pub upload_id_marker: Option<String>,
}

/// One in-progress multipart upload of a ListMultipartUploads page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedUpload {
    /// The key being uploaded (url-decoded).
    pub key: String,
    /// The upload id.
    pub upload_id: String,
    /// When the upload was started (`<Initiated>`); `None` if absent or unreadable.
    pub initiated: Option<SystemTime>,
}

/// One page of ListMultipartUploads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UploadsPage {
    /// Uploads on this page, by key and then by start time.
    pub uploads: Vec<ListedUpload>,
    /// More pages follow.
    pub is_truncated: bool,
    /// `key-marker` of the next page (url-decoded).
    pub next_key_marker: Option<String>,
    /// `upload-id-marker` of the next page.
    pub next_upload_id_marker: Option<String>,
    /// Lossy renderings of keys that were not valid UTF-8 after url-decoding.
    pub skipped_invalid: Vec<String>,
}

/// One uploaded part of a ListParts page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPart {
    /// Part number (1-based).
    pub part_number: u32,
    /// Size in bytes.
    pub size: u64,
    /// ETag (quotes stripped).
    pub etag: Option<String>,
}

/// One page of ListParts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartsPage {
    /// Parts on this page, by part number.
    pub parts: Vec<ListedPart>,
    /// More pages follow.
    pub is_truncated: bool,
    /// `part-number-marker` of the next page.
    pub next_part_number_marker: Option<u32>,
}
