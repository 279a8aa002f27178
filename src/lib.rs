//! # s3mount
//!
//! A small, dependable S3 library — the Rust form of the `s3` Python connector it grew from —
//! and, on top of it, a FUSE file system that mounts a bucket as a directory (the `s3mount`
//! binary).
//!
//! The library keeps the connector's shape: a [`Config`] read from the same YAML `s3:` section,
//! [`S3Name`] (a key and an optional bucket, defaulting to the configured one) and [`Storage`]
//! with `write`, `read`, `exists`, `copy`, `delete` and `update_metadata`. Metadata is the
//! object's `x-amz-meta-*` headers ([`Metadata`]); values that are not ASCII round-trip.
//!
//! ```no_run
//! use s3mount::{Config, Headers, Storage};
//! use s3mount::config::LoadRequest;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load(&LoadRequest::from_file("s3.yaml"))?;
//! let storage = Storage::new(&config)?;
//!
//! storage.write("example", "example-in-s3", &Headers::new())?;
//! assert!(storage.exists("example-in-s3")?.is_some());
//! let metadata = storage.read("example-in-s3", "example-from-s3")?;
//! println!("metadata: {metadata:?}");
//! storage.delete("example-in-s3")?;
//! assert!(storage.exists("example-in-s3")?.is_none());
//! # Ok(()) }
//! ```
//!
//! Layers depend one way: [`config`] → [`s3`] → `cache` → `fs` → the binary.

#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod fs;
pub mod s3;

pub use config::Config;
pub use s3::{Headers, Metadata, S3Name, Storage, StorageError};

/// The examples of docs/library.md and README.md, compiled by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../docs/library.md")]
#[doc = include_str!("../README.md")]
pub struct ReadmeAndLibraryDocs;
