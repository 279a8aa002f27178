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

use super::body::RequestBody;
use super::client::{ClientConfig, S3Client};
use super::error::{Result, StorageError};
use super::journal::{JournalEntry, UploadJournal};
use super::meta::Metadata;
use super::name::{ObjectRef, S3Name};
use super::reconcile;
use super::requests;
use super::store::ObjectStore;
pub use super::types::{
    CopyRequest, GetObject, ListRequest, ObjectInfo, PendingUpload, PutOptions, ReplaceMetadata,
};
use super::types::{
    CopyResult, DeleteResult, ListPage, ListedObject, ListedPart, PartsPage, UploadsPage,
    UploadsRequest,
};

pub use super::store::{MAX_PARTS, MAX_SINGLE_COPY, MIN_PART_SIZE};

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
        requests::bucket::head_bucket(&self.client, bucket)
    }

    /// Create a bucket (in the client's region).
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        requests::bucket::create_bucket(&self.client, bucket)
    }

    /// Delete an (empty) bucket.
    pub fn delete_bucket(&self, bucket: &str) -> Result<()> {
        requests::bucket::delete_bucket(&self.client, bucket)
    }

    // ---- objects ----------------------------------------------------------------------------

    /// HEAD an object.
    pub fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        requests::object::head_object(&self.client, obj)
    }

    /// GET an object, or the bytes `[start, end)` of it, optionally only if its ETag matches.
    pub fn get_object(
        &self,
        obj: &ObjectRef,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<GetObject> {
        requests::object::get_object(&self.client, obj, range, if_match)
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
        let send = || requests::object::put_object(&self.client, obj, body, opts);
        if !(opts.if_none_match_any || opts.if_match.is_some()) {
            return send();
        }
        reconcile::put(self, obj, body, opts, send)
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
        requests::object::delete_object(&self.client, obj)
    }

    /// Delete many keys with DeleteObjects (1000 per request). Keys S3 reports as not deleted are
    /// returned in `errors`.
    pub fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<DeleteResult> {
        let mut all = DeleteResult::default();
        for chunk in keys.chunks(requests::delete::MAX_KEYS) {
            let r = requests::delete::delete_objects(&self.client, bucket, chunk)?;
            all.deleted.extend(r.deleted);
            all.errors.extend(r.errors);
        }
        Ok(all)
    }

    /// One ListObjectsV2 page (`encoding-type=url`, so any key survives the XML).
    pub fn list_objects_v2(&self, bucket: &str, list: &ListRequest) -> Result<ListPage> {
        requests::list::list_objects_v2(&self.client, bucket, list)
    }

    /// Every page of a listing, concatenated: (objects, common prefixes).
    pub fn list_all(
        &self,
        bucket: &str,
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
        requests::object::copy_object(&self.client, c)
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
        requests::multipart::create_multipart_upload(&self.client, obj, opts)
    }

    /// Upload one part; returns its ETag.
    pub fn upload_part(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        body: RequestBody<'_>,
    ) -> Result<String> {
        requests::multipart::upload_part(&self.client, obj, upload_id, part_number, body)
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
        requests::multipart::upload_part_copy(
            &self.client,
            obj,
            upload_id,
            part_number,
            src,
            range,
            if_match,
        )
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
        requests::multipart::complete_multipart_upload(&self.client, obj, upload_id, parts, cond)
    }

    /// Abort a multipart upload (its parts are freed). An upload that is already gone is fine.
    pub fn abort_multipart_upload(&self, obj: &ObjectRef, upload_id: &str) -> Result<()> {
        self.abort_if_open(obj, upload_id).map(|_| ())
    }

    fn abort_if_open(&self, obj: &ObjectRef, upload_id: &str) -> Result<bool> {
        match requests::multipart::abort_multipart_upload(&self.client, obj, upload_id) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every in-progress multipart upload of `bucket` whose key starts with `prefix`
    /// (ListMultipartUploads, all pages), with the time each was started.
    pub fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<PendingUpload>> {
        let mut out = Vec::new();
        let mut list = UploadsRequest {
            prefix: prefix.to_string(),
            ..UploadsRequest::default()
        };
        let what = format!("ListMultipartUploads s3://{bucket}/{prefix}");
        // Bounded: a server that keeps answering "truncated" with the same marker is an error.
        for _ in 0..100_000 {
            let page = requests::multipart::list_multipart_uploads(&self.client, bucket, &list)?;
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
    pub fn list_parts(&self, obj: &ObjectRef, upload_id: &str) -> Result<Vec<ListedPart>> {
        let mut out = Vec::new();
        let mut marker: Option<u32> = None;
        loop {
            let page = requests::multipart::list_parts(&self.client, obj, upload_id, marker, None)?;
            out.extend(page.parts);
            match page.next_part_number_marker {
                // Part numbers only grow, so this ends (at most 10 000 parts).
                Some(m) if page.is_truncated && marker.is_none_or(|old| m > old) => {
                    marker = Some(m)
                }
                Some(_) if page.is_truncated => {
                    return Err(StorageError::BadReply {
                        what: format!("ListParts {obj}"),
                        detail: "truncated listing does not advance".into(),
                    })
                }
                _ => return Ok(out),
            }
        }
    }
}

/// The real store: each method is one request through the HTTP client (see
/// [`super::requests`]).
impl ObjectStore for Storage {
    fn single_attempt(&self) -> Arc<dyn ObjectStore> {
        Arc::new(Storage {
            client: self.client.single_attempt(),
            ..self.clone()
        })
    }

    fn head_bucket(&self, bucket: &str) -> Result<()> {
        requests::bucket::head_bucket(&self.client, bucket)
    }

    fn create_bucket(&self, bucket: &str) -> Result<()> {
        requests::bucket::create_bucket(&self.client, bucket)
    }

    fn delete_bucket(&self, bucket: &str) -> Result<()> {
        requests::bucket::delete_bucket(&self.client, bucket)
    }

    fn head_object(&self, obj: &ObjectRef) -> Result<ObjectInfo> {
        requests::object::head_object(&self.client, obj)
    }

    fn get_object(
        &self,
        obj: &ObjectRef,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<GetObject> {
        requests::object::get_object(&self.client, obj, range, if_match)
    }

    fn put_object(
        &self,
        obj: &ObjectRef,
        body: RequestBody<'_>,
        opts: &PutOptions,
    ) -> Result<Option<String>> {
        requests::object::put_object(&self.client, obj, body, opts)
    }

    fn copy_object(&self, c: &CopyRequest) -> Result<CopyResult> {
        requests::object::copy_object(&self.client, c)
    }

    fn delete_object(&self, obj: &ObjectRef) -> Result<()> {
        requests::object::delete_object(&self.client, obj)
    }

    fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<DeleteResult> {
        requests::delete::delete_objects(&self.client, bucket, keys)
    }

    fn list_objects_v2(&self, bucket: &str, list: &ListRequest) -> Result<ListPage> {
        requests::list::list_objects_v2(&self.client, bucket, list)
    }

    fn create_multipart_upload(&self, obj: &ObjectRef, opts: &PutOptions) -> Result<String> {
        requests::multipart::create_multipart_upload(&self.client, obj, opts)
    }

    fn upload_part(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        body: RequestBody<'_>,
    ) -> Result<String> {
        requests::multipart::upload_part(&self.client, obj, upload_id, part_number, body)
    }

    fn upload_part_copy(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        part_number: u32,
        src: &ObjectRef,
        range: (u64, u64),
        if_match: Option<&str>,
    ) -> Result<String> {
        requests::multipart::upload_part_copy(
            &self.client,
            obj,
            upload_id,
            part_number,
            src,
            range,
            if_match,
        )
    }

    fn complete_multipart_upload(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        parts: &[(u32, String)],
        cond: &PutOptions,
    ) -> Result<CopyResult> {
        requests::multipart::complete_multipart_upload(&self.client, obj, upload_id, parts, cond)
    }

    fn abort_multipart_upload(&self, obj: &ObjectRef, upload_id: &str) -> Result<()> {
        requests::multipart::abort_multipart_upload(&self.client, obj, upload_id)
    }

    fn list_parts(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
        marker: Option<u32>,
        max_parts: Option<u32>,
    ) -> Result<PartsPage> {
        requests::multipart::list_parts(&self.client, obj, upload_id, marker, max_parts)
    }

    fn list_multipart_uploads(&self, bucket: &str, list: &UploadsRequest) -> Result<UploadsPage> {
        requests::multipart::list_multipart_uploads(&self.client, bucket, list)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// HEAD + conditional self-copy rounds of [`Storage::update_metadata`] when the object keeps
/// changing meanwhile.
const METADATA_UPDATE_ATTEMPTS: u32 = 4;

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
