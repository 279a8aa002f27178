//! The S3 side: client, signing, XML, errors and the `Storage` API. Knows nothing of FUSE.

pub mod body;
pub mod client;
pub mod error;
pub mod etag;
pub mod journal;
pub mod memory;
pub mod meta;
pub mod name;
pub mod operation;
pub mod private;
pub mod reconcile;
pub(crate) mod requests;
pub mod sign;
pub mod storage;
pub mod store;
pub mod stream;
pub mod types;
pub mod xml;

#[cfg(test)]
mod fixtures;

pub use body::RequestBody;
pub use client::{ClientConfig, PayloadSigning, RetryPolicy, S3Client, S3Request, S3Response};
pub use error::{Result, StorageError};
pub use journal::UploadJournal;
pub use memory::MemoryStore;
pub use meta::Metadata;
pub use name::{ObjectRef, S3Name};
pub use operation::{Method, Operation};
pub use storage::{
    CopyRequest, GetObject, Headers, ListRequest, MultipartUpload, ObjectInfo, PendingUpload,
    PutOptions, ReplaceMetadata, Storage, TransferConfig,
};
pub use store::ObjectStore;
pub use stream::StreamingUpload;
