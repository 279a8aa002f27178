//! Writes whose reply was lost: look before sending them again.
//!
//! A request can reach the server, be applied, and still fail at the client: the connection is
//! reset or times out after the request went out, a gateway answers 502/504, or the 2xx reply
//! cannot be read. Sending it again is harmless for a plain PUT (the same bytes twice) or a
//! part, but not for these writes, each in its room here:
//!
//! - a **conditional PUT** (`If-None-Match: *`, `If-Match`; `put.rs`): the second attempt meets
//!   the object the first one stored and gets 412, blaming "someone else" for the writer's own
//!   work;
//! - **`CompleteMultipartUpload`** (`complete.rs`): AWS answers a repeated completion with its
//!   result again, but MinIO, Ceph and others answer 404 NoSuchUpload (or 500), and with
//!   `If-None-Match: *` a repetition meets the object the first one made (412);
//! - **`CopyObject`** (`copy.rs`): a metadata self-copy guarded by `x-amz-copy-source-if-match`
//!   meets its own new version (412 where the copy changed the ETag) and would be taken for
//!   another client's change; a rename's copy would be made a second time;
//! - **`DeleteObject` and `DeleteObjects`** (`delete.rs`): a second delete, after another client
//!   wrote the key meanwhile, would delete their object.
//!
//! So the client sends these once ([`super::S3Request::not_idempotent`]; again only when its
//! connection was refused, which carried nothing) and `run` repeats them here, in one loop
//! bounded like the client's: the [`super::Bucket`]'s [`RetryPolicy`] (the client's for a
//! [`super::Storage`]'s buckets), its attempts and its time budget. Everything here works on
//! any [`super::ObjectStore`], so these rules are tested against [`super::MemoryStore`] as well:
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
//! 4. When the attempts or the budget run out with the outcome still open, the error is
//!    [`StorageError::OutcomeUnknown`]: the write may or may not be on the server, so a caller
//!    must neither report success nor write it again under a condition the first attempt may
//!    have used up (the file system keeps the bytes and answers EIO).
//!
//! "The server holds what this write produces":
//! - **a PUT**: the object has the size and user metadata that were sent, and its ETag is the
//!   MD5 of the body (computed only now). Servers whose ETags are not MD5s (SSE-KMS, SSE-C, some
//!   gateways): the object's bytes are compared with the body (up to [`MAX_COMPARED_BYTES`]).
//! - **a multipart upload**: the object's ETag is the MD5 of the parts' binary MD5s followed by
//!   `-N` ([`super::etag::multipart_etag`], known when every part ETag is 32 hex digits); or,
//!   for servers whose ETags are not such MD5s, the upload is gone (ListParts → NoSuchUpload:
//!   completed, since this process did not abort it) and the object has the size and user
//!   metadata the upload was created with. The one case this cannot tell apart — someone else
//!   aborted the upload and wrote an object of that size and metadata meanwhile — is taken as
//!   success. An upload that is gone while the object is not ours (completed, then replaced or
//!   deleted; or aborted elsewhere) cannot be sent again: [`StorageError::OutcomeUnknown`].
//! - **a copy**: the destination has the source's size and the user metadata the copy sets
//!   (the source's with directive COPY, the new set with REPLACE) and, when the source's ETag
//!   is a single MD5, that ETag (every server gives a copy of such an object the MD5 of its
//!   bytes; a multipart `…-N` ETag is kept by some servers and replaced by others, so it is not
//!   compared — an existing destination of that size and metadata is then taken for the copy).
//!   A metadata self-copy is recognised by its metadata: the content is the same. Not ours,
//!   and the source no longer the version the copy is pinned to: the condition failed for real.
//! - **a delete**: the key is gone; or it holds another version than the one the caller meant
//!   (its ETag, when given): another client wrote it after the delete, and theirs is kept —
//!   never deleted by a second attempt. A DeleteObjects is looked at with one listing of its
//!   keys' common prefix; only the keys still holding the version meant are sent again.
//!
//! A look costs a HEAD (a ListParts more for a multipart upload whose ETag does not settle it,
//! one more HEAD of the source for a copy, a listing for DeleteObjects), and happens only after
//! a failure. Each look is one request, sent once ([`super::ObjectStore::single_attempt`]): a look
//! that fails counts as an attempt of the loop.

mod complete;
mod copy;
mod delete;
mod put;

pub(crate) use complete::{complete, Completion};
pub(crate) use copy::copy;
pub(crate) use delete::{delete, delete_objects};
pub(crate) use put::put;
pub use put::MAX_COMPARED_BYTES;
#[cfg(test)]
use {complete::judge_complete, copy::judge_copy, delete::judge_delete, put::judge_put};

use super::client::RetryPolicy;
use super::error::{Result, StorageError};
use super::meta::Metadata;
use super::name::ObjectRef;
#[cfg(test)]
use super::types::{CopyRequest, CopyResult, ObjectInfo, PutOptions, ReplaceMetadata};

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
    let first = std::time::Instant::now();
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
        let Some(delay) = policy.next_pause(attempt, first) else {
            return Err(match open {
                Some(detail) => StorageError::OutcomeUnknown {
                    what: what.to_string(),
                    detail,
                },
                None => err,
            });
        };
        log::debug!("{what}: attempt {attempt} failed ({err}); again in {delay:?}");
        std::thread::sleep(delay);
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
