//! Copies and deletes whose reply is lost, against `MemoryStore`: each is looked into, never
//! made twice, never blamed on "someone else", and never deletes another client's object.

use std::sync::Arc;

use super::tests::{policy, setup, two_part_upload, B};
use super::*;
use crate::s3::error::StorageError;
use crate::s3::memory::{Failure, MemoryStore};
use crate::s3::meta::Metadata;
use crate::s3::metadata::{update_metadata, CurrentMetadata, METADATA_UPDATE_ATTEMPTS};
use crate::s3::operation::Operation;
use crate::s3::types::ReplaceMetadata;

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().copied().collect()
}

fn text_plain() -> Vec<(String, String)> {
    vec![("content-type".to_string(), "text/plain".to_string())]
}

/// `update_metadata` of `key` setting `x-amz-meta-b: 2`, reading with a HEAD each attempt;
/// returns the result and the attempts that read.
fn set_b(bucket: &Bucket, key: &str) -> (Result<Option<String>>, Vec<u32>) {
    let mut reads = Vec::new();
    let r = update_metadata(
        bucket,
        key,
        |attempt| {
            reads.push(attempt);
            bucket.head(key).map(CurrentMetadata::from)
        },
        |current: &CurrentMetadata| -> Result<ReplaceMetadata> {
            let mut metadata = current.metadata.clone();
            metadata.insert("b", "2");
            Ok(ReplaceMetadata {
                metadata,
                content_headers: current.content_headers.clone(),
            })
        },
    );
    let r = r.map(|u| u.etag).map_err(|e| match e {
        crate::s3::metadata::UpdateError::Failed(e) => e,
        crate::s3::metadata::UpdateError::KeptChanging { last, .. } => last,
    });
    (r, reads)
}

// ---- the metadata self-copy -------------------------------------------------------------------

#[test]
fn a_lost_self_copy_of_a_multipart_object_is_recognised_by_its_metadata() {
    // A copy of a multipart object gets a new ETag, so a resend pinned to the old one would be
    // refused (412) and the update read again and redone as if someone else had changed it.
    let (store, bucket) = setup();
    let opts = PutOptions {
        metadata: meta(&[("a", "1")]),
        content_headers: text_plain(),
        ..PutOptions::default()
    };
    let (upload, parts, data) = two_part_upload(&bucket, "big", &opts);
    bucket
        .finish_multipart(upload, Ok(parts), data.len() as u64, &PutOptions::default())
        .unwrap();
    store.reset_counts();
    store.lose_next_replies(Operation::CopyObject, 1);
    let (etag, reads) = set_b(&bucket, "big");
    let now = store.object(B, "big").unwrap();
    assert_eq!(
        etag.unwrap().as_deref(),
        Some(now.etag.as_str()),
        "follows the new ETag"
    );
    assert!(!now.etag.contains('-'), "the copy's own ETag");
    assert_eq!(reads, [1], "never taken for another client's change");
    assert_eq!(
        store.count(Operation::CopyObject),
        1,
        "looked, not copied again"
    );
    assert_eq!(now.data, data);
    assert_eq!(now.metadata, meta(&[("a", "1"), ("b", "2")]));
    assert_eq!(now.info().content_type(), Some("text/plain"));
}

#[test]
fn a_self_copy_that_did_not_happen_is_sent_again() {
    let (store, bucket) = setup();
    store.put_behind(B, "k", "content");
    store.fail_next(Operation::CopyObject, 1, Failure::Timeout);
    let (etag, reads) = set_b(&bucket, "k");
    assert!(etag.is_ok());
    assert_eq!(reads, [1]);
    assert_eq!(store.count(Operation::CopyObject), 2);
    assert_eq!(store.object(B, "k").unwrap().metadata, meta(&[("b", "2")]));
}

#[test]
fn a_lost_self_copy_racing_another_writer_is_redone_on_their_version() {
    // The copy was not applied (connection refused), and another client replaced the object:
    // the look finds neither our metadata nor our version, a conflict, and the loop redoes the
    // change on the new content.
    let (store, bucket) = setup();
    store.put_behind(B, "k", "content");
    store.before_next(Operation::CopyObject, |s| {
        s.put_behind(B, "k", "theirs");
    });
    store.fail_next(Operation::CopyObject, 1, Failure::Network);
    let (etag, reads) = set_b(&bucket, "k");
    assert!(etag.is_ok(), "{etag:?}");
    assert_eq!(reads, [1, 2]);
    let now = store.object(B, "k").unwrap();
    assert_eq!(now.data, b"theirs");
    assert_eq!(now.metadata, meta(&[("b", "2")]));
    assert!(store.count(Operation::CopyObject) <= u64::from(METADATA_UPDATE_ATTEMPTS));
}

