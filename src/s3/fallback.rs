//! The requests that use a [`Capability`], with the weaker behaviour s3mount falls back to
//! when the server rejects it (learnt on first use: see [`super::capability`]).
//!
//! | capability | weaker behaviour |
//! | --- | --- |
//! | `If-None-Match: *` on PUT and CompleteMultipartUpload | HEAD first: an object there is a 412 (EEXIST); then the write without the condition. Another client's object created between the HEAD and the write is overwritten. |
//! | `If-Match` on PUT and CompleteMultipartUpload | HEAD first: another version is a 412, no object a 404; then the write without the condition (the same window). |
//! | `If-Match` on GET | the GET without it; the reply's ETag compared with the one wanted, another is a 412 (EIO): never a mix of versions. |
//! | `x-amz-copy-source-if-match` | HEAD of the source first: another version is a 412; then the copy without the condition (the same window). |
//! | `x-amz-metadata-directive: REPLACE` | the object is re-uploaded: a GET pinned to the version, then a PUT with the new metadata under `If-Match` (up to [`MAX_REUPLOAD_BYTES`]; larger objects are [`StorageError::Unsupported`], ENOTSUP). |
//! | DeleteObjects | one DeleteObject per key, [`DELETE_PARALLELISM`] at a time. |
//!
//! Each function here runs under `capability::with_fallbacks`, so a server that honours everything gets
//! exactly the requests it got before; and every write still goes through
//! [`super::reconcile`], so a lost reply is looked into whichever way it was sent.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::body::RequestBody;
use super::capability::{with_fallbacks, CapSet, Capabilities, Capability};
use super::client::RetryPolicy;
use super::error::{Result, StorageError};
use super::name::ObjectRef;
use super::read;
use super::reconcile;
use super::store::{head_if_any, ObjectStore};
use super::tags;
use super::types::{CopyRequest, CopyResult, DeleteResult, GetObject, KeyVersion, PutOptions};
use super::xml::xml_char_ok;

/// Objects up to this size are re-uploaded when the server rejects a metadata `REPLACE` (the
/// body is held in memory meanwhile): the bound of the looks' byte comparison, four times the
/// multipart threshold, so every file the mount uploads in one PUT qualifies.
pub const MAX_REUPLOAD_BYTES: u64 = reconcile::MAX_COMPARED_BYTES;
/// DeleteObject requests in flight when a server rejects DeleteObjects: as many as the parts of
/// a multipart upload in flight.
pub const DELETE_PARALLELISM: usize = 8;

/// What the write conditions of `opts` use.
fn conditions(opts: &PutOptions) -> Vec<Capability> {
    let mut used = Vec::new();
    if opts.if_none_match_any {
        used.push(Capability::IfNoneMatch);
    }
    if opts.if_match.is_some() {
        used.push(Capability::IfMatch);
    }
    used
}

fn precondition_failed(obj: &ObjectRef) -> StorageError {
    StorageError::PreconditionFailed {
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
    }
}

/// `opts` without the conditions in `without`, each checked with a HEAD of `obj` instead (as
/// S3 would have checked it): an object there against `If-None-Match: *` is a 412, another
/// version against `If-Match` a 412, no object against `If-Match` a 404 (NoSuchKey).
pub(crate) fn checked_conditions<'a>(
    store: &dyn ObjectStore,
    obj: &ObjectRef,
    opts: &'a PutOptions,
    without: CapSet,
) -> Result<Cow<'a, PutOptions>> {
    let drop_none_match = opts.if_none_match_any && without.contains(Capability::IfNoneMatch);
    let drop_match = opts.if_match.is_some() && without.contains(Capability::IfMatch);
    if !(drop_none_match || drop_match) {
        return Ok(Cow::Borrowed(opts));
    }
    let head = head_if_any(store, obj)?;
    let mut weaker = opts.clone();
    if drop_none_match {
        if head.is_some() {
            return Err(precondition_failed(obj));
        }
        weaker.if_none_match_any = false;
    }
    if drop_match {
        let Some(head) = &head else {
            return Err(StorageError::NotFound {
                bucket: obj.bucket.clone(),
                key: obj.key.clone(),
                code: Some("NoSuchKey".into()),
            });
        };
        if head.etag != weaker.if_match {
            return Err(precondition_failed(obj));
        }
        weaker.if_match = None;
    }
    Ok(Cow::Owned(weaker))
}

