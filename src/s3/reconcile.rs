//! Writes whose reply was lost: look before sending them again.
//!
//! A request can reach the server, be applied, and still fail at the client: the connection is
//! reset or times out after the request went out, a gateway answers 502/504, or the 2xx reply
//! cannot be read. Sending it again is harmless for most requests (a plain PUT stores the same
//! bytes twice), but not for the two writes behind `close`:
//!
//! - a **conditional PUT** (`If-None-Match: *`, `If-Match`): the second attempt meets the object
//!   the first one stored and gets 412, blaming "someone else" for the writer's own work;
//! - **`CompleteMultipartUpload`**: AWS answers a repeated completion with its result again,
//!   but MinIO, Ceph and others answer 404 NoSuchUpload (or 500), and with `If-None-Match: *`
//!   a repetition meets the object the first one made (412).
//!
//! So the client sends these once ([`super::S3Request::not_idempotent`]) and `run` repeats
//! them here, in one loop with one attempt count (the [`super::Bucket`]'s [`RetryPolicy`], the
//! client's for a [`super::Storage`]'s buckets). Everything here works on any
//! [`ObjectStore`], so these rules are tested against [`super::MemoryStore`] as well:
//!
//! 1. A success ends it; so does a definite refusal (a 4xx) of a request no earlier attempt of
//!    which may have been applied.
//! 2. Throttling (503, `SlowDown`, `RequestTimeout`: the server did not take the request) means
//!    not applied: wait, send again.
//! 3. Everything that leaves the outcome open — a network error or timeout, 500/502/504, a 2xx
//!    reply that cannot be read, and 412 or NoSuchUpload once an earlier attempt may have been
//!    applied — is looked into before anything is sent again:
//!    - **ours**: the server holds what this write produces → it succeeded;
//!    - **not applied**: the object is still the one the condition expects (for a multipart
//!      upload: the upload is still open) → send again;
//!    - **conflict**: another client's object is in the way → the condition failed for real
//!      ([`StorageError::PreconditionFailed`]);
//!    - a look that fails leaves the outcome open: send again (whatever a later attempt meets
//!      is looked into too).
//! 4. When the attempts run out with the outcome still open, the error is
//!    [`StorageError::OutcomeUnknown`]: the write may or may not be on the server, so a caller
//!    must neither report success nor write it again under a condition the first attempt may
//!    have used up (the file system keeps the bytes and answers EIO).
//!
//! "The server holds what this write produces":
//! - **a PUT**: the object has the size and user metadata that were sent, and its ETag is the
//!   MD5 of the body (computed only now). Servers whose ETags are not MD5s (SSE-KMS, SSE-C, some
//!   gateways): the object's bytes are compared with the body (up to [`MAX_COMPARED_BYTES`]).
//! - **a multipart upload**: the object's ETag is the MD5 of the parts' binary MD5s followed by
//!   `-N` ([`multipart_etag`], known when every part ETag is 32 hex digits); or, for servers
//!   whose ETags are not such MD5s, the upload is gone (ListParts → NoSuchUpload: completed,
//!   since this process did not abort it) and the object has the size and user metadata the
//!   upload was created with. The one case this cannot tell apart — someone else aborted the
//!   upload and wrote an object of that size and metadata meanwhile — is taken as success.
//!   An upload that is gone while the object is not ours (completed, then replaced or deleted;
//!   or aborted elsewhere) cannot be sent again: [`StorageError::OutcomeUnknown`].
//!
//! A look costs a HEAD (plus a ListParts for a multipart upload whose ETag does not settle it),
//! and happens only after a failure. Each look is one request, sent once
//! ([`ObjectStore::single_attempt`]): a look that fails counts as an attempt of the loop.

use super::body::RequestBody;
use super::client::RetryPolicy;
use super::error::{Result, StorageError};
use super::etag::multipart_etag;
use super::meta::Metadata;
use super::name::ObjectRef;
use super::read;
use super::store::{head_if_any, ObjectStore};
use super::types::{CopyResult, ObjectInfo, PutOptions};

/// Bodies up to this size are compared byte for byte with the object when its ETag is not the
/// body's MD5. Four times the multipart threshold: every single PUT the file system sends
/// qualifies, and a look reads at most this much once.
pub const MAX_COMPARED_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes read per request when comparing an object with a body (the data cache's block size).
const COMPARE_CHUNK: usize = 1024 * 1024;

/// What a look at the server says about a write whose outcome was open.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict<T> {
    /// The server holds what this write produces: it succeeded.
    Ours(T),
    /// The write was not applied and may be sent again.
    NotApplied,
    /// Another client's object is in the way: the condition fails for real.
    Conflict,
    /// The write can neither be seen on the server nor be sent again (why).
    Undecidable(String),
}

/// What an attempt's error says about the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Not applied, and sending it again will not change that: return the error.
    Settled,
    /// Not applied (throttled): send again after a pause.
    Throttled,
    /// Maybe applied: look before sending again.
    Open,
}