// ---- copies (a rename's) ----------------------------------------------------------------------

fn copy_of(src: &str, dst: &str, if_match: Option<String>) -> CopyRequest {
    CopyRequest {
        src: ObjectRef {
            bucket: B.into(),
            key: src.into(),
        },
        dst: ObjectRef {
            bucket: B.into(),
            key: dst.into(),
        },
        replace: None,
        if_match,
        size: None,
        storage_class: None,
    }
}

#[test]
fn a_lost_copy_is_found_at_its_destination_and_not_made_twice() {
    let (store, bucket) = setup();
    let etag = store.put_behind_with(B, "a", "bytes", &meta(&[("m", "1")]), &[]);
    store.lose_next_replies(Operation::CopyObject, 1);
    let done = bucket.copy(&copy_of("a", "b", Some(etag.clone()))).unwrap();
    assert_eq!(done.etag, Some(etag));
    assert_eq!(store.count(Operation::CopyObject), 1);
    assert_eq!(store.object(B, "b").unwrap().metadata, meta(&[("m", "1")]));
}

#[test]
fn a_lost_copy_of_a_multipart_object_is_recognised_by_size_and_metadata() {
    let (store, bucket) = setup();
    let opts = PutOptions {
        metadata: meta(&[("mtime", "1.5")]),
        ..PutOptions::default()
    };
    let (upload, parts, data) = two_part_upload(&bucket, "src", &opts);
    let etag = bucket
        .finish_multipart(upload, Ok(parts), data.len() as u64, &PutOptions::default())
        .unwrap();
    store.lose_next_replies(Operation::CopyObject, 1);
    let mut c = copy_of("src", "dst", etag);
    c.size = Some(data.len() as u64);
    let done = bucket.copy(&c).unwrap();
    let copied = store.object(B, "dst").unwrap();
    assert_eq!(done.etag.as_deref(), Some(copied.etag.as_str()));
    assert_eq!(copied.data, data);
    assert_eq!(store.count(Operation::CopyObject), 1);
}

