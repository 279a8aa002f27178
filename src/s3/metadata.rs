//! The one metadata-update loop: change an object's user metadata in place.
//!
//! S3 cannot change metadata without rewriting the object: an update is a copy of the object
//! onto itself with `x-amz-metadata-directive: REPLACE` that re-sends the content headers (a
//! REPLACE copy drops those it is not given: Content-Type would become binary/octet-stream).
//! The copy carries `x-amz-copy-source-if-match` with the ETag of the version the edit was
//! based on: if another client replaced the object meanwhile, S3 refuses (412) instead of
//! copying, so new content is never rolled back and its metadata never overwritten by a stale
//! set. The metadata is then read again and the edit applied to the new version, up to
//! [`METADATA_UPDATE_ATTEMPTS`] times; after that nothing was changed.
//!
//! The caller says how to read the current metadata (a HEAD, or a value it has cached for the
//! first attempt) and what the edit is; the loop does the copies and the counting. Used by
//! [`super::Storage::update_metadata`] (the seed API) and by the file system's
//! `setattr`/`setxattr`, through their [`Bucket`]. Above 5 GiB the copy is multipart
//! ([`Bucket::copy`]).

use super::bucket::Bucket;
use super::error::StorageError;
use super::meta::Metadata;
use super::types::{CopyRequest, ObjectInfo, ReplaceMetadata};

/// Self-copies tried when the object keeps changing on the server meanwhile: a few, because
/// each one lost means another writer finished in the short time between a HEAD and a copy.
pub const METADATA_UPDATE_ATTEMPTS: u32 = 4;

/// The metadata an update starts from: what the object had when last read.
#[derive(Debug, Clone, Default)]
pub struct CurrentMetadata {
    /// User metadata.
    pub metadata: Metadata,
    /// Content headers (`content-type`, ...), re-sent by the copy.
    pub content_headers: Vec<(String, String)>,
    /// ETag of the version read: the copy happens only if the object still has it.
    pub etag: Option<String>,
    /// Size in bytes, when known (above 5 GiB the copy is multipart).
    pub size: Option<u64>,
}

impl From<ObjectInfo> for CurrentMetadata {
    /// What a HEAD says.
    fn from(head: ObjectInfo) -> Self {
        CurrentMetadata {
            metadata: head.metadata,
            content_headers: head.content_headers,
            etag: head.etag,
            size: Some(head.size),
        }
    }
}

/// What an update did.
#[derive(Debug)]
pub struct Updated {
    /// The version it was based on.
    pub base: CurrentMetadata,
    /// The metadata and content headers written.
    pub written: ReplaceMetadata,
    /// The copy's ETag (a copy of a multipart object gets a new one).
    pub etag: Option<String>,
}

/// How an update ended when it did not succeed.
#[derive(Debug)]
pub enum UpdateError<E> {
    /// Reading the metadata, the edit or the copy failed.
    Failed(E),
    /// The object changed on the server before each of `attempts` copies: nothing was
    /// changed. `last` is the refusal of the last copy (412).
    KeptChanging {
        /// Copies tried.
        attempts: u32,
        /// The last copy's error.
        last: StorageError,
    },
}

