//! Each weaker behaviour against a `MemoryStore` that rejects its capability: the operation
//! succeeds (or fails for the reason S3 would have given), the capability is learnt once, and
//! from then on the rejected request is not sent.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::s3::bucket::Bucket;
use crate::s3::memory::MemoryStore;
use crate::s3::meta::Metadata;
use crate::s3::metadata::{update_metadata, CurrentMetadata, UpdateError};
use crate::s3::operation::Operation;
use crate::s3::store::MIN_PART_SIZE;
use crate::s3::transfer::TransferConfig;
use crate::s3::types::ReplaceMetadata;

const B: &str = "bucket";

fn setup() -> (MemoryStore, Bucket) {
    let store = MemoryStore::with_bucket(B);
    let retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        budget: Duration::from_secs(60),
    };
    let bucket = Bucket::new(Arc::new(store.clone()), B).with_retry(retry);
    (store, bucket)
}

fn exclusive() -> PutOptions {
    PutOptions {
        if_none_match_any: true,
        ..PutOptions::default()
    }
}

fn data(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_server_that_honours_everything_gets_the_same_requests() {
    let (store, bucket) = setup();
    bucket
        .put("k", RequestBody::Bytes(b"x"), &exclusive())
        .unwrap();
    let etag = store.object(B, "k").unwrap().etag;
    let mut buf = [0u8; 1];
    bucket.read_range("k", 0, &mut buf, Some(&etag)).unwrap();
    assert_eq!(store.count(Operation::PutObject), 1);
    assert_eq!(store.count(Operation::GetObject), 1);
    assert_eq!(store.count(Operation::HeadObject), 0);
    assert!(bucket.capabilities().rejected().is_empty());
}

#[test]
fn if_none_match_rejected_becomes_head_then_put() {
    for (status, code) in [(501, "NotImplemented"), (400, "InvalidArgument")] {
        let (store, bucket) = setup();
        store.reject_with(Capability::IfNoneMatch, status, code);
        bucket
            .put("a", RequestBody::Bytes(b"1"), &exclusive())
            .unwrap();
        assert_eq!(store.object(B, "a").unwrap().data, b"1");
        assert_eq!(store.count(Operation::PutObject), 2, "rejected, then plain");
        assert_eq!(bucket.capabilities().rejected(), [Capability::IfNoneMatch]);
        // Learnt: a HEAD, then one plain PUT; a clone knows it too.
        let clone = bucket.clone();
        store.reset_counts();
        clone
            .put("b", RequestBody::Bytes(b"2"), &exclusive())
            .unwrap();
        assert_eq!(store.count(Operation::PutObject), 1);
        assert_eq!(store.count(Operation::HeadObject), 1);
        // An object there: 412 (EEXIST for O_EXCL), nothing written.
        let e = clone
            .put("a", RequestBody::Bytes(b"other"), &exclusive())
            .unwrap_err();
        assert!(e.is_precondition_failed(), "{e}");
        assert_eq!(store.object(B, "a").unwrap().data, b"1");
        assert_eq!(store.count(Operation::PutObject), 1);
    }
}

#[test]
fn if_match_rejected_on_put_is_checked_with_a_head() {
    let (store, bucket) = setup();
    store.reject(Capability::IfMatch);
    let old = store.put_behind(B, "k", "old");
    let replace = |etag: &str| PutOptions {
        if_match: Some(etag.to_string()),
        ..PutOptions::default()
    };
    bucket
        .put("k", RequestBody::Bytes(b"new"), &replace(&old))
        .unwrap();
    assert_eq!(store.object(B, "k").unwrap().data, b"new");
    let e = bucket
        .put("k", RequestBody::Bytes(b"newer"), &replace(&old))
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    let e = bucket
        .put("gone", RequestBody::Bytes(b"x"), &replace(&old))
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(bucket.capabilities().rejected(), [Capability::IfMatch]);
}

#[test]
fn an_exclusive_completion_on_a_server_rejecting_if_none_match() {
    let (store, bucket) = setup();
    let bucket = bucket.with_transfer(TransferConfig {
        multipart_threshold: MIN_PART_SIZE,
        part_size: MIN_PART_SIZE,
        ..TransferConfig::default()
    });
    store.reject(Capability::IfNoneMatch);
    let bytes = data(MIN_PART_SIZE + 10);
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &bytes).unwrap();
    let len = bytes.len() as u64;
    bucket.put_file("big", &file, len, &exclusive()).unwrap();
    assert_eq!(store.object(B, "big").unwrap().data, bytes);
    assert_eq!(store.count(Operation::CompleteMultipartUpload), 2);
    // The key exists now: refused after the HEAD, the upload aborted, nothing replaced.
    let e = bucket
        .put_file("big", &file, len, &exclusive())
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    assert_eq!(store.count(Operation::CompleteMultipartUpload), 2);
    assert!(store.uploads(B).is_empty(), "aborted");
}

