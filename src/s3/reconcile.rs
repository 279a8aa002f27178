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
//! So the client sends these once ([`super::S3Request::not_idempotent`]) and [`run`] repeats
//! them here, in one loop with one attempt count (the client's [`RetryPolicy`]):
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
//! and happens only after a failure.

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
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;
    use std::time::Duration;

    fn target() -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: "k".into(),
        }
    }

    /// Quick retries: these tests count attempts, they do not time them.
    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    fn network() -> StorageError {
        StorageError::Network {
            what: "PUT s3://b/k".into(),
            detail: "connection reset".into(),
        }
    }

    fn http(status: u16, code: &str) -> StorageError {
        StorageError::Http {
            status,
            code: Some(code.into()),
            message: String::new(),
            bucket: "b".into(),
            key: "k".into(),
            request_id: None,
        }
    }

    fn precondition() -> StorageError {
        StorageError::PreconditionFailed {
            bucket: "b".into(),
            key: "k".into(),
        }
    }

    fn no_such_upload() -> StorageError {
        StorageError::NotFound {
            bucket: "b".into(),
            key: "k".into(),
            code: Some("NoSuchUpload".into()),
        }
    }

    /// Run the loop with scripted sends and looks; returns the result, sends and looks made.
    fn script(
        sends: Vec<Result<u32>>,
        looks: Vec<Result<Verdict<u32>>>,
    ) -> (Result<u32>, usize, usize) {
        let sends = RefCell::new(VecDeque::from(sends));
        let looks = RefCell::new(VecDeque::from(looks));
        let (sent, looked) = (Cell::new(0), Cell::new(0));
        let r = run(
            &policy(),
            &target(),
            "PUT s3://b/k",
            || {
                sent.set(sent.get() + 1);
                sends.borrow_mut().pop_front().expect("a scripted send")
            },
            || {
                looked.set(looked.get() + 1);
                looks.borrow_mut().pop_front().expect("a scripted look")
            },
        );
        (r, sent.get(), looked.get())
    }

    #[test]
    fn a_lost_reply_of_an_applied_write_is_a_success_without_resending() {
        let (r, sent, looked) = script(vec![Err(network())], vec![Ok(Verdict::Ours(7))]);
        assert_eq!(r.ok(), Some(7));
        assert_eq!((sent, looked), (1, 1));
    }

    #[test]
    fn a_write_not_applied_is_sent_again() {
        let (r, sent, looked) = script(vec![Err(network()), Ok(3)], vec![Ok(Verdict::NotApplied)]);
        assert_eq!(r.ok(), Some(3));
        assert_eq!((sent, looked), (2, 1));
    }

    #[test]
    fn a_first_412_is_a_real_conflict_and_nothing_is_looked_at() {
        let (r, sent, looked) = script(vec![Err(precondition())], vec![]);
        assert!(matches!(r, Err(StorageError::PreconditionFailed { .. })));
        assert_eq!((sent, looked), (1, 0));
        let (r, _, looked) = script(vec![Err(no_such_upload())], vec![]);
        assert!(r.is_err_and(|e| e.is_not_found()));
        assert_eq!(looked, 0);
    }

    #[test]
    fn a_412_after_a_lost_reply_is_looked_into() {
        // The first attempt was applied late (after the look saw nothing): the resend's 412
        // is the first attempt's trace, not someone else's object.
        let (r, sent, looked) = script(
            vec![Err(network()), Err(precondition())],
            vec![Ok(Verdict::NotApplied), Ok(Verdict::Ours(9))],
        );
        assert_eq!(r.ok(), Some(9));
        assert_eq!((sent, looked), (2, 2));
        let (r, _, _) = script(
            vec![Err(http(504, "GatewayTimeout")), Err(no_such_upload())],
            vec![Err(network()), Ok(Verdict::Ours(1))],
        );
        assert_eq!(r.ok(), Some(1));
    }

    #[test]
    fn a_conflict_found_by_looking_is_a_412() {
        let (r, sent, looked) = script(vec![Err(network())], vec![Ok(Verdict::Conflict)]);
        assert!(matches!(r, Err(StorageError::PreconditionFailed { .. })));
        assert_eq!((sent, looked), (1, 1));
    }

    #[test]
    fn throttling_is_retried_without_looking() {
        let (r, sent, looked) = script(
            vec![
                Err(http(503, "SlowDown")),
                Err(http(503, "SlowDown")),
                Ok(5),
            ],
            vec![],
        );
        assert_eq!(r.ok(), Some(5));
        assert_eq!((sent, looked), (3, 0));
        // Still throttled after every attempt: the throttling error, not "unknown".
        let (r, sent, _) = script((0..4).map(|_| Err(http(503, "SlowDown"))).collect(), vec![]);
        assert!(matches!(r, Err(StorageError::Http { status: 503, .. })));
        assert_eq!(sent, 4);
    }

    #[test]
    fn an_outcome_no_look_could_settle_is_unknown_never_a_failure() {
        let (r, sent, looked) = script(
            (0..4).map(|_| Err(network())).collect(),
            (0..4).map(|_| Err(network())).collect(),
        );
        assert!(
            r.as_ref().is_err_and(StorageError::is_outcome_unknown),
            "{r:?}"
        );
        assert_eq!(r.unwrap_err().errno(), libc::EIO);
        assert_eq!((sent, looked), (4, 4));
        // A look that settled "not applied" last: the last error, a definite failure.
        let (r, _, _) = script(
            (0..4).map(|_| Err(network())).collect(),
            vec![
                Err(network()),
                Err(network()),
                Err(network()),
                Ok(Verdict::NotApplied),
            ],
        );
        assert!(matches!(r, Err(StorageError::Network { .. })), "{r:?}");
        // Throttled after an unsettled look: still unknown.
        let (r, _, _) = script(
            vec![
                Err(network()),
                Err(http(503, "SlowDown")),
                Err(http(503, "SlowDown")),
                Err(http(503, "SlowDown")),
            ],
            vec![Err(network())],
        );
        assert!(r.is_err_and(|e| e.is_outcome_unknown()));
        let (r, sent, _) = script(
            vec![Err(network())],
            vec![Ok(Verdict::Undecidable("gone".into()))],
        );
        assert!(r.is_err_and(|e| e.is_outcome_unknown()));
        assert_eq!(sent, 1);
    }

    #[test]
    fn definite_errors_end_at_once() {
        for e in [
            http(400, "InvalidPart"),
            http(400, "EntityTooSmall"),
            StorageError::AccessDenied {
                bucket: "b".into(),
                key: "k".into(),
                code: "AccessDenied".into(),
                message: String::new(),
                action: None,
                request_id: None,
            },
        ] {
            let (r, sent, looked) = script(vec![Err(e)], vec![]);
            assert!(r.is_err());
            assert_eq!((sent, looked), (1, 0));
        }
        // 500 and a 200 carrying <Error>InternalError are open; 409 ConditionalRequestConflict too.
        for e in [
            http(500, "InternalError"),
            http(200, "InternalError"),
            http(409, "ConditionalRequestConflict"),
        ] {
            let (r, sent, looked) = script(vec![Err(e), Ok(1)], vec![Ok(Verdict::NotApplied)]);
            assert_eq!(r.ok(), Some(1));
            assert_eq!((sent, looked), (2, 1));
        }
    }

    fn info(size: u64, etag: &str, meta: &[(&str, &str)]) -> ObjectInfo {
        ObjectInfo {
            size,
            etag: Some(etag.into()),
            last_modified: None,
            metadata: meta.iter().copied().collect(),
            content_headers: Vec::new(),
        }
    }

    fn opts(meta: &[(&str, &str)], if_none_match_any: bool, if_match: Option<&str>) -> PutOptions {
        PutOptions {
            metadata: meta.iter().copied().collect(),
            content_headers: Vec::new(),
            if_none_match_any,
            if_match: if_match.map(str::to_string),
        }
    }

    #[test]
    fn judging_a_put() {
        let exclusive = opts(&[("mode", "33188")], true, None);
        let ours = info(5, "5d41402abc4b2a76b9719d911017c592", &[("mode", "33188 ")]);
        let yes = |_: &ObjectInfo| Ok(true);
        let no = |_: &ObjectInfo| Ok(false);
        assert_eq!(
            judge_put(Some(&ours), 5, &exclusive, yes).unwrap(),
            Verdict::Ours(Some("5d41402abc4b2a76b9719d911017c592".into()))
        );
        assert_eq!(
            judge_put(None, 5, &exclusive, yes).unwrap(),
            Verdict::NotApplied
        );
        assert_eq!(
            judge_put(Some(&ours), 5, &exclusive, no).unwrap(),
            Verdict::Conflict
        );
        // Another size or other metadata: not ours, without even comparing the content.
        let compared = |_: &ObjectInfo| -> Result<bool> { panic!("compared the content") };
        assert_eq!(
            judge_put(Some(&ours), 6, &exclusive, compared).unwrap(),
            Verdict::Conflict
        );
        let other_meta = info(5, "x", &[("mode", "33261")]);
        assert_eq!(
            judge_put(Some(&other_meta), 5, &exclusive, compared).unwrap(),
            Verdict::Conflict
        );
        // If-Match: the old version still there → not applied; gone or another → conflict.
        let replace = opts(&[], false, Some("old"));
        let old = info(3, "old", &[]);
        assert_eq!(
            judge_put(Some(&old), 5, &replace, no).unwrap(),
            Verdict::NotApplied
        );
        assert_eq!(judge_put(None, 5, &replace, no).unwrap(), Verdict::Conflict);
        assert_eq!(
            judge_put(Some(&info(3, "new", &[])), 5, &replace, no).unwrap(),
            Verdict::Conflict
        );
        // A comparison that fails is a failed look, not a verdict.
        let broken = |_: &ObjectInfo| Err(network());
        assert!(judge_put(Some(&ours), 5, &exclusive, broken).is_err());
    }

    #[test]
    fn judging_a_completion_without_a_telling_etag() {
        let meta: Metadata = [("mtime", "1.5")].into_iter().collect();
        let none = opts(&[], false, None);
        let obj = info(20, "opaque", &[("mtime", "1.5")]);
        // Upload gone, object of the right size and metadata: completed.
        assert!(matches!(
            judge_complete(Some(&obj), false, 20, &meta, &none),
            Verdict::Ours(CopyResult { etag: Some(ref e), .. }) if e == "opaque"
        ));
        // Upload gone, object not ours or absent: cannot tell, cannot resend.
        for head in [Some(info(21, "opaque", &[("mtime", "1.5")])), None] {
            assert!(matches!(
                judge_complete(head.as_ref(), false, 20, &meta, &none),
                Verdict::Undecidable(_)
            ));
        }
        let other_meta = info(20, "opaque", &[("mtime", "2")]);
        assert!(matches!(
            judge_complete(Some(&other_meta), false, 20, &meta, &none),
            Verdict::Undecidable(_)
        ));
        // Upload open: not applied, unless the condition cannot hold any more.
        assert_eq!(
            judge_complete(Some(&obj), true, 20, &meta, &none),
            Verdict::NotApplied
        );
        let exclusive = opts(&[], true, None);
        assert_eq!(
            judge_complete(None, true, 20, &meta, &exclusive),
            Verdict::NotApplied
        );
        assert_eq!(
            judge_complete(Some(&obj), true, 20, &meta, &exclusive),
            Verdict::Conflict
        );
        let replace = opts(&[], false, Some("opaque"));
        assert_eq!(
            judge_complete(Some(&obj), true, 20, &meta, &replace),
            Verdict::NotApplied
        );
        assert_eq!(
            judge_complete(None, true, 20, &meta, &replace),
            Verdict::Conflict
        );
    }

    #[test]
    fn metadata_compares_without_surrounding_spaces() {
        let a: Metadata = [("a", "1"), ("b", " x ")].into_iter().collect();
        let b: Metadata = [("A", "1"), ("b", "x")].into_iter().collect();
        assert!(same_metadata(&a, &b));
        let c: Metadata = [("a", "1")].into_iter().collect();
        assert!(!same_metadata(&a, &c));
        let d: Metadata = [("a", "1"), ("b", "y")].into_iter().collect();
        assert!(!same_metadata(&a, &d));
    }
}
