//! The look-before-retry rules, driven by scripted sends and looks.

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
        budget: Duration::from_secs(60),
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

fn copy_request(
    src: &str,
    dst: &str,
    if_match: Option<&str>,
    replace: Option<&[(&str, &str)]>,
) -> CopyRequest {
    let at = |key: &str| ObjectRef {
        bucket: "b".into(),
        key: key.into(),
    };
    CopyRequest {
        src: at(src),
        dst: at(dst),
        replace: replace.map(|m| ReplaceMetadata {
            metadata: m.iter().copied().collect(),
            content_headers: Vec::new(),
        }),
        if_match: if_match.map(str::to_string),
        size: None,
        storage_class: None,
    }
}

const MD5_A: &str = "0cc175b9c0f1b6a831c399e269772661";
const MD5_B: &str = "92eb5ffee6ae2fec3ad71c777531578f";

#[test]
fn judging_a_copy() {
    let c = copy_request("a", "b", Some(MD5_A), None);
    let src = info(1, MD5_A, &[("m", "1")]);
    // The destination has the source's size, metadata and single-part ETag: the copy.
    let copied = info(1, MD5_A, &[("m", "1")]);
    assert!(matches!(
        judge_copy(&c, Some(&src), Some(&copied)),
        Verdict::Ours(CopyResult { etag: Some(ref e), .. }) if e == MD5_A
    ));
    // No destination, or another one: send again, unless the source moved on.
    assert_eq!(judge_copy(&c, Some(&src), None), Verdict::NotApplied);
    let older = info(1, MD5_B, &[("m", "1")]);
    assert_eq!(
        judge_copy(&c, Some(&src), Some(&older)),
        Verdict::NotApplied
    );
    let moved_on = info(1, MD5_B, &[]);
    assert_eq!(judge_copy(&c, Some(&moved_on), None), Verdict::Conflict);
    // Source gone: the resend's 404 answers; the copy is still recognised by its ETag.
    assert_eq!(judge_copy(&c, None, None), Verdict::NotApplied);
    assert!(matches!(
        judge_copy(&c, None, Some(&copied)),
        Verdict::Ours(_)
    ));
    // A multipart source: its ETag is not compared (servers differ), size and metadata are.
    let multi = copy_request("a", "b", Some("abc-2"), None);
    let src = info(9, "abc-2", &[("m", "1")]);
    for etag in ["abc-2", MD5_B] {
        let dst = info(9, etag, &[("m", "1")]);
        assert!(matches!(
            judge_copy(&multi, Some(&src), Some(&dst)),
            Verdict::Ours(_)
        ));
    }
    let other_size = info(8, "abc-2", &[("m", "1")]);
    assert_eq!(
        judge_copy(&multi, Some(&src), Some(&other_size)),
        Verdict::NotApplied
    );
    let other_meta = info(9, "abc-2", &[("m", "2")]);
    assert_eq!(
        judge_copy(&multi, Some(&src), Some(&other_meta)),
        Verdict::NotApplied
    );
    // ...and without the source's metadata, nothing tells.
    assert_eq!(judge_copy(&multi, None, Some(&src)), Verdict::NotApplied);
}

#[test]
fn judging_a_metadata_self_copy() {
    let c = copy_request("k", "k", Some("v1-2"), Some(&[("b", "2")]));
    // Our metadata on the object: the copy happened (the ETag may be new or the same).
    for etag in ["v1-2", MD5_A] {
        let now = info(5, etag, &[("b", "2")]);
        assert!(matches!(
            judge_copy(&c, Some(&now), Some(&now)),
            Verdict::Ours(CopyResult { etag: Some(ref e), .. }) if e == etag
        ));
    }
    // The old metadata on the old version: not applied.
    let before = info(5, "v1-2", &[("a", "1")]);
    assert_eq!(
        judge_copy(&c, Some(&before), Some(&before)),
        Verdict::NotApplied
    );
    // Another version without our metadata: someone else replaced it, a conflict (the
    // metadata loop then reads it again and redoes the change on it).
    let theirs = info(7, MD5_B, &[]);
    assert_eq!(
        judge_copy(&c, Some(&theirs), Some(&theirs)),
        Verdict::Conflict
    );
    // Gone: the resend's 404 answers.
    assert_eq!(judge_copy(&c, None, None), Verdict::NotApplied);
}

#[test]
fn judging_a_delete() {
    assert_eq!(judge_delete(None, Some("e1")), Verdict::Ours(()));
    assert_eq!(judge_delete(None, None), Verdict::Ours(()));
    assert_eq!(
        judge_delete(Some(Some("e1")), Some("e1")),
        Verdict::NotApplied
    );
    // Another version: written since by someone else; theirs is not deleted.
    assert_eq!(
        judge_delete(Some(Some("e2")), Some("e1")),
        Verdict::Ours(())
    );
    // Nothing to tell versions apart: delete whatever is there.
    assert_eq!(judge_delete(Some(Some("e2")), None), Verdict::NotApplied);
    assert_eq!(judge_delete(Some(None), Some("e1")), Verdict::NotApplied);
}
