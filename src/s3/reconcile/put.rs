//! A conditional PUT whose reply was lost (see the module note of [`super`]).

use super::{run, same_metadata, Verdict};
use crate::s3::body::RequestBody;
use crate::s3::capability::Capabilities;
use crate::s3::client::RetryPolicy;
use crate::s3::error::{Result, StorageError};
use crate::s3::name::ObjectRef;
use crate::s3::read;
use crate::s3::store::{head_if_any, ObjectStore};
use crate::s3::types::{ObjectInfo, PutOptions};

/// Bodies up to this size are compared byte for byte with the object when its ETag is not the
/// body's MD5. Four times the multipart threshold: every single PUT the file system sends
/// qualifies, and a look reads at most this much once.
pub const MAX_COMPARED_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes read per request when comparing an object with a body (the data cache's block size).
const COMPARE_CHUNK: usize = 1024 * 1024;

/// PUT `body` as `obj` under `opts`' condition (`If-None-Match: *` or `If-Match`); a lost
/// reply is looked into (see the module note). Returns the new ETag.
pub(crate) fn put(
    store: &dyn ObjectStore,
    policy: &RetryPolicy,
    caps: &Capabilities,
    obj: &ObjectRef,
    body: RequestBody<'_>,
    opts: &PutOptions,
) -> Result<Option<String>> {
    let what = format!("PUT {obj}");
    let send = || store.put_object(obj, body, opts);
    run(policy, obj, &what, send, || {
        let head = head_if_any(&*store.single_attempt(), obj)?;
        judge_put(head.as_ref(), body.len(), opts, |info| {
            holds_body(store, policy, caps, obj, info, body)
        })
    })
}

/// After a conditional PUT whose reply was lost, given the object now under the key (`None`:
/// no object): is it this PUT (`holds_body` compares the content once size and metadata
/// agree), still the version the condition expects, or someone else's?
pub(crate) fn judge_put(
    head: Option<&ObjectInfo>,
    len: u64,
    opts: &PutOptions,
    holds_body: impl FnOnce(&ObjectInfo) -> Result<bool>,
) -> Result<Verdict<Option<String>>> {
    let Some(info) = head else {
        // Nothing there: the PUT did not land (or landed and was deleted since, when sending
        // it again is what the writer wants anyway) — unless it had to replace a version.
        return Ok(if opts.if_match.is_some() {
            Verdict::Conflict
        } else {
            Verdict::NotApplied
        });
    };
    if info.size == len && same_metadata(&info.metadata, &opts.metadata) && holds_body(info)? {
        return Ok(Verdict::Ours(info.etag.clone()));
    }
    match &opts.if_match {
        Some(want) if info.etag.as_deref() == Some(want.as_str()) => Ok(Verdict::NotApplied),
        _ => Ok(Verdict::Conflict),
    }
}

/// Does the object hold exactly `body`? Its ETag is the body's MD5 on most servers; otherwise
/// (servers whose ETags are not MD5s) its bytes are read and compared, up to
/// [`MAX_COMPARED_BYTES`], pinned to its ETag.
fn holds_body(
    store: &dyn ObjectStore,
    policy: &RetryPolicy,
    caps: &Capabilities,
    obj: &ObjectRef,
    info: &ObjectInfo,
    body: RequestBody<'_>,
) -> Result<bool> {
    let reread = |e| StorageError::io("reading the body again", e);
    if info.etag.as_deref() == Some(body.md5_hex().map_err(reread)?.as_str()) {
        return Ok(true);
    }
    // Not the MD5: other bytes, or a server whose ETags are not MD5s (AWS with SSE-KMS gives
    // 32 hex digits that are not one). Only the bytes can tell; a difference usually shows in
    // the first chunk.
    let len = body.len();
    if len > MAX_COMPARED_BYTES {
        return Ok(false);
    }
    let mut offset = 0u64;
    let mut theirs = vec![0u8; COMPARE_CHUNK];
    let mut ours = vec![0u8; COMPARE_CHUNK];
    while offset < len {
        let n = usize::try_from(len - offset)
            .unwrap_or(usize::MAX)
            .min(COMPARE_CHUNK);
        let etag = info.etag.as_deref();
        let reading = &mut theirs[..n];
        let (got, _) = read::read_range(store, caps, policy.resumes(), obj, offset, reading, etag)?;
        body.read_at(offset, &mut ours[..n]).map_err(reread)?;
        if got != n || theirs[..n] != ours[..n] {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}