#[test]
fn if_match_rejected_on_get_compares_the_replys_etag() {
    let (store, bucket) = setup();
    store.reject(Capability::GetIfMatch);
    let etag = store.put_behind(B, "k", "0123456789");
    let mut buf = [0u8; 4];
    let (n, got) = bucket.read_range("k", 3, &mut buf, Some(&etag)).unwrap();
    assert_eq!((n, &buf), (4, b"3456"));
    assert_eq!(got.as_deref(), Some(etag.as_str()));
    assert_eq!(
        store.count(Operation::GetObject),
        2,
        "rejected, then without"
    );
    assert_eq!(bucket.capabilities().rejected(), [Capability::GetIfMatch]);
    // Another version: a 412 (EIO), never its bytes.
    store.put_behind(B, "k", "abcdefghij");
    let e = bucket
        .read_range("k", 3, &mut buf, Some(&etag))
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    assert_eq!(store.count(Operation::GetObject), 3);
    // The same through `get`.
    assert!(bucket
        .get("k", None, Some(&etag))
        .is_err_and(|e| e.is_precondition_failed()));
}

fn copy(src: &str, dst: &str, if_match: Option<String>) -> CopyRequest {
    let at = |key: &str| ObjectRef {
        bucket: B.into(),
        key: key.into(),
    };
    CopyRequest {
        src: at(src),
        dst: at(dst),
        replace: None,
        if_match,
        size: None,
        storage_class: None,
    }
}

#[test]
fn copy_source_if_match_rejected_becomes_head_then_copy() {
    let (store, bucket) = setup();
    store.reject(Capability::CopySourceIfMatch);
    let etag = store.put_behind(B, "a", "bytes");
    bucket.copy(&copy("a", "b", Some(etag.clone()))).unwrap();
    assert_eq!(store.object(B, "b").unwrap().data, b"bytes");
    assert_eq!(
        bucket.capabilities().rejected(),
        [Capability::CopySourceIfMatch]
    );
    store.reset_counts();
    // Changed since: a 412 from the HEAD, no copy sent.
    store.put_behind(B, "a", "changed");
    let e = bucket.copy(&copy("a", "c", Some(etag))).unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    assert_eq!(store.count(Operation::CopyObject), 0);
    assert!(store.object(B, "c").is_none());
}

/// Set `x-amz-meta-b: 2` on `key` with the metadata loop (as setfattr does).
fn set_b(bucket: &Bucket, key: &str) -> Result<Option<String>> {
    let read = |_| bucket.head(key).map(CurrentMetadata::from);
    let edit = |current: &CurrentMetadata| -> Result<ReplaceMetadata> {
        let mut metadata = current.metadata.clone();
        metadata.insert("b", "2");
        Ok(ReplaceMetadata {
            metadata,
            content_headers: current.content_headers.clone(),
        })
    };
    match update_metadata(bucket, key, read, edit) {
        Ok(u) => Ok(u.etag),
        Err(UpdateError::Failed(e)) => Err(e),
        Err(UpdateError::KeptChanging { last, .. }) => Err(last),
    }
}

#[test]
fn metadata_replace_rejected_becomes_a_reupload() {
    let (store, bucket) = setup();
    store.reject(Capability::MetadataReplace);
    let meta: Metadata = [("a", "1")].into_iter().collect();
    let text = [("content-type".to_string(), "text/plain".to_string())];
    store.put_behind_with(B, "k", "content", &meta, &text);
    let etag = set_b(&bucket, "k").unwrap();
    let now = store.object(B, "k").unwrap();
    assert_eq!(now.data, b"content");
    assert_eq!(now.metadata, [("a", "1"), ("b", "2")].into_iter().collect());
    assert_eq!(now.info().content_type(), Some("text/plain"));
    assert_eq!(etag.as_deref(), Some(now.etag.as_str()));
    assert_eq!(
        bucket.capabilities().rejected(),
        [Capability::MetadataReplace]
    );
    // Learnt: a HEAD, a pinned GET and a PUT under If-Match; no copy.
    store.reset_counts();
    set_b(&bucket, "k").unwrap();
    assert_eq!(store.count(Operation::CopyObject), 0);
    assert_eq!(store.count(Operation::GetObject), 1);
    assert_eq!(store.count(Operation::PutObject), 1);
}

