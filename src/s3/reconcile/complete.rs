//! A `CompleteMultipartUpload` whose reply was lost (see the module note of [`super`]).

use super::{run, same_metadata, Verdict};
use crate::s3::client::RetryPolicy;
use crate::s3::error::{Result, StorageError};
use crate::s3::etag::multipart_etag;
use crate::s3::meta::Metadata;
use crate::s3::name::ObjectRef;
use crate::s3::store::{head_if_any, ObjectStore};
use crate::s3::types::{CopyResult, ObjectInfo, PutOptions};

/// A multipart upload to complete: which one, what it was created with, and its parts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion<'a> {
    /// The object the upload makes.
    pub obj: &'a ObjectRef,
    /// The upload.
    pub upload_id: &'a str,
    /// The user metadata it was created with (the object it makes carries it).
    pub metadata: &'a Metadata,
    /// The parts, `(number, ETag)`, in order.
    pub parts: &'a [(u32, String)],
    /// Bytes in all.
    pub size: u64,
}

/// Complete an upload under `cond`; a lost reply is looked into (see the module note).
pub(crate) fn complete(
    store: &dyn ObjectStore,
    policy: &RetryPolicy,
    c: Completion<'_>,
    cond: &PutOptions,
) -> Result<CopyResult> {
    let obj = c.obj;
    let what = format!("CompleteMultipartUpload {obj}");
    let expected_etag = multipart_etag(c.parts.iter().map(|(_, e)| e.as_str()));
    let send = || store.complete_multipart_upload(obj, c.upload_id, c.parts, cond);
    let look = || {
        let looks = store.single_attempt();
        let head = head_if_any(&*looks, obj)?;
        if let (Some(info), Some(want)) = (&head, &expected_etag) {
            if info.etag.as_deref() == Some(want.as_str()) {
                return Ok(Verdict::Ours(CopyResult {
                    etag: info.etag.clone(),
                    last_modified: info.last_modified,
                }));
            }
        }
        let open = upload_is_open(&*looks, obj, c.upload_id)?;
        Ok(judge_complete(
            head.as_ref(),
            open,
            c.size,
            c.metadata,
            cond,
        ))
    };
    run(policy, obj, &what, send, look)
}

/// After a completion whose reply was lost and whose ETag did not settle it: given the object
/// now under the key and whether the upload is still open, was it applied?
pub(crate) fn judge_complete(
    head: Option<&ObjectInfo>,
    upload_open: bool,
    size: u64,
    metadata: &Metadata,
    cond: &PutOptions,
) -> Verdict<CopyResult> {
    if upload_open {
        // Not completed (yet); sending it again is right unless its condition cannot hold.
        let conflict = match (head, &cond.if_match) {
            (Some(_), _) if cond.if_none_match_any => true,
            (h, Some(want)) => h.and_then(|i| i.etag.as_deref()) != Some(want.as_str()),
            _ => false,
        };
        return if conflict {
            Verdict::Conflict
        } else {
            Verdict::NotApplied
        };
    }
    match head {
        Some(info) if info.size == size && same_metadata(&info.metadata, metadata) => {
            Verdict::Ours(CopyResult {
                etag: info.etag.clone(),
                last_modified: info.last_modified,
            })
        }
        Some(_) => Verdict::Undecidable(
            "the upload is gone and the object is not the one it makes (completed and replaced since, or aborted elsewhere)".into(),
        ),
        None => Verdict::Undecidable(
            "the upload is gone and there is no object (completed and deleted since, or aborted elsewhere)".into(),
        ),
    }
}

/// Is the multipart upload still open? (ListParts of one part: NoSuchUpload means it was
/// completed or aborted. So does an empty list: a completion is only sent once parts were
/// uploaded, and s3s-fs 0.14.1 answers any upload id, completed or made up, with no parts.)
fn upload_is_open(looks: &dyn ObjectStore, obj: &ObjectRef, upload_id: &str) -> Result<bool> {
    match looks.list_parts(obj, upload_id, None, Some(1)) {
        Ok(page) => Ok(!page.parts.is_empty()),
        Err(StorageError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