/// PUT `body` as `obj` under `opts`' conditions, falling back to HEAD-checked conditions; a
/// conditional PUT's lost reply is looked into. Returns the new ETag.
pub(crate) fn put(
    store: &dyn ObjectStore,
    retry: &RetryPolicy,
    caps: &Capabilities,
    obj: &ObjectRef,
    body: RequestBody<'_>,
    opts: &PutOptions,
) -> Result<Option<String>> {
    // The object it replaces keeps its tags (see `super::tags`).
    tags::keeping_tags(store, obj, opts, |opts| {
        with_fallbacks(caps, &conditions(opts), |without| {
            let opts = checked_conditions(store, obj, opts, without)?;
            if opts.if_none_match_any || opts.if_match.is_some() {
                reconcile::put(store, retry, caps, obj, body, &opts)
            } else {
                // Unconditional: sending it again stores the same bytes (the client retries it).
                store.put_object(obj, body, &opts)
            }
        })
    })
}

/// The conditions of a completion, as [`put`] takes them: `complete(cond)` completes under
/// `cond` (already weakened where the server rejects a condition).
pub(crate) fn complete<T>(
    store: &dyn ObjectStore,
    caps: &Capabilities,
    obj: &ObjectRef,
    cond: &PutOptions,
    mut complete: impl FnMut(&PutOptions) -> Result<T>,
) -> Result<T> {
    with_fallbacks(caps, &conditions(cond), |without| {
        let cond = checked_conditions(store, obj, cond, without)?;
        complete(&cond)
    })
}

/// GET `obj` (bytes `[start, end)` of it), only the version whose ETag is `if_match` when
/// given; without `If-Match` where the server rejects it, the reply's ETag then compared.
pub(crate) fn get(
    store: &dyn ObjectStore,
    caps: &Capabilities,
    obj: &ObjectRef,
    range: Option<(u64, u64)>,
    if_match: Option<&str>,
) -> Result<GetObject> {
    let Some(want) = if_match else {
        return store.get_object(obj, range, None);
    };
    with_fallbacks(caps, &[Capability::GetIfMatch], |without| {
        if !without.contains(Capability::GetIfMatch) {
            return store.get_object(obj, range, Some(want));
        }
        let got = store.get_object(obj, range, None)?;
        match got.etag.as_deref() {
            Some(etag) if etag != want => Err(precondition_failed(obj)),
            _ => Ok(got),
        }
    })
}

/// `c` without `x-amz-copy-source-if-match` when `without` says so, the source checked with a
/// HEAD instead (another version: 412).
pub(crate) fn checked_copy<'a>(
    store: &dyn ObjectStore,
    c: &'a CopyRequest,
    without: CapSet,
) -> Result<Cow<'a, CopyRequest>> {
    match &c.if_match {
        Some(want) if without.contains(Capability::CopySourceIfMatch) => {
            let head = store.head_object(&c.src)?;
            if head.etag.as_deref() != Some(want.as_str()) {
                return Err(precondition_failed(&c.dst));
            }
            let mut weaker = c.clone();
            weaker.if_match = None;
            Ok(Cow::Owned(weaker))
        }
        _ => Ok(Cow::Borrowed(c)),
    }
}

/// What a copy request uses.
pub(crate) fn copy_capabilities(c: &CopyRequest) -> Vec<Capability> {
    let mut used = Vec::new();
    if c.if_match.is_some() {
        used.push(Capability::CopySourceIfMatch);
    }
    if c.replace.is_some() {
        used.push(Capability::MetadataReplace);
    }
    used
}

/// One CopyObject (up to 5 GiB), falling back to a HEAD-checked source and to a re-upload for
/// a metadata `REPLACE`; a lost reply is looked into.
pub(crate) fn copy(
    store: &dyn ObjectStore,
    retry: &RetryPolicy,
    caps: &Capabilities,
    c: &CopyRequest,
) -> Result<CopyResult> {
    with_fallbacks(caps, &copy_capabilities(c), |without| {
        if c.replace.is_some() && without.contains(Capability::MetadataReplace) {
            return reupload(store, retry, caps, c);
        }
        let c = checked_copy(store, c, without)?;
        reconcile::copy(store, retry, &c)
    })
}

