//! The S3 side: client, signing, XML, errors and the `Storage` API. Knows nothing of FUSE.

pub mod client;
pub mod error;
pub mod meta;
pub mod name;
pub mod sign;
pub mod storage;
pub mod xml;

pub use client::{
    ClientConfig, Method, PayloadSigning, RequestBody, RetryPolicy, S3Client, S3Request, S3Response,
};
pub use error::{Result, StorageError};
pub use meta::Metadata;
pub use name::{ObjectRef, S3Name};
pub use storage::{
    CopyRequest, GetObject, Headers, ListRequest, ObjectInfo, PutOptions, ReplaceMetadata, Storage,
    TransferConfig,
};
