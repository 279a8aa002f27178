//! `Storage`: the seed connector's operations, plus the object calls the file system needs.
//!
//! The seed (`write`, `read`, `exists`, `copy`, `delete`, `update_metadata`) is kept with its
//! meaning: names are [`S3Name`]s resolved against the default bucket, "headers" may carry
//! `x-amz-meta-*` metadata and content headers, and metadata comes back as [`Metadata`].
//!
//! Below it sit one method per S3 request (HEAD, ranged GET, PUT, DELETE, DeleteObjects,
//! ListObjectsV2, CopyObject, multipart, ListMultipartUploads, ListParts) and two transfer helpers: [`Storage::put_file`], which
//! switches to a parallel multipart upload above [`TransferConfig::multipart_threshold`], and
//! [`Storage::copy_object`], which switches to a multipart `UploadPartCopy` above
//! [`TransferConfig::copy_threshold`] (5 GiB, S3's limit for a single CopyObject).
//! Every multipart upload starts with [`Storage::begin_multipart`] and ends with
//! [`Storage::finish_multipart`] or [`Storage::abort_upload`], so a storage given an
//! [`UploadJournal`] ([`Storage::with_journal`]) has each one on disk while it runs (see
//! [`super::journal`]); [`super::stream`] feeds one from a file still being written.
//!
//! Integrity: a ranged read returns exactly the bytes asked for or an error (a short body is
//! resumed with `If-Match` on the ETag, never patched from another version); downloads go to a
//! temporary file renamed into place only when complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::body::RequestBody;
use super::client::{ClientConfig, S3Client, S3Request, S3Response};
use super::error::{Result, StorageError};
use super::journal::{JournalEntry, UploadJournal};
use super::meta::{Metadata, CONTENT_HEADERS};
use super::name::{ObjectRef, S3Name};
use super::operation::Operation;
use super::reconcile;
use super::sign;
use super::xml::{self, CopyResult, DeleteResult, ListPage};

/// S3's limit for a single-request CopyObject.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// S3's minimum size for every multipart part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's maximum number of parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// DeleteObjects takes at most this many keys per request.
const DELETE_BATCH: usize = 1000;

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

/// Request headers in the seed's sense: `x-amz-meta-*` metadata plus content headers such as
/// `Content-Type`. Names are case-insensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(BTreeMap<String, String>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Set a header (name lower-cased).
    pub fn insert(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.0.insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// A header's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The `x-amz-meta-*` part.
    pub fn metadata(&self) -> Metadata {
        Metadata::from_headers(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// True if any `x-amz-meta-*` header is present.
    pub fn has_metadata(&self) -> bool {
        self.0
            .keys()
            .any(|k| k.starts_with(super::meta::META_PREFIX))
    }

    /// The other headers, validated: names the client computes itself are refused.
    fn others(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            if k.starts_with(super::meta::META_PREFIX) {
                continue;
            }
            if matches!(
                k.as_str(),
                "host" | "authorization" | "content-length" | "transfer-encoding" | "x-amz-date"
            ) || k.starts_with("x-amz-content-sha256")
            {
                return Err(StorageError::invalid(
                    "header",
                    format!("{k} is set by the client itself"),
                ));
            }
            if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(StorageError::invalid(
                    "header",
                    format!("{k}: value contains a line break or NUL"),
                ));
            }
            out.push((k.clone(), v.clone()));
        }
        Ok(out)
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (k, v) in iter {
            h.insert(k.as_ref(), v);
        }
        h
    }
}

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
    /// Content headers (`content-type`, `cache-control`, ...), lower-case names.
    pub content_headers: Vec<(String, String)>,
}

impl ObjectInfo {
    fn from_response(resp: &S3Response, size: u64) -> Self {
        let mut content_headers = Vec::new();
        for name in CONTENT_HEADERS {
            if let Some(v) = resp.header(name) {
                content_headers.push((name.to_string(), v.to_string()));
            }
        }
        ObjectInfo {
            size,
            etag: resp.header("etag").map(xml::normalize_etag),
            last_modified: resp
                .header("last-modified")
                .and_then(|d| httpdate::parse_http_date(d).ok()),
            metadata: Metadata::from_headers(resp.header_pairs()),
            content_headers,
        }
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
    fn headers(&self) -> Result<Vec<(String, String)>> {
        let mut h = self.metadata.to_headers()?;
        h.extend(self.content_headers.iter().cloned());
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

/// An in-progress multipart upload found by [`Storage::list_multipart_uploads`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Key being uploaded.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// When it was started, if the server said so readably.
    pub initiated: Option<SystemTime>,
}

/// A multipart upload this process started: its object, its id and, when the storage has an
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
}

/// The S3 storage: seed API plus object-level calls. Cheap to clone; thread-safe.
///
/// ```no_run
/// use s3mount::{Config, Headers, S3Name, Storage};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::load(&s3mount::config::LoadRequest::from_file("s3.yaml"))?;
/// let storage = Storage::new(&config)?;
/// let mut headers = Headers::new();
/// headers.insert("x-amz-meta-state", "unprocessed");
/// let remote = S3Name::new("example-in-s3", Some("my_other_bucket"));
/// storage.write("example", &remote, &headers)?;
/// let metadata = storage.exists(&remote)?.expect("just written");
/// assert_eq!(metadata.get("state"), Some("unprocessed"));
/// headers.insert("x-amz-meta-state", "processed");
/// storage.update_metadata(&remote, &headers)?;
/// let metadata = storage.read(&remote, "example-from-s3")?;
/// assert_eq!(metadata.get("state"), Some("processed"));
/// storage.delete(&remote)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Storage {
    client: S3Client,
    default_bucket: Option<String>,
    transfer: TransferConfig,
    journal: Option<Arc<UploadJournal>>,
}

