//! The S3 side: client, signing, XML, errors, the storage seam and the `Storage` API. Knows
//! nothing of FUSE.
//!
//! From the wire up:
//! - [`client`] (HTTP, SigV4 through [`sign`], retries of single requests), [`operation`]
//!   (what each request is), [`body`], [`xml`] (the reply tree) and [`error`];
//! - `requests/`: one room per kind of S3 request with its reply's parser;
//! - [`store`]: the seam, [`ObjectStore`], one method per request; [`Storage`] implements it
//!   over the client, [`MemoryStore`] in memory (for tests, with switches);
//! - [`bucket`]: the policy for one bucket ([`Bucket`]), with [`read`] (ranged reads, resumed
//!   bodies), [`transfer`] (multipart), [`reconcile`] (lost replies), [`capability`] and
//!   [`fallback`] (what a server rejects, and what is done instead), [`journal`] (uploads on
//!   disk while they run) and [`metadata`] (the one metadata-update loop);
//!   [`stream`] feeds an upload from a file still being written; `tags` keeps an object's
//!   tags through a write that replaces it;
//! - [`storage`]: `Storage`, the connection, with its seed API ([`seed`]) and a [`Bucket`]
//!   per bucket.
//!
//! Beside them: [`metrics`] (requests, errors and latency per operation, uploads in flight,
//! for `s3mount status`), [`name`] (S3Name), [`meta`] (user metadata and content headers), [`types`]
//! (the values requests take and give), [`etag`], [`private`] (files private to the user),
//! [`spacing`] (copies spaced from the write before them).

pub mod body;
pub mod bucket;
pub mod capability;
pub mod client;
pub mod error;
pub mod etag;
pub mod fallback;
pub mod journal;
pub mod memory;
pub mod message;
pub mod meta;
pub mod metadata;
pub mod metrics;
pub mod name;
pub mod operation;
pub mod private;
pub mod read;
pub mod reconcile;
pub(crate) mod requests;
pub mod seed;
pub mod sign;
pub mod spacing;
pub mod storage;
pub mod store;
pub mod stream;
pub(crate) mod tags;
pub mod transfer;
pub mod types;
pub mod xml;

#[cfg(test)]
mod fixtures;

pub use body::RequestBody;
pub use bucket::Bucket;
pub use capability::{Capabilities, Capability};
pub use client::{ClientConfig, PayloadSigning, RetryPolicy, S3Client, S3Request, S3Response};
pub use error::{Result, StorageError};
pub use journal::UploadJournal;
pub use memory::MemoryStore;
pub use meta::Metadata;
pub use metrics::{OperationStats, S3Metrics, UploadStats, UploadTicket};
pub use name::{ObjectRef, S3Name};
pub use operation::{Method, Operation};
pub use seed::Headers;
pub use storage::Storage;
pub use store::ObjectStore;
pub use stream::StreamingUpload;
pub use transfer::{MultipartUpload, TransferConfig};
pub use types::{
    CopyRequest, GetObject, KeyVersion, ListRequest, ObjectInfo, PendingUpload, PutOptions,
    ReplaceMetadata,
};