#[test]
fn a_reupload_never_overwrites_another_clients_version() {
    let (store, bucket) = setup();
    store.reject(Capability::MetadataReplace);
    store.put_behind(B, "k", "mine");
    // Replaced between the reupload's GET and its PUT: the PUT's If-Match refuses, and the
    // loop redoes the change on their version.
    store.before_next(Operation::PutObject, |s| {
        s.put_behind(B, "k", "theirs");
    });
    set_b(&bucket, "k").unwrap();
    let now = store.object(B, "k").unwrap();
    assert_eq!(now.data, b"theirs");
    assert_eq!(now.metadata.get("b"), Some("2"));
}

#[test]
fn with_both_copy_capabilities_rejected_each_is_learnt_where_it_is_needed() {
    let (store, bucket) = setup();
    store.reject(Capability::MetadataReplace);
    store.reject(Capability::CopySourceIfMatch);
    store.put_behind(B, "k", "content");
    // A metadata change: the copy is refused with and without its condition; the re-upload
    // needs neither.
    set_b(&bucket, "k").unwrap();
    assert_eq!(store.object(B, "k").unwrap().metadata.get("b"), Some("2"));
    assert_eq!(
        bucket.capabilities().rejected(),
        [Capability::MetadataReplace]
    );
    assert_eq!(store.count(Operation::CopyObject), 2);
    // A rename's copy learns the other.
    let etag = store.object(B, "k").unwrap().etag;
    bucket.copy(&copy("k", "moved", Some(etag))).unwrap();
    assert_eq!(store.object(B, "moved").unwrap().data, b"content");
    assert_eq!(
        bucket.capabilities().rejected(),
        [Capability::CopySourceIfMatch, Capability::MetadataReplace]
    );
}

#[test]
fn a_reupload_is_bounded_and_beyond_it_not_supported() {
    let (store, bucket) = setup();
    store.reject(Capability::MetadataReplace);
    let big = data(MAX_REUPLOAD_BYTES + 1);
    store.put_behind(B, "big", big);
    let e = set_b(&bucket, "big").unwrap_err();
    assert!(matches!(e, StorageError::Unsupported { .. }), "{e}");
    assert_eq!(e.errno(), libc::ENOTSUP);
    assert_eq!(store.count(Operation::GetObject), 0, "nothing read");
    assert_eq!(store.count(Operation::PutObject), 0);
    assert!(store.object(B, "big").unwrap().metadata.is_empty());
}

#[test]
fn delete_objects_rejected_becomes_one_delete_per_key() {
    let (store, bucket) = setup();
    store.reject(Capability::DeleteObjects);
    let keys: Vec<KeyVersion> = (0..20)
        .map(|i| {
            let key = format!("d/{i:02}");
            let etag = store.put_behind(B, &key, "x");
            KeyVersion::new(key, Some(etag))
        })
        .collect();
    store.put_behind(B, "keep", "x");
    let r = bucket.delete_many(&keys).unwrap();
    assert!(r.errors.is_empty());
    assert_eq!(store.keys(B), ["keep"]);
    assert_eq!(store.count(Operation::DeleteObjects), 1);
    assert_eq!(store.count(Operation::DeleteObject), 20);
    assert_eq!(
        bucket.capabilities().rejected(),
        [Capability::DeleteObjects]
    );
    let keys = vec![KeyVersion::from("keep".to_string())];
    bucket.delete_many(&keys).unwrap();
    assert_eq!(store.count(Operation::DeleteObjects), 1, "not sent again");
    assert!(store.keys(B).is_empty());
}

#[test]
fn a_refusal_that_is_not_about_a_capability_is_reported_and_nothing_learnt() {
    let (store, bucket) = setup();
    store.fail_next(
        Operation::PutObject,
        2,
        crate::s3::memory::Failure::Status(400, "InvalidArgument"),
    );
    let e = bucket
        .put("k", RequestBody::Bytes(b"x"), &exclusive())
        .unwrap_err();
    assert!(matches!(e, StorageError::Http { status: 400, .. }), "{e}");
    assert!(bucket.capabilities().rejected().is_empty());
}