#[test]
fn a_copy_not_applied_is_sent_again_unless_its_source_changed() {
    let (store, bucket) = setup();
    let etag = store.put_behind(B, "a", "one");
    store.fail_next(Operation::CopyObject, 1, Failure::Network);
    bucket.copy(&copy_of("a", "b", Some(etag.clone()))).unwrap();
    assert_eq!(store.count(Operation::CopyObject), 2);
    assert_eq!(store.object(B, "b").unwrap().data, b"one");

    // Not applied, and the source replaced meanwhile: the condition fails for real.
    store.reset_counts();
    store.before_next(Operation::CopyObject, |s| {
        s.put_behind(B, "a", "two");
    });
    store.fail_next(Operation::CopyObject, 1, Failure::Network);
    let e = bucket.copy(&copy_of("a", "c", Some(etag))).unwrap_err();
    assert!(e.is_precondition_failed(), "{e}");
    assert_eq!(
        store.count(Operation::CopyObject),
        1,
        "looked, not sent again"
    );
    assert!(store.object(B, "c").is_none());

    // Not applied, and the source deleted meanwhile: the resend's 404 is the answer.
    store.before_next(Operation::CopyObject, |s| {
        s.delete_behind(B, "a");
    });
    store.fail_next(Operation::CopyObject, 1, Failure::Network);
    let e = bucket.copy(&copy_of("a", "d", None)).unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

// ---- deletes ----------------------------------------------------------------------------------

#[test]
fn a_lost_delete_is_done_and_not_sent_again() {
    let (store, bucket) = setup();
    let etag = store.put_behind(B, "k", "x");
    store.lose_next_replies(Operation::DeleteObject, 1);
    bucket.delete("k", Some(&etag)).unwrap();
    assert!(store.object(B, "k").is_none());
    assert_eq!(store.count(Operation::DeleteObject), 1);
    // Not applied: sent again.
    store.put_behind(B, "k", "x");
    store.fail_next(Operation::DeleteObject, 1, Failure::Timeout);
    bucket.delete("k", Some(&etag)).unwrap();
    assert!(store.object(B, "k").is_none());
    assert_eq!(store.count(Operation::DeleteObject), 3);
}

#[test]
fn a_lost_delete_never_deletes_what_another_client_wrote_since() {
    let (store, bucket) = setup();
    let etag = store.put_behind(B, "k", "mine");
    store.lose_next_replies(Operation::DeleteObject, 1);
    // Between the lost reply and the look, another client writes the key.
    store.before_next(Operation::HeadObject, |s| {
        s.put_behind(B, "k", "theirs");
    });
    bucket.delete("k", Some(&etag)).unwrap();
    assert_eq!(store.object(B, "k").unwrap().data, b"theirs", "theirs kept");
    assert_eq!(store.count(Operation::DeleteObject), 1);
    // Without the version meant, the key is deleted again: nothing tells theirs from ours.
    store.lose_next_replies(Operation::DeleteObject, 1);
    store.before_next(Operation::HeadObject, |s| {
        s.put_behind(B, "k", "theirs again");
    });
    bucket.delete("k", None).unwrap();
    assert!(store.object(B, "k").is_none());
    assert_eq!(store.count(Operation::DeleteObject), 3);
}

/// `d/0` … `d/4` stored (again), each at the version stored.
fn five_keys(store: &MemoryStore) -> Vec<KeyVersion> {
    (0..5)
        .map(|i| {
            let key = format!("d/{i}");
            let etag = store.put_behind(B, &key, format!("v{i}"));
            KeyVersion::new(key, Some(etag))
        })
        .collect()
}

#[test]
fn a_lost_delete_objects_is_looked_at_with_a_listing_and_only_the_rest_is_sent_again() {
    let (store, bucket) = setup();
    let keys = five_keys(&store);
    store.put_behind(B, "d/other", "not deleted");
    store.lose_next_replies(Operation::DeleteObjects, 1);
    let r = bucket.delete_many(&keys).unwrap();
    assert!(r.errors.is_empty());
    assert_eq!(store.keys(B), ["d/other"]);
    assert_eq!(store.count(Operation::DeleteObjects), 1);
    assert_eq!(
        store.count(Operation::ListObjectsV2),
        1,
        "one listing looked"
    );
    assert_eq!(store.count(Operation::HeadObject), 0);

    // Not applied; meanwhile another client rewrote d/1 and deleted d/2: only d/0, d/3 and
    // d/4 are sent again, theirs is kept.
    let keys = five_keys(&store);
    store.reset_counts();
    store.before_next(Operation::DeleteObjects, |s| {
        s.put_behind(B, "d/1", "theirs");
        s.delete_behind(B, "d/2");
    });
    store.fail_next(Operation::DeleteObjects, 1, Failure::Network);
    let watched = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = watched.clone();
    store.before_next(Operation::DeleteObjects, move |s| {
        seen.lock().extend(s.keys(B));
    });
    bucket.delete_many(&keys).unwrap();
    assert_eq!(store.count(Operation::DeleteObjects), 2);
    assert_eq!(
        *watched.lock(),
        ["d/0", "d/1", "d/3", "d/4", "d/other"],
        "before the resend"
    );
    assert_eq!(store.keys(B), ["d/1", "d/other"]);
    assert_eq!(store.object(B, "d/1").unwrap().data, b"theirs");
}

#[test]
fn deletes_whose_outcome_stays_open_are_unknown() {
    let store = MemoryStore::with_bucket(B);
    let bucket = Bucket::new(Arc::new(store.clone()), B).with_retry(policy());
    store.put_behind(B, "k", "x");
    let attempts = policy().max_attempts;
    store.fail_next(Operation::DeleteObject, attempts, Failure::Network);
    store.fail_next(Operation::HeadObject, attempts, Failure::Network);
    let e = bucket.delete("k", None).unwrap_err();
    assert!(matches!(e, StorageError::OutcomeUnknown { .. }), "{e}");
    assert_eq!(store.count(Operation::DeleteObject), u64::from(attempts));
}