impl Storage {
    /// A storage for a loaded configuration (its endpoint, credentials and default bucket).
    pub fn new(config: &crate::config::Config) -> Result<Self> {
        let client = S3Client::new(ClientConfig::from_config(config))?;
        Ok(Storage::with_client(client, config.default_bucket.clone()))
    }

    /// A storage over an existing client.
    pub fn with_client(client: S3Client, default_bucket: Option<String>) -> Self {
        Storage {
            client,
            default_bucket,
            transfer: TransferConfig::default(),
            journal: None,
        }
    }

    /// Record every multipart upload this storage starts in `journal` until it is completed
    /// or aborted (see [`crate::s3::journal`]).
    pub fn with_journal(mut self, journal: Arc<UploadJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The upload journal, if any.
    pub fn journal(&self) -> Option<&UploadJournal> {
        self.journal.as_deref()
    }

    /// Change the transfer settings.
    pub fn with_transfer(mut self, transfer: TransferConfig) -> Self {
        self.transfer = transfer;
        self
    }

    /// The transfer settings.
    pub fn transfer(&self) -> &TransferConfig {
        &self.transfer
    }

    /// The underlying client.
    pub fn client(&self) -> &S3Client {
        &self.client
    }

    /// The default bucket, if any.
    pub fn default_bucket(&self) -> Option<&str> {
        self.default_bucket.as_deref()
    }

    /// Resolve a name against the default bucket.
    pub fn resolve(&self, name: impl Into<S3Name>) -> Result<ObjectRef> {
        name.into().resolve(self.default_bucket.as_deref())
    }

    // ---- the seed's API -------------------------------------------------------------------

    /// Upload the local file `local` as `remote`, with the metadata and content headers in
    /// `headers`. A Content-Type is guessed from the key's extension unless given.
    pub fn write(
        &self,
        local: impl AsRef<Path>,
        remote: impl Into<S3Name>,
        headers: &Headers,
    ) -> Result<()> {
        let obj = self.resolve(remote)?;
        let path = local.as_ref();
        let file = File::open(path).map_err(|e| StorageError::io(path.display(), e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io(path.display(), e))?
            .len();
        let mut content_headers = headers.others()?;
        if !content_headers.iter().any(|(n, _)| n == "content-type") {
            content_headers.push(("content-type".into(), guess_content_type(&obj.key)));
        }
        let opts = PutOptions {
            metadata: headers.metadata(),
            content_headers,
            ..PutOptions::default()
        };
        self.put_file(&obj, &file, len, &opts)?;
        Ok(())
    }

    /// Download `remote` into the local file `local` and return its metadata. The file appears
    /// only once complete (written beside it, then renamed).
    pub fn read(&self, remote: impl Into<S3Name>, local: impl AsRef<Path>) -> Result<Metadata> {
        let obj = self.resolve(remote)?;
        let path = local.as_ref();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // Mode 0666 less the umask, as `open(local, "w")` in the seed would create it (a bare
        // NamedTempFile would leave the download at 0600).
        let mut tmp = tempfile::Builder::new()
            .prefix(".s3mount-download.")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| StorageError::io(dir.display(), e))?;
        let info = self.download(&obj, tmp.as_file_mut())?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| StorageError::io(path.display(), e))?;
        tmp.persist(path)
            .map_err(|e| StorageError::io(path.display(), e.error))?;
        Ok(info.metadata)
    }

    /// `Some(metadata)` if `remote` exists, `None` if not.
    pub fn exists(&self, remote: impl Into<S3Name>) -> Result<Option<Metadata>> {
        let obj = self.resolve(remote)?;
        match self.head_object(&obj) {
            Ok(info) => Ok(Some(info.metadata)),
            Err(e) if e.is_not_found() && !matches!(e, StorageError::NoSuchBucket { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Server-side copy. The destination's metadata comes from `headers` when it holds any
    /// `x-amz-meta-*`, else from the source (as in the seed). Content headers are kept.
    pub fn copy(
        &self,
        src: impl Into<S3Name>,
        dst: impl Into<S3Name>,
        headers: &Headers,
    ) -> Result<()> {
        let src = self.resolve(src)?;
        let dst = self.resolve(dst)?;
        let extra = headers.others()?;
        let head = self.head_object(&src)?;
        let replace = if headers.has_metadata() || !extra.is_empty() {
            let metadata = if headers.has_metadata() {
                headers.metadata()
            } else {
                head.metadata.clone()
            };
            Some(ReplaceMetadata {
                metadata,
                content_headers: merge_headers(&head.content_headers, &extra),
            })
        } else {
            None
        };
        self.copy_object(&CopyRequest {
            src,
            dst,
            replace,
            if_match: head.etag.clone(),
            size: Some(head.size),
        })?;
        Ok(())
    }

    /// Delete `remote` (no error if it is already gone, as in S3).
    pub fn delete(&self, remote: impl Into<S3Name>) -> Result<()> {
        let obj = self.resolve(remote)?;
        self.delete_object(&obj)
    }

    /// Replace `remote`'s metadata with the `x-amz-meta-*` in `headers`, in place: a self-copy
    /// with `REPLACE`, the content and content headers untouched (other headers in `headers`,
    /// such as a new Content-Type, are applied), guarded by the ETag so a concurrent overwrite
    /// is never rolled back: if the object changes between the HEAD and the copy (412), the HEAD
    /// and the copy are done again (a few times), so the metadata lands on the new content.
    pub fn update_metadata(&self, remote: impl Into<S3Name>, headers: &Headers) -> Result<()> {
        let obj = self.resolve(remote)?;
        let extra = headers.others()?;
        let mut attempt = 1;
        loop {
            let head = self.head_object(&obj)?;
            let result = self.copy_object(&CopyRequest {
                src: obj.clone(),
                dst: obj.clone(),
                replace: Some(ReplaceMetadata {
                    metadata: headers.metadata(),
                    content_headers: merge_headers(&head.content_headers, &extra),
                }),
                if_match: head.etag.clone(),
                size: Some(head.size),
            });
            match result {
                Err(e) if e.is_precondition_failed() && attempt < METADATA_UPDATE_ATTEMPTS => {
                    attempt += 1;
                }
                r => return r.map(|_| ()),
            }
        }
    }

    // ---- buckets ----------------------------------------------------------------------------

    /// HEAD the bucket: `Ok` if it exists and is reachable with these credentials.
    pub fn head_bucket(&self, bucket: &str) -> Result<()> {
        self.client
            .execute(&S3Request::new(Operation::HeadBucket, bucket, ""))
            .map(|_| ())
    }

    /// Create a bucket (in the client's region).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let region = &self.client.config().region;
        let body = if region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            )
        };
        let req = S3Request::new(Operation::CreateBucket, bucket, "")
            .body(RequestBody::Bytes(body.as_bytes()));
        self.client.execute(&req).map(|_| ())
    }

    /// Delete an (empty) bucket.
    pub fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.client
            .execute(&S3Request::new(Operation::DeleteBucket, bucket, ""))
            .map(|_| ())
    }

