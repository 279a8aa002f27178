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
//! [`Storage::update_metadata`] (the seed API) and by the file system's `setattr`/`setxattr`.

use super::storage::merge_headers;
use super::{
    CopyRequest, Headers, Metadata, ObjectRef, ReplaceMetadata, S3Name, Storage, StorageError,
};

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

/// Update the metadata of `obj`: `read(attempt)` gives the current metadata (attempt 1 may
/// answer from a cache; later attempts follow a 412 and must ask the server), `edit` what to
/// write instead. See the module documentation.
pub fn update_metadata<E: From<StorageError>>(
    storage: &Storage,
    obj: &ObjectRef,
    mut read: impl FnMut(u32) -> Result<CurrentMetadata, E>,
    mut edit: impl FnMut(&CurrentMetadata) -> Result<ReplaceMetadata, E>,
) -> Result<Updated, UpdateError<E>> {
    let mut attempt = 1;
    loop {
        let base = read(attempt).map_err(UpdateError::Failed)?;
        let written = edit(&base).map_err(UpdateError::Failed)?;
        let copied = storage.copy_object(&CopyRequest {
            src: obj.clone(),
            dst: obj.clone(),
            replace: Some(written.clone()),
            if_match: base.etag.clone(),
            size: base.size,
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

/// The seed API's metadata update, through the loop above.
impl Storage {
    /// Replace `remote`'s metadata with the `x-amz-meta-*` in `headers`, in place: a self-copy
    /// with `REPLACE`, the content and content headers untouched (other headers in `headers`,
    /// such as a new Content-Type, are applied), guarded by the ETag so a concurrent overwrite
    /// is never rolled back: if the object changes between the HEAD and the copy (412), the HEAD
    /// and the copy are done again (a few times), so the metadata lands on the new content.
    pub fn update_metadata(
        &self,
        remote: impl Into<S3Name>,
        headers: &Headers,
    ) -> super::Result<()> {
        let obj = self.resolve(remote)?;
        let extra = headers.others()?;
        let read = |_attempt| {
            let head = self.head_object(&obj)?;
            Ok(CurrentMetadata {
                metadata: head.metadata,
                content_headers: head.content_headers,
                etag: head.etag,
                size: Some(head.size),
            })
        };
        let edit = |current: &CurrentMetadata| {
            Ok(ReplaceMetadata {
                metadata: headers.metadata(),
                content_headers: merge_headers(&current.content_headers, &extra),
            })
        };
        match update_metadata(self, &obj, read, edit) {
            Ok(_) => Ok(()),
            Err(UpdateError::Failed(e)) | Err(UpdateError::KeptChanging { last: e, .. }) => Err(e),
        }
    }
}
