//! `Storage`: the connection to an S3 server, and the real [`ObjectStore`].
//!
//! A `Storage` holds the HTTP client (endpoint, credentials, retries of single requests), the
//! default bucket of the seed's names, the transfer settings and, for a mount, the upload
//! journal. [`Storage::bucket`] gives the policy layer for one bucket ([`Bucket`]: ranged reads
//! with resume, multipart transfers, reconciliation of lost replies); `impl ObjectStore` sends
//! exactly one request per method, through the request rooms (`requests/`).
//!
//! Elsewhere on `Storage`: the seed connector's API ([`super::seed`]: `write`, `read`,
//! `exists`, `copy`, `delete`, `update_metadata`). Single requests are the trait's methods
//! (bring [`ObjectStore`] into scope); anything more goes through [`Storage::bucket`].

use std::sync::Arc;

use super::body::RequestBody;
use super::bucket::Bucket;
use super::capability::Capabilities;
use super::client::{ClientConfig, S3Client};
use super::error::Result;
use super::journal::UploadJournal;
use super::meta::TagSet;
use super::name::{ObjectRef, S3Name};
use super::requests;
use super::store::ObjectStore;
use super::transfer::TransferConfig;
use super::types::{
    CopyRequest, CopyResult, DeleteResult, GetObject, ListPage, ListRequest, ObjectInfo, PartsPage,
    PutOptions, UploadsPage, UploadsRequest,
};

/// Content-Type from a key's extension, at the path the file system uses.
pub use super::meta::guess_content_type;

/// The S3 storage: a client, a default bucket, transfer settings and an upload journal; the
/// seed API (see [`super::seed`]) and a [`Bucket`] per bucket. Cheap to clone; thread-safe.
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
    /// What the server was found not to implement: one set for every bucket (and clone).
    caps: Arc<Capabilities>,
}

impl Storage {
    /// A storage for a loaded configuration (its endpoint, credentials and default bucket).
    pub fn new(config: &crate::config::Config) -> Result<Self> {
        let client = S3Client::new(ClientConfig::from_config(config))?;
        Ok(Storage::with_client(client, config.default_bucket.clone()))
    }

    /// A storage over an existing client.
    pub fn with_client(client: S3Client, default_bucket: Option<String>) -> Self {
        let caps = Capabilities::new();
        if client.config().endpoint.is_aws() {
            caps.assume_key_limit();
        }
        Storage {
            client,
            default_bucket,
            transfer: TransferConfig::default(),
            journal: None,
            caps: Arc::new(caps),
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

    /// What the server was found not to implement so far (see [`super::capability`]).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The default bucket, if any.
    pub fn default_bucket(&self) -> Option<&str> {
        self.default_bucket.as_deref()
    }

    /// Resolve a name against the default bucket.
    pub fn resolve(&self, name: impl Into<S3Name>) -> Result<ObjectRef> {
        name.into().resolve(self.default_bucket.as_deref())
    }

    /// The bucket `name` of this storage, with its transfer settings, the client's retry
    /// policy, the journal, the client's metrics (for the uploads in flight) and the
    /// capabilities learnt: the policy layer every transfer goes through.
    pub fn bucket(&self, name: &str) -> Bucket {
        Bucket::new(Arc::new(self.clone()), name)
            .with_transfer(self.transfer.clone())
            .with_retry(self.client.config().retry.clone())
            .with_journal(self.journal.clone())
            .with_metrics(self.client.metrics().cloned())
            .with_capabilities(self.caps.clone())
    }
}

/// The real store: each method is one request through the HTTP client (see
/// `requests/`).
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

    fn get_object_tagging(&self, obj: &ObjectRef) -> Result<TagSet> {
        requests::object::get_object_tagging(&self.client, obj)
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
