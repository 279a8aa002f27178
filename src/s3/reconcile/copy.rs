//! A `CopyObject` whose reply was lost (see the module note of [`super`]): a rename's copy, a
//! metadata self-copy.

use super::{run, same_metadata, Verdict};
use crate::s3::client::RetryPolicy;
use crate::s3::error::Result;
use crate::s3::etag::is_md5_hex;
use crate::s3::store::{head_if_any, ObjectStore};
use crate::s3::types::{CopyRequest, CopyResult, ObjectInfo};

/// One CopyObject (up to S3's 5 GiB); a lost reply is looked into (see the module note):
/// the destination and, unless the copy is onto itself, the source.
pub(crate) fn copy(
    store: &dyn ObjectStore,
    policy: &RetryPolicy,
    c: &CopyRequest,
) -> Result<CopyResult> {
    let what = format!("CopyObject {} -> {}", c.src, c.dst);
    let send = || store.copy_object(c);
    run(policy, &c.dst, &what, send, || {
        let looks = store.single_attempt();
        let dst = head_if_any(&*looks, &c.dst)?;
        let src = if c.src == c.dst {
            dst.clone()
        } else {
            head_if_any(&*looks, &c.src)?
        };
        Ok(judge_copy(c, src.as_ref(), dst.as_ref()))
    })
}

/// After a copy whose reply was lost, given the source and the destination now (`None`: no
/// object; the same for a self-copy): does the destination hold the copy, may it be sent
/// again, or did the source change from the version the copy is pinned to?
pub(crate) fn judge_copy(
    c: &CopyRequest,
    src: Option<&ObjectInfo>,
    dst: Option<&ObjectInfo>,
) -> Verdict<CopyResult> {
    if let Some(d) = dst.filter(|d| holds_copy(c, src, d)) {
        return Verdict::Ours(CopyResult {
            etag: d.etag.clone(),
            last_modified: d.last_modified,
        });
    }
    match (src, &c.if_match) {
        // Another version than the one the copy is pinned to: the condition fails for real.
        (Some(s), Some(want)) if s.etag.as_deref() != Some(want.as_str()) => Verdict::Conflict,
        // Still the version meant (or not pinned): send again. A source gone makes the next
        // attempt's 404 the answer.
        _ => Verdict::NotApplied,
    }
}

/// Does `dst` hold what the copy `c` of `src` (as it is now, when it still exists) makes?
fn holds_copy(c: &CopyRequest, src: Option<&ObjectInfo>, dst: &ObjectInfo) -> bool {
    let size = c.size.or(src.map(|s| s.size));
    if size.is_some_and(|s| s != dst.size) {
        return false;
    }
    // The metadata the copy sets, when known.
    let metadata = match &c.replace {
        Some(r) => Some(&r.metadata),
        None => src.map(|s| &s.metadata),
    };
    if metadata.is_some_and(|m| !same_metadata(&dst.metadata, m)) {
        return false;
    }
    if c.src == c.dst {
        // The same bytes before and after: the metadata it set is the copy (a self-copy always
        // replaces the metadata, S3 refuses one that does not).
        return c.replace.is_some();
    }
    // The version copied: the one the copy is pinned to, else the source as it is.
    let from = c
        .if_match
        .as_deref()
        .or_else(|| src.and_then(|s| s.etag.as_deref()));
    match from {
        // A single PUT's MD5: every server gives the copy the same (it is the bytes' MD5).
        Some(etag) if is_md5_hex(etag) => dst.etag.as_deref() == Some(etag),
        // A multipart ETag (kept by some servers, replaced by others): size and metadata tell,
        // when the metadata is known.
        _ => metadata.is_some(),
    }
}