/// Update the metadata of `key` in `bucket`: `read(attempt)` gives the current metadata
/// (attempt 1 may answer from a cache; later attempts follow a 412 and must ask the server),
/// `edit` what to write instead. See the module documentation.
pub fn update_metadata<E: From<StorageError>>(
    bucket: &Bucket,
    key: &str,
    mut read: impl FnMut(u32) -> Result<CurrentMetadata, E>,
    mut edit: impl FnMut(&CurrentMetadata) -> Result<ReplaceMetadata, E>,
) -> Result<Updated, UpdateError<E>> {
    let obj = bucket.obj(key);
    let mut attempt = 1;
    loop {
        let base = read(attempt).map_err(UpdateError::Failed)?;
        let written = edit(&base).map_err(UpdateError::Failed)?;
        let copied = bucket.copy(&CopyRequest {
            src: obj.clone(),
            dst: obj.clone(),
            replace: Some(written.clone()),
            if_match: base.etag.clone(),
            size: base.size,
            storage_class: None,
        });
        match copied {
            Ok(c) => {
                return Ok(Updated {
                    base,
                    written,
                    etag: c.etag,
                })
            }
            Err(e) if e.is_precondition_failed() && attempt < METADATA_UPDATE_ATTEMPTS => {
                log::info!("{obj}: changed on the server during a metadata update; again");
                attempt += 1;
            }
            Err(e) if e.is_precondition_failed() => {
                return Err(UpdateError::KeptChanging {
                    attempts: attempt,
                    last: e,
                })
            }
            Err(e) => return Err(UpdateError::Failed(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::memory::{Failure, MemoryStore};
    use crate::s3::operation::Operation;
    use std::sync::Arc;

    fn setup() -> (MemoryStore, Bucket) {
        let store = MemoryStore::with_bucket("b");
        let meta: Metadata = [("a", "1")].into_iter().collect();
        let text = [("content-type".to_string(), "text/plain".to_string())];
        store.put_behind_with("b", "k", "content", &meta, &text);
        let bucket = Bucket::new(Arc::new(store.clone()), "b");
        (store, bucket)
    }

    /// Read with a HEAD each time; the edit sets `x-amz-meta-b` and keeps the content headers.
    fn update(bucket: &Bucket, reads: &mut Vec<u32>) -> Result<Updated, UpdateError<StorageError>> {
        let read = |attempt| {
            reads.push(attempt);
            bucket.head("k").map(CurrentMetadata::from)
        };
        let edit = |current: &CurrentMetadata| {
            let mut metadata = current.metadata.clone();
            metadata.insert("b", "2");
            Ok(ReplaceMetadata {
                metadata,
                content_headers: current.content_headers.clone(),
            })
        };
        update_metadata(bucket, "k", read, edit)
    }

    #[test]
    fn one_guarded_self_copy_changes_metadata_not_content() {
        let (store, bucket) = setup();
        let mut reads = Vec::new();
        let done = update(&bucket, &mut reads).unwrap();
        assert_eq!(reads, [1]);
        assert_eq!(store.count(Operation::CopyObject), 1);
        let now = store.object("b", "k").unwrap();
        assert_eq!(now.data, b"content");
        assert_eq!(now.metadata.get("a"), Some("1"));
        assert_eq!(now.metadata.get("b"), Some("2"));
        assert_eq!(now.info().content_type(), Some("text/plain"));
        assert_eq!(done.etag.as_deref(), Some(now.etag.as_str()));
        assert_eq!(done.base.metadata.get("b"), None);
    }

    #[test]
    fn an_object_replaced_meanwhile_gets_the_metadata_on_its_new_content() {
        let (store, bucket) = setup();
        store.before_next(Operation::CopyObject, |s| {
            s.put_behind("b", "k", "theirs");
        });
        let mut reads = Vec::new();
        update(&bucket, &mut reads).unwrap();
        assert_eq!(reads, [1, 2], "read again after the 412");
        let now = store.object("b", "k").unwrap();
        assert_eq!(now.data, b"theirs", "the new content is never rolled back");
        assert_eq!(now.metadata.get("b"), Some("2"));
        assert_eq!(now.metadata.get("a"), None, "edited from the new version");
    }

    #[test]
    fn an_object_that_keeps_changing_is_left_alone_after_the_attempts() {
        let (store, bucket) = setup();
        for i in 0..METADATA_UPDATE_ATTEMPTS {
            store.before_next(Operation::CopyObject, move |s| {
                s.put_behind("b", "k", format!("version {i}"));
            });
        }
        let mut reads = Vec::new();
        match update(&bucket, &mut reads) {
            Err(UpdateError::KeptChanging { attempts, last }) => {
                assert_eq!(attempts, METADATA_UPDATE_ATTEMPTS);
                assert!(last.is_precondition_failed());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reads.len() as u32, METADATA_UPDATE_ATTEMPTS);
        assert_eq!(store.object("b", "k").unwrap().metadata.get("b"), None);
    }

    #[test]
    fn other_failures_end_the_loop_at_once() {
        let (store, bucket) = setup();
        store.fail_next(
            Operation::CopyObject,
            1,
            Failure::Status(403, "AccessDenied"),
        );
        let mut reads = Vec::new();
        match update(&bucket, &mut reads) {
            Err(UpdateError::Failed(StorageError::AccessDenied { .. })) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(reads, [1]);
        store.delete_behind("b", "k");
        assert!(matches!(
            update(&bucket, &mut reads),
            Err(UpdateError::Failed(e)) if e.is_not_found()
        ));
    }
}