    // ---- objects ----------------------------------------------------------------------------

    /// HEAD an object.
    pub fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        self.head(
            S3Request::new(Operation::HeadObject, &obj.bucket, &obj.key),
            obj,
        )
    }

    /// HEAD an object with one request, not retried: for a caller whose own loop retries (see
    /// [`super::reconcile`]).
    pub(crate) fn head_object_once(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        let req = S3Request::new(Operation::HeadObject, &obj.bucket, &obj.key).not_idempotent();
        self.head(req, obj)
    }

    fn head(&self, req: S3Request<'_>, obj: &ObjectRef) -> Result<ObjectInfo> {
        let resp = self.client.execute(&req)?;
        let size = resp
            .content_length()
            .ok_or_else(|| StorageError::BadReply {
                what: format!("HEAD {obj}"),
                detail: "no valid Content-Length".into(),
            })?;
        Ok(ObjectInfo::from_response(&resp, size))
    }

    /// GET an object, or the bytes `[start, end)` of it, optionally only if its ETag matches.
    pub fn get_object(
        &self,
        obj: &ObjectRef,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<GetObject> {
        let what = format!("GET {obj}");
        let mut req = S3Request::new(Operation::GetObject, &obj.bucket, &obj.key)
            .header_opt("if-match", if_match.map(|e| format!("\"{e}\"")));
        if let Some((start, end)) = range {
            if end <= start {
                return Err(StorageError::invalid("range", format!("{start}..{end}")));
            }
            req = req.header("range", format!("bytes={start}-{}", end - 1));
        }
        let resp = self.client.execute(&req)?;
        let content_length = resp
            .content_length()
            .ok_or_else(|| StorageError::BadReply {
                what: what.clone(),
                detail: "no valid Content-Length".into(),
            })?;
        let total_size = if resp.status == 206 {
            let (start, end, total) = resp
                .header("content-range")
                .and_then(parse_content_range)
                .ok_or_else(|| StorageError::BadReply {
                    what: what.clone(),
                    detail: "206 without a valid Content-Range".into(),
                })?;
            // Bytes from elsewhere than asked would land at the wrong offset.
            let asked = range.map_or(0, |(s, _)| s);
            if start != asked || (end - start).checked_add(1) != Some(content_length) {
                return Err(StorageError::BadReply {
                    what,
                    detail: format!(
                        "asked for bytes from {asked}, got Content-Range bytes {start}-{end} with Content-Length {content_length}"
                    ),
                });
            }
            total
        } else {
            if let Some((start, _)) = range {
                if start != 0 {
                    return Err(StorageError::BadReply {
                        what,
                        detail: "server ignored the Range header".into(),
                    });
                }
            }
            content_length
        };
        let mut info = ObjectInfo::from_response(&resp, total_size);
        info.size = total_size;
        let etag = info.etag.clone();
        if let (Some(want), Some(got)) = (if_match, etag.as_deref()) {
            if want != got {
                return Err(StorageError::PreconditionFailed {
                    bucket: obj.bucket.clone(),
                    key: obj.key.clone(),
                });
            }
        }
        Ok(GetObject {
            etag,
            content_length,
            total_size,
            body: Box::new(resp.into_reader()),
            info,
        })
    }

    /// Read exactly `buf.len()` bytes at `offset` (fewer only at the end of the object) of the
    /// version whose ETag is `etag` (any version when `None`). A body cut short is resumed with
    /// `If-Match`, so the bytes never mix two versions. Returns the bytes read and the ETag.
    pub fn read_range(
        &self,
        obj: &ObjectRef,
        offset: u64,
        buf: &mut [u8],
        etag: Option<&str>,
    ) -> Result<(usize, Option<String>)> {
        let mut filled = 0usize;
        let mut etag = etag.map(str::to_string);
        let mut failures = 0u32;
        let max_attempts = self.client.config().retry.max_attempts;
        while filled < buf.len() {
            let start = offset + filled as u64;
            let end = offset + buf.len() as u64;
            let mut got = match self.get_object(obj, Some((start, end)), etag.as_deref()) {
                Ok(g) => g,
                Err(StorageError::Http { status: 416, .. }) => break,
                Err(e) => return Err(e),
            };
            if etag.is_none() {
                etag = got.etag.clone();
            }
            let want = (end.min(got.total_size)).saturating_sub(start) as usize;
            if got.content_length as usize != want {
                return Err(StorageError::BadReply {
                    what: format!("GET {obj}"),
                    detail: format!(
                        "asked for {want} bytes at {start}, Content-Length says {}",
                        got.content_length
                    ),
                });
            }
            let target = &mut buf[filled..filled + want];
            let mut n = 0usize;
            let mut broke = None;
            while n < want {
                match got.body.read(&mut target[n..]) {
                    Ok(0) => {
                        broke = Some("connection closed before the end of the body".to_string());
                        break;
                    }
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        broke = Some(e.to_string());
                        break;
                    }
                }
            }
            filled += n;
            if let Some(detail) = broke {
                failures += 1;
                if failures >= max_attempts {
                    return Err(StorageError::Network {
                        what: format!("GET {obj}"),
                        detail,
                    });
                }
                log::debug!(
                    "GET {obj}: body cut short at {} ({detail}); resuming",
                    start + n as u64
                );
                continue;
            }
            if want < end.saturating_sub(start) as usize {
                break; // end of object
            }
        }
        Ok((filled, etag))
    }

    /// Download a whole object into `out` (from its current position). A body cut short is
    /// resumed at the byte where it stopped, pinned with `If-Match` to the first reply's ETag.
    pub fn download(&self, obj: &ObjectRef, out: &mut File) -> Result<ObjectInfo> {
        let first = self.get_object(obj, None, None)?;
        let info = first.info.clone();
        let total = first.total_size;
        let etag = first.etag.clone();
        let mut body = first.body;
        let mut written = 0u64;
        let mut failures = 0u32;
        loop {
            let detail = match copy_counting(&mut body, out) {
                Ok(n) => {
                    written += n;
                    if written == total {
                        return Ok(info);
                    }
                    format!("body ended after {written} of {total} bytes")
                }
                Err((_, CopyError::Write(e))) => return Err(StorageError::io("local file", e)),
                Err((n, CopyError::Read(e))) => {
                    written += n;
                    e.to_string()
                }
            };
            if written > total {
                return Err(StorageError::BadReply {
                    what: format!("GET {obj}"),
                    detail: format!("body longer than its Content-Length ({written} > {total})"),
                });
            }
            failures += 1;
            if failures >= self.client.config().retry.max_attempts {
                return Err(StorageError::Network {
                    what: format!("GET {obj}"),
                    detail,
                });
            }
            log::debug!("GET {obj}: {detail}; resuming at byte {written}");
            body = self
                .get_object(obj, Some((written, total)), etag.as_deref())?
                .body;
        }
    }

    /// PUT `body` as `obj`. Returns the new ETag.
    ///
    /// A conditional PUT (`If-None-Match: *`, `If-Match`) whose reply is lost is not sent again
    /// blindly (it would meet its own object and fail with 412): the key is looked at first
    /// (see [`super::reconcile`]), and a write whose outcome stays open is
    /// [`StorageError::OutcomeUnknown`].
    pub fn put_object(
        &self,
        obj: &ObjectRef,
        body: RequestBody<'_>,
        opts: &PutOptions,
    ) -> Result<Option<String>> {
        let conditional = opts.if_none_match_any || opts.if_match.is_some();
        let mut req = S3Request::new(Operation::PutObject, &obj.bucket, &obj.key)
            .headers(opts.headers()?)
            .header_opt("if-none-match", opts.if_none_match_any.then_some("*"))
            .header_opt(
                "if-match",
                opts.if_match.as_ref().map(|e| format!("\"{e}\"")),
            )
            .body(body);
        let send = |req: &S3Request<'_>| -> Result<Option<String>> {
            let resp = self.client.execute(req)?;
            Ok(resp.header("etag").map(xml::normalize_etag))
        };
        if !conditional {
            return send(&req);
        }
        req = req.not_idempotent();
        reconcile::put(self, obj, body, opts, || send(&req))
    }

    /// Upload `len` bytes of `file` as `obj`: one PUT up to the multipart threshold, a parallel
    /// multipart upload above it (aborted if any part fails, so nothing partial is left).
    pub fn put_file(
        &self,
        obj: &ObjectRef,
        file: &File,
        len: u64,
        opts: &PutOptions,
    ) -> Result<Option<String>> {
        if len <= self.transfer.multipart_threshold {
            return self.put_object(
                obj,
                RequestBody::File {
                    file,
                    offset: 0,
                    len,
                },
                opts,
            );
        }
        let part_size = self.transfer.part_size_for(len);
        let parts = len.div_ceil(part_size);
        let upload = self.begin_multipart(obj, opts)?;
        let result = self.run_parts(parts, |n| {
            let offset = (n as u64 - 1) * part_size;
            let plen = part_size.min(len - offset);
            self.upload_part(
                obj,
                &upload.upload_id,
                n,
                RequestBody::File {
                    file,
                    offset,
                    len: plen,
                },
            )
        });
        // The conditions (If-None-Match / If-Match) are checked by S3 when the upload completes.
        self.finish_multipart(upload, result, len, opts)
    }

    /// Start a multipart upload (`CreateMultipartUpload` with `opts`' metadata and content
    /// headers) and record it in the journal, if any, before any part is sent. A journal that
    /// cannot be written is logged, not fatal: the upload itself is still sound.
    pub fn begin_multipart(&self, obj: &ObjectRef, opts: &PutOptions) -> Result<MultipartUpload> {
        let upload_id = self.create_multipart_upload(obj, opts)?;
        let entry = match &self.journal {
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
    pub fn finish_multipart(
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
        match reconcile::complete(self, &upload, &parts, size, cond) {
            Ok(r) => {
                if let Some(entry) = upload.entry {
                    entry.remove();
                }
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
        match self.abort_if_open(&obj, &id) {
            Ok(found) => {
                if let Some(entry) = upload.entry {
                    entry.remove();
                }
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

    /// Abort an upload this process started; its journal entry goes once the abort succeeded
    /// (else it stays for the next start's recovery).
    pub fn abort_upload(&self, upload: MultipartUpload) -> Result<()> {
        self.abort_multipart_upload(&upload.obj, &upload.upload_id)?;
        if let Some(entry) = upload.entry {
            entry.remove();
        }
        Ok(())
    }

    fn abort_logged(&self, upload: MultipartUpload) {
        let (obj, id) = (upload.obj.clone(), upload.upload_id.clone());
        if let Err(abort) = self.abort_upload(upload) {
            log::warn!("{obj}: could not abort multipart upload {id}: {abort}");
        }
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
        let workers = self.transfer.parallelism.clamp(1, parts.max(1) as usize);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if lock(&first_error).is_some() {
                        return;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n > parts {
                        return;
                    }
                    match part(n) {
                        Ok(etag) => lock(&results).push((n, etag)),
                        Err(e) => {
                            lock(&first_error).get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = lock(&first_error).take() {
            return Err(e);
        }
        let mut done = std::mem::take(&mut *lock(&results));
        done.sort_by_key(|(n, _)| *n);
        Ok(done)
    }

    /// DELETE an object.
    pub fn delete_object(&self, obj: &ObjectRef) -> Result<()> {
        self.client
            .execute(&S3Request::new(
                Operation::DeleteObject,
                &obj.bucket,
                &obj.key,
            ))
            .map(|_| ())
    }

    /// Delete many keys with DeleteObjects (1000 per request). Keys S3 reports as not deleted are
    /// returned in `errors`.
    pub fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<DeleteResult> {
        let mut all = DeleteResult::default();
        for chunk in keys.chunks(DELETE_BATCH) {
            let body = xml::build_delete_objects(chunk, true).map_err(|e| {
                StorageError::invalid("key", format!("cannot be sent in DeleteObjects: {e}"))
            })?;
            let md5 = {
                use base64::Engine;
                use md5::Digest;
                base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()))
            };
            let req = S3Request::new(Operation::DeleteObjects, bucket, "")
                .query("delete", "")
                .header("content-md5", md5)
                .header("content-type", "application/xml")
                .body(RequestBody::Bytes(body.as_bytes()));
            let resp = self.client.execute(&req)?;
            let what = format!("DeleteObjects s3://{bucket}");
            let r = read_reply(resp, &what, bucket, "", xml::parse_delete_result)?;
            all.deleted.extend(r.deleted);
            all.errors.extend(r.errors);
        }
        Ok(all)
    }

    /// One ListObjectsV2 page (`encoding-type=url`, so any key survives the XML).
    pub fn list_objects_v2(&self, bucket: &str, list: &ListRequest) -> Result<ListPage> {
        let mut req = S3Request::new(Operation::ListObjectsV2, bucket, "")
            .query("list-type", "2")
            .query("encoding-type", "url")
            .query("prefix", list.prefix.clone());
        if let Some(d) = &list.delimiter {
            req = req.query("delimiter", d.clone());
        }
        if let Some(t) = &list.continuation_token {
            req = req.query("continuation-token", t.clone());
        }
        if let Some(s) = &list.start_after {
            req = req.query("start-after", s.clone());
        }
        if let Some(m) = list.max_keys {
            req = req.query("max-keys", m.to_string());
        }
        let what = format!("ListObjectsV2 s3://{bucket}/{}", list.prefix);
        let resp = self.client.execute(&req)?;
        let page = read_reply(resp, &what, bucket, "", xml::parse_list_objects_v2)?;
        for bad in &page.skipped_invalid {
            log::warn!("{what}: skipping a key that is not valid UTF-8: {bad:?}");
        }
        Ok(page)
    }

    /// Every page of a listing, concatenated: (objects, common prefixes).
    pub fn list_all(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(Vec<xml::ListedObject>, Vec<String>)> {
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        let mut req = ListRequest {
            prefix: prefix.to_string(),
            delimiter: delimiter.map(str::to_string),
            ..ListRequest::default()
        };
        loop {
            let page = self.list_objects_v2(bucket, &req)?;
            objects.extend(page.objects);
            prefixes.extend(page.common_prefixes);
            match page.next_continuation_token {
                Some(t) if page.is_truncated => req.continuation_token = Some(t),
                _ => break,
            }
        }
        Ok((objects, prefixes))
    }

    /// CopyObject (multipart UploadPartCopy above the copy threshold).
    pub fn copy_object(&self, c: &CopyRequest) -> Result<CopyResult> {
        let size = match c.size {
            Some(s) => s,
            None if self.transfer.copy_threshold >= MAX_SINGLE_COPY => 0,
            None => self.head_object(&c.src)?.size,
        };
        if size > self.transfer.copy_threshold {
            return self.multipart_copy(c, size);
        }
        let mut req = S3Request::new(Operation::CopyObject, &c.dst.bucket, &c.dst.key)
            .header("x-amz-copy-source", copy_source(&c.src))
            .header_opt(
                "x-amz-copy-source-if-match",
                c.if_match.as_ref().map(|e| format!("\"{e}\"")),
            );
        match &c.replace {
            None => req = req.header("x-amz-metadata-directive", "COPY"),
            Some(r) => {
                req = req
                    .header("x-amz-metadata-directive", "REPLACE")
                    .headers(r.metadata.to_headers()?)
                    .headers(r.content_headers.iter().cloned());
            }
        }
        let what = format!("CopyObject {} -> {}", c.src, c.dst);
        let resp = self.client.execute(&req)?;
        read_reply(
            resp,
            &what,
            &c.dst.bucket,
            &c.dst.key,
            xml::parse_copy_result,
        )
    }

    fn multipart_copy(&self, c: &CopyRequest, size: u64) -> Result<CopyResult> {
        let opts = match &c.replace {
            Some(r) => PutOptions {
                metadata: r.metadata.clone(),
                content_headers: r.content_headers.clone(),
                ..PutOptions::default()
            },
            None => {
                // Multipart uploads don't copy metadata: carry it over explicitly.
                let head = self.head_object(&c.src)?;
                PutOptions {
                    metadata: head.metadata,
                    content_headers: head.content_headers,
                    ..PutOptions::default()
                }
            }
        };
        let part_size = self.transfer.copy_part_size.max(MIN_PART_SIZE);
        let parts = size.div_ceil(part_size);
        let upload = self.begin_multipart(&c.dst, &opts)?;
        let result = self.run_parts(parts, |n| {
            let start = (n as u64 - 1) * part_size;
            let end = (start + part_size).min(size);
            self.upload_part_copy(
                &c.dst,
                &upload.upload_id,
                n,
                &c.src,
                (start, end),
                c.if_match.as_deref(),
            )
        });
        let etag = self.finish_multipart(upload, result, size, &PutOptions::default())?;
        Ok(CopyResult {
            etag,
            last_modified: None,
        })
    }

    /// Start a multipart upload; returns its id.
    pub fn create_multipart_upload(&self, obj: &ObjectRef, opts: &PutOptions) -> Result<String> {
        let req = S3Request::new(Operation::CreateMultipartUpload, &obj.bucket, &obj.key)
            .query("uploads", "")
            .headers(opts.headers()?)
            .not_idempotent();
        let what = format!("CreateMultipartUpload {obj}");
        let resp = self.client.execute(&req)?;
        read_reply(
            resp,
            &what,
            &obj.bucket,
            &obj.key,
            xml::parse_initiate_multipart,
        )
    }

    /// Upload one part; returns its ETag.
    pub fn upload_part(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        body: RequestBody<'_>,
    ) -> Result<String> {
        let req = S3Request::new(Operation::UploadPart, &obj.bucket, &obj.key)
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id)
            .body(body);
        let resp = self.client.execute(&req)?;
        resp.header("etag")
            .map(xml::normalize_etag)
            .ok_or_else(|| StorageError::BadReply {
                what: format!("UploadPart {part_number} of {obj}"),
                detail: "no ETag".into(),
            })
    }

    /// Copy bytes `[start, end)` of `src` into part `part_number`; returns the part's ETag.
    pub fn upload_part_copy(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        src: &ObjectRef,
        (start, end): (u64, u64),
        if_match: Option<&str>,
    ) -> Result<String> {
        let req = S3Request::new(Operation::UploadPartCopy, &obj.bucket, &obj.key)
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id)
            .header("x-amz-copy-source", copy_source(src))
            .header(
                "x-amz-copy-source-range",
                format!("bytes={start}-{}", end.saturating_sub(1)),
            )
            .header_opt(
                "x-amz-copy-source-if-match",
                if_match.map(|e| format!("\"{e}\"")),
            );
        let what = format!("UploadPartCopy {part_number} of {obj}");
        let resp = self.client.execute(&req)?;
        let r = read_reply(resp, &what, &obj.bucket, &obj.key, xml::parse_copy_result)?;
        r.etag.ok_or_else(|| StorageError::BadReply {
            what,
            detail: "no ETag".into(),
        })
    }

    /// Complete a multipart upload: one request, not retried (a completion whose reply was lost
    /// cannot be sent again blindly; [`Storage::finish_multipart`] looks before it resends).
    pub fn complete_multipart_upload(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<CopyResult> {
        self.complete_multipart_upload_if(obj, upload_id, parts, &PutOptions::default())
    }

    /// Complete a multipart upload only if `cond`'s `if_none_match_any` / `if_match` hold (S3
    /// checks them at completion: 412 → [`StorageError::PreconditionFailed`]; the upload stays
    /// open and should be aborted). Other fields of `cond` are ignored: metadata and content
    /// headers belong to [`Storage::create_multipart_upload`]. One request, not retried (see
    /// [`Storage::complete_multipart_upload`]).
    pub fn complete_multipart_upload_if(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        parts: &[(u32, String)],
        cond: &PutOptions,
    ) -> Result<CopyResult> {
        let body = xml::build_complete_multipart(parts);
        let req = S3Request::new(Operation::CompleteMultipartUpload, &obj.bucket, &obj.key)
            .query("uploadId", upload_id)
            .header("content-type", "application/xml")
            .header_opt("if-none-match", cond.if_none_match_any.then_some("*"))
            .header_opt(
                "if-match",
                cond.if_match.as_ref().map(|e| format!("\"{e}\"")),
            )
            .body(RequestBody::Bytes(body.as_bytes()))
            // A blind resend of a completion whose reply was lost meets NoSuchUpload or 412 on
            // many servers: see `super::reconcile`.
            .not_idempotent();
        let what = format!("CompleteMultipartUpload {obj}");
        let resp = self.client.execute(&req)?;
        read_reply(
            resp,
            &what,
            &obj.bucket,
            &obj.key,
            xml::parse_complete_multipart,
        )
    }

    /// Abort a multipart upload (its parts are freed). An upload that is already gone is fine.
    pub fn abort_multipart_upload(&self, obj: &ObjectRef, upload_id: &str) -> Result<()> {
        self.abort_if_open(obj, upload_id).map(|_| ())
    }

    /// Abort a multipart upload; `Ok(false)` if it was gone already (404 NoSuchUpload).
    fn abort_if_open(&self, obj: &ObjectRef, upload_id: &str) -> Result<bool> {
        let req = S3Request::new(Operation::AbortMultipartUpload, &obj.bucket, &obj.key)
            .query("uploadId", upload_id);
        match self.client.execute(&req) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every in-progress multipart upload of `bucket` whose key starts with `prefix`
    /// (ListMultipartUploads, all pages), with the time each was started.
    pub fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<PendingUpload>> {
        let mut out = Vec::new();
        let mut markers: Option<(String, Option<String>)> = None;
        let what = format!("ListMultipartUploads s3://{bucket}/{prefix}");
        // Bounded: a server that keeps answering "truncated" with the same marker is an error.
        for _ in 0..100_000 {
            let mut req = S3Request::new(Operation::ListMultipartUploads, bucket, "")
                .query("uploads", "")
                .query("encoding-type", "url")
                .query("prefix", prefix);
            if let Some((key, id)) = &markers {
                req = req.query("key-marker", key.clone());
                if let Some(id) = id {
                    req = req.query("upload-id-marker", id.clone());
                }
            }
            let resp = self.client.execute(&req)?;
            let page = read_reply(resp, &what, bucket, "", xml::parse_list_multipart_uploads)?;
            for bad in &page.skipped_invalid {
                log::warn!("{what}: skipping a key that is not valid UTF-8: {bad:?}");
            }
            out.extend(page.uploads.into_iter().map(|u| PendingUpload {
                key: u.key,
                upload_id: u.upload_id,
                initiated: u.initiated,
            }));
            let next = page
                .next_key_marker
                .map(|k| (k, page.next_upload_id_marker));
            match next {
                Some(n) if page.is_truncated && markers.as_ref() != Some(&n) => markers = Some(n),
                Some(_) if page.is_truncated => {
                    return Err(StorageError::BadReply {
                        what,
                        detail: "truncated listing does not advance".into(),
                    })
                }
                _ => return Ok(out),
            }
        }
        Err(StorageError::BadReply {
            what,
            detail: "too many pages".into(),
        })
    }

    /// The parts uploaded so far to a multipart upload (ListParts, all pages).
    pub fn list_parts(&self, obj: &ObjectRef, upload_id: &str) -> Result<Vec<xml::ListedPart>> {
        let mut out = Vec::new();
        let mut marker: Option<u32> = None;
        let what = format!("ListParts {obj}");
        loop {
            let mut req = S3Request::new(Operation::ListParts, &obj.bucket, &obj.key)
                .query("uploadId", upload_id);
            if let Some(m) = marker {
                req = req.query("part-number-marker", m.to_string());
            }
            let resp = self.client.execute(&req)?;
            let page = read_reply(resp, &what, &obj.bucket, &obj.key, xml::parse_list_parts)?;
            out.extend(page.parts);
            match page.next_part_number_marker {
                // Part numbers only grow, so this ends (at most 10 000 parts).
                Some(m) if page.is_truncated && marker.is_none_or(|old| m > old) => {
                    marker = Some(m)
                }
                Some(_) if page.is_truncated => {
                    return Err(StorageError::BadReply {
                        what,
                        detail: "truncated listing does not advance".into(),
                    })
                }
                _ => return Ok(out),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read a 2xx reply's XML body and parse it with `parse` (see [`xml::parse_reply`]): an
/// `<Error>` body is the error it reports, a body that cannot be read is a network error, one
/// that cannot be understood a [`StorageError::BadReply`].
pub(crate) fn read_reply<T, E: Into<xml::ReplyError>>(
    resp: S3Response,
    what: &str,
    bucket: &str,
    key: &str,
    parse: impl FnOnce(&[u8]) -> std::result::Result<T, E>,
) -> Result<T> {
    let status = resp.status;
    let bytes = resp.read_small_body(what)?;
    xml::parse_reply(&bytes, parse).map_err(|e| reply_error(what, bucket, key, status, e))
}

/// The [`StorageError`] for a reply that is not a success: an `<Error>` body by its code (as
/// if the server had sent it with an error status), anything else a `BadReply`.
fn reply_error(
    what: &str,
    bucket: &str,
    key: &str,
    status: u16,
    e: xml::ReplyError,
) -> StorageError {
    let (bucket, key) = (bucket.to_string(), key.to_string());
    match e {
        xml::ReplyError::S3(body) => match body.code.as_str() {
            "PreconditionFailed" => StorageError::PreconditionFailed { bucket, key },
            "NoSuchBucket" => StorageError::NoSuchBucket { bucket },
            "NoSuchKey" | "NoSuchUpload" => StorageError::NotFound {
                bucket,
                key,
                code: Some(body.code),
            },
            _ => StorageError::Http {
                status,
                code: Some(body.code),
                message: body.message,
                bucket,
                key,
                request_id: body.request_id,
            },
        },
        xml::ReplyError::Xml(x) => StorageError::BadReply {
            what: what.to_string(),
            detail: x.to_string(),
        },
    }
}

/// `x-amz-copy-source` value: `/bucket/key`, the key URI-encoded (slashes kept).
fn copy_source(src: &ObjectRef) -> String {
    format!(
        "/{}/{}",
        sign::uri_encode(&src.bucket, true),
        sign::uri_encode(&src.key, false)
    )
}

/// HEAD + conditional self-copy rounds of [`Storage::update_metadata`] when the object keeps
/// changing meanwhile.
const METADATA_UPDATE_ATTEMPTS: u32 = 4;

/// `bytes 0-9/1234` → (0, 9, 1234); `None` unless first ≤ last < total.
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        // Digits only: no sign, no spaces inside (u64's parser takes a leading '+').
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last, total) = (number(first)?, number(last)?, number(total)?);
    (first <= last && last < total).then_some((first, last, total))
}

/// Content headers of the source, overridden by those given.
fn merge_headers(base: &[(String, String)], over: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = base
        .iter()
        .filter(|(n, _)| !over.iter().any(|(o, _)| o == n))
        .cloned()
        .collect();
    out.extend(over.iter().cloned());
    out
}

/// Content-Type from a key's extension (`application/octet-stream` when unknown).
pub fn guess_content_type(key: &str) -> String {
    mime_guess::from_path(key)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Copy until EOF; on error, say how many bytes were written first and which side failed.
fn copy_counting(from: &mut dyn Read, to: &mut File) -> std::result::Result<u64, (u64, CopyError)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = match from.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((n, CopyError::Read(e))),
        };
        to.write_all(&buf[..k])
            .map_err(|e| (n, CopyError::Write(e)))?;
        n += k as u64;
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

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 0-9/1234"), Some((0, 9, 1234)));
        assert_eq!(parse_content_range(" bytes 5-5/6 "), Some((5, 5, 6)));
        for bad in [
            "bytes */1234",
            "bytes 0-9/*",
            "garbage",
            "bytes 9-0/10",
            "bytes 0-10/10",
            "bytes -1-5/10",
            "bytes +1-5/10",
            "bytes 0-5/18446744073709551616",
            "bytes 0-18446744073709551615/18446744073709551615",
            "bytes 0-/10",
            "bytes 0 9/10",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn content_range_fuzz() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let count = std::cell::Cell::new(0u64);
        let numbers = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..100).prop_map(|n| n.to_string()),
            "-?[0-9]{0,25}",
            Just("*".to_string()),
            "\\PC{0,4}",
        ];
        let header = prop_oneof![
            (numbers.clone(), numbers.clone(), numbers)
                .prop_map(|(a, b, c)| format!("bytes {a}-{b}/{c}")),
            any::<String>(),
        ];
        let mut runner = TestRunner::new(Config {
            cases: 3000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&header, |h| {
                count.set(count.get() + 1);
                if let Some((a, b, c)) = parse_content_range(&h) {
                    prop_assert!(a <= b && b < c, "{h:?}");
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("Content-Range: {} inputs fuzzed", count.get());
    }

    #[test]
    fn headers_refuse_client_owned_names() {
        let h: Headers = [("Authorization", "x")].into_iter().collect();
        assert!(h.others().is_err());
        let h: Headers = [("Content-Type", "text/plain\r\nX: y")]
            .into_iter()
            .collect();
        assert!(h.others().is_err());
        let h: Headers = [("Content-Type", "text/plain"), ("x-amz-meta-a", "b")]
            .into_iter()
            .collect();
        assert_eq!(h.others().ok().map(|v| v.len()), Some(1));
        assert_eq!(h.metadata().get("a"), Some("b"));
    }

    #[test]
    fn error_bodies_in_2xx_replies_map_like_error_statuses() {
        let s3 = |code: &str| {
            xml::ReplyError::S3(xml::S3ErrorBody {
                code: code.into(),
                message: "m".into(),
                request_id: Some("r".into()),
                key: None,
                resource: None,
            })
        };
        let e = reply_error("w", "b", "k", 200, s3("PreconditionFailed"));
        assert!(e.is_precondition_failed());
        let e = reply_error("w", "b", "k", 200, s3("NoSuchUpload"));
        assert!(
            matches!(e, StorageError::NotFound { code: Some(ref c), .. } if c == "NoSuchUpload")
        );
        let e = reply_error("w", "b", "k", 200, s3("InternalError"));
        assert!(e.is_transient(), "S3 asks for a retry: {e}");
        assert!(matches!(e, StorageError::Http { status: 200, .. }));
        let e = reply_error("w", "b", "k", 200, s3("InvalidPart"));
        assert!(!e.is_transient());
        let e = reply_error(
            "w",
            "b",
            "k",
            200,
            xml::ReplyError::Xml(xml::XmlError::Empty),
        );
        assert!(matches!(e, StorageError::BadReply { .. }));
    }

    #[test]
    fn merge_prefers_override() {
        let base = vec![
            ("content-type".to_string(), "a".to_string()),
            ("cache-control".into(), "c".into()),
        ];
        let over = vec![("content-type".to_string(), "b".to_string())];
        let m = merge_headers(&base, &over);
        assert_eq!(m.len(), 2);
        assert!(m.contains(&("content-type".into(), "b".into())));
    }
}