/// A copy with new metadata made without `REPLACE`: GET the source (pinned to the version the
/// copy is pinned to, or the one a HEAD finds), PUT it as the destination with the new
/// metadata — under `If-Match` when it is the source itself, so another client's version
/// written meanwhile is never overwritten with old bytes.
fn reupload(
    store: &dyn ObjectStore,
    retry: &RetryPolicy,
    caps: &Capabilities,
    c: &CopyRequest,
) -> Result<CopyResult> {
    let Some(replace) = &c.replace else {
        return Err(StorageError::invalid(
            "copy",
            "a re-upload needs new metadata",
        ));
    };
    let head = store.head_object(&c.src)?;
    if c.if_match
        .as_ref()
        .is_some_and(|want| head.etag.as_ref() != Some(want))
    {
        return Err(precondition_failed(&c.dst));
    }
    if head.size > MAX_REUPLOAD_BYTES {
        let what = format!("changing the metadata of {}", c.src);
        log::warn!(
            "{what}: the server does not implement x-amz-metadata-directive: REPLACE, and the object ({} bytes) is larger than the {MAX_REUPLOAD_BYTES} bytes s3mount re-uploads instead: not supported",
            head.size
        );
        return Err(StorageError::Unsupported {
            what,
            detail: format!(
                "the server rejects metadata REPLACE and the object is over {MAX_REUPLOAD_BYTES} bytes"
            ),
        });
    }
    let len = usize::try_from(head.size).map_err(|_| StorageError::invalid("size", "too large"))?;
    let mut bytes = vec![0u8; len];
    let pin = head.etag.as_deref();
    let (got, _) = read::read_range(store, caps, retry.resumes(), &c.src, 0, &mut bytes, pin)?;
    if got != len {
        // Shorter than its HEAD said: another version (a pinned read cannot end early).
        return Err(precondition_failed(&c.dst));
    }
    let opts = PutOptions {
        metadata: replace.metadata.clone(),
        content_headers: replace.content_headers.clone(),
        if_none_match_any: false,
        if_match: (c.src == c.dst).then(|| head.etag.clone()).flatten(),
    };
    // The source's tags, as a copy would keep them.
    let opts = tags::with_tags(store, &c.src, &opts);
    let etag = put(
        store,
        retry,
        caps,
        &c.dst,
        RequestBody::Bytes(&bytes),
        &opts,
    )?;
    Ok(CopyResult {
        etag,
        last_modified: None,
    })
}

/// Delete `keys` (at most 1000) of `bucket` with one DeleteObjects, or one DeleteObject per
/// key where the server rejects DeleteObjects; lost replies are looked into. A key XML 1.0
/// cannot carry (a control character other than tab and line ends: a valid file name) cannot
/// be named in DeleteObjects' body, so it gets a DeleteObject of its own: refusing the whole
/// batch for it would fail a directory's `mv` after its copies were made.
pub(crate) fn delete_batch(
    store: &dyn ObjectStore,
    retry: &RetryPolicy,
    caps: &Capabilities,
    bucket: &str,
    keys: &[KeyVersion],
) -> Result<DeleteResult> {
    let (batch, alone): (Vec<KeyVersion>, Vec<KeyVersion>) = keys
        .iter()
        .cloned()
        .partition(|k| k.key.chars().all(xml_char_ok));
    let mut result = if batch.is_empty() {
        DeleteResult::default()
    } else {
        with_fallbacks(caps, &[Capability::DeleteObjects], |without| {
            if without.contains(Capability::DeleteObjects) {
                delete_one_by_one(store, retry, bucket, &batch)
            } else {
                reconcile::delete_objects(store, retry, bucket, &batch)
            }
        })?
    };
    if !alone.is_empty() {
        let one_by_one = delete_one_by_one(store, retry, bucket, &alone)?;
        result.errors.extend(one_by_one.errors);
    }
    Ok(result)
}

/// One DeleteObject per key, [`DELETE_PARALLELISM`] at a time; the keys that could not be
/// deleted are reported as DeleteObjects reports them (key, code, message).
fn delete_one_by_one(
    store: &dyn ObjectStore,
    retry: &RetryPolicy,
    bucket: &str,
    keys: &[KeyVersion],
) -> Result<DeleteResult> {
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..DELETE_PARALLELISM.min(keys.len()) {
            s.spawn(|| {
                while let Some(k) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let obj = ObjectRef {
                        bucket: bucket.to_string(),
                        key: k.key.clone(),
                    };
                    if let Err(e) = reconcile::delete(store, retry, &obj, k.etag.as_deref()) {
                        let code = match &e {
                            StorageError::Http { code: Some(c), .. } => c.clone(),
                            StorageError::AccessDenied { code, .. } => code.clone(),
                            _ => "Error".to_string(),
                        };
                        errors.lock().push((k.key.clone(), code, e.to_string()));
                    }
                }
            });
        }
    });
    Ok(DeleteResult {
        deleted: Vec::new(),
        errors: errors.into_inner(),
    })
}

#[cfg(test)]
mod tests;