fn classify(e: &StorageError, maybe_applied: bool) -> Class {
    match e {
        StorageError::Network { .. } | StorageError::Timeout { .. } => Class::Open,
        // A 2xx reply that could not be read: the server answered, so it most likely acted.
        StorageError::BadReply { .. } => Class::Open,
        // Once an earlier attempt may have been applied, these may be its traces.
        StorageError::PreconditionFailed { .. } if maybe_applied => Class::Open,
        StorageError::NotFound {
            code: Some(code), ..
        } if maybe_applied && code == "NoSuchUpload" => Class::Open,
        StorageError::Http { status, code, .. } => match (*status, code.as_deref()) {
            (503, _) | (_, Some("SlowDown" | "ServiceUnavailable" | "RequestTimeout")) => {
                Class::Throttled
            }
            // AWS: another conditional write on the key is in progress; look, then retry.
            (_, Some("ConditionalRequestConflict")) => Class::Open,
            (status, code) if super::error::is_retryable_status(status, code) => Class::Open,
            _ => Class::Settled,
        },
        _ => Class::Settled,
    }
}

/// Send a write with `send` (one request, not retried by the client) until it succeeds or
/// fails for certain; whenever its outcome is open, `look` first (see the module note).
pub(crate) fn run<T>(
    policy: &RetryPolicy,
    target: &ObjectRef,
    what: &str,
    mut send: impl FnMut() -> Result<T>,
    mut look: impl FnMut() -> Result<Verdict<T>>,
) -> Result<T> {
    // Some attempt so far may have been applied.
    let mut maybe_applied = false;
    // Why the outcome is open, while no look has settled it.
    let mut open: Option<String> = None;
    let attempts = policy.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match send() {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        match classify(&err, maybe_applied) {
            Class::Settled => return Err(err),
            Class::Throttled => {}
            Class::Open => {
                maybe_applied = true;
                match look() {
                    Ok(Verdict::Ours(t)) => {
                        log::info!("{what}: {err}; the server holds this write: done");
                        return Ok(t);
                    }
                    Ok(Verdict::NotApplied) => {
                        log::debug!("{what}: {err}; not applied");
                        open = None;
                    }
                    Ok(Verdict::Conflict) => {
                        log::debug!("{what}: {err}; another client's object is in the way");
                        return Err(StorageError::PreconditionFailed {
                            bucket: target.bucket.clone(),
                            key: target.key.clone(),
                        });
                    }
                    Ok(Verdict::Undecidable(why)) => {
                        return Err(StorageError::OutcomeUnknown {
                            what: what.to_string(),
                            detail: format!("{err}; {why}"),
                        })
                    }
                    Err(look_err) => {
                        log::debug!("{what}: {err}; cannot look: {look_err}");
                        open = Some(format!("{err}; looking failed: {look_err}"));
                    }
                }
            }
        }
        if attempt >= attempts {
            return Err(match open {
                Some(detail) => StorageError::OutcomeUnknown {
                    what: what.to_string(),
                    detail,
                },
                None => err,
            });
        }
        let delay = policy.backoff(attempt);
        log::debug!("{what}: attempt {attempt} failed ({err}); again in {delay:?}");
        std::thread::sleep(delay);
    }
}

// ---- a conditional PUT ------------------------------------------------------------------------

/// PUT `body` as `obj` under `opts`' condition (`If-None-Match: *` or `If-Match`); a lost
/// reply is looked into (see the module note). Returns the new ETag.
pub(crate) fn put(
    store: &dyn ObjectStore,
    policy: &RetryPolicy,
    obj: &ObjectRef,
    body: RequestBody<'_>,
    opts: &PutOptions,
) -> Result<Option<String>> {
    let what = format!("PUT {obj}");
    let send = || store.put_object(obj, body, opts);
    run(policy, obj, &what, send, || {
        let head = head_if_any(&*store.single_attempt(), obj)?;
        judge_put(head.as_ref(), body.len(), opts, |info| {
            holds_body(store, policy, obj, info, body)
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
        let (got, _) = read::read_range(store, policy.max_attempts, obj, offset, reading, etag)?;
        body.read_at(offset, &mut ours[..n]).map_err(reread)?;
        if got != n || theirs[..n] != ours[..n] {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}

// ---- CompleteMultipartUpload ------------------------------------------------------------------

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

// ---- looking ----------------------------------------------------------------------------------

// A look is one request of each kind, not retried by the client: a look that fails counts as
// an attempt of the loop in `run`, which has the one attempt count.

/// Is the multipart upload still open? (ListParts of one part: NoSuchUpload means it was
/// completed or aborted.)
fn upload_is_open(looks: &dyn ObjectStore, obj: &ObjectRef, upload_id: &str) -> Result<bool> {
    match looks.list_parts(obj, upload_id, None, Some(1)) {
        Ok(_) => Ok(true),
        Err(StorageError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The same user metadata? Values are compared without surrounding whitespace, which HTTP
/// header values do not keep.
pub(crate) fn same_metadata(stored: &Metadata, sent: &Metadata) -> bool {
    stored.len() == sent.len()
        && stored
            .iter()
            .zip(sent.iter())
            .all(|((n1, v1), (n2, v2))| n1 == n2 && v1.trim() == v2.trim())
}

#[cfg(test)]
mod tests;
