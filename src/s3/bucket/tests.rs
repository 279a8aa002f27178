//! `Bucket` against `MemoryStore`: the policy above single requests, including the writes whose
//! reply is lost, which a real server cannot be made to lose on demand.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::s3::error::StorageError;
use crate::s3::journal::UploadJournal;
use crate::s3::memory::{Failure, MemoryStore};
use crate::s3::meta::Metadata;
use crate::s3::operation::Operation;
use crate::s3::store::MIN_PART_SIZE;
use crate::s3::stream::StreamingUpload;
use crate::s3::types::ReplaceMetadata;

pub(super) const B: &str = "bucket";
const MIB: u64 = 1024 * 1024;

/// Quick retries: these tests count attempts, they do not time them.
pub(super) fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        budget: Duration::from_secs(60),
    }
}

pub(super) fn setup() -> (MemoryStore, Bucket) {
    let store = MemoryStore::with_bucket(B);
    let bucket = Bucket::new(Arc::new(store.clone()), B).with_retry(policy());
    (store, bucket)
}

fn exclusive(meta: &[(&str, &str)]) -> PutOptions {
    PutOptions {
        metadata: meta.iter().copied().collect(),
        if_none_match_any: true,
        ..PutOptions::default()
    }
}

fn file_of(data: &[u8]) -> File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(data).unwrap();
    f
}

fn bytes(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn journal() -> (tempfile::TempDir, Arc<UploadJournal>) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(UploadJournal::open(dir.path().join("uploads")).unwrap());
    (dir, journal)
}

fn journal_entries(j: &UploadJournal) -> usize {
    std::fs::read_dir(j.dir()).unwrap().count()
}

// ---- a conditional PUT whose reply is lost ---------------------------------------------------

#[test]
fn a_lost_reply_of_an_applied_exclusive_put_is_a_success_without_resending() {
    let (store, bucket) = setup();
    store.lose_next_replies(Operation::PutObject, 1);
    let opts = exclusive(&[("mode", "33188")]);
    let etag = bucket
        .put("k", RequestBody::Bytes(b"hello"), &opts)
        .unwrap();
    assert_eq!(etag.as_deref(), Some("5d41402abc4b2a76b9719d911017c592"));
    assert_eq!(store.count(Operation::PutObject), 1, "not sent again");
    assert_eq!(store.count(Operation::HeadObject), 1, "looked once");
}

#[test]
fn a_put_that_did_not_land_is_sent_again_after_looking() {
    let (store, bucket) = setup();
    store.fail_next(Operation::PutObject, 1, Failure::Network);
    bucket
        .put("k", RequestBody::Bytes(b"x"), &exclusive(&[]))
        .unwrap();
    assert_eq!(store.count(Operation::PutObject), 2);
    assert_eq!(store.count(Operation::HeadObject), 1);
    assert_eq!(store.object(B, "k").unwrap().data, b"x");
}

#[test]
fn another_clients_object_found_by_looking_is_a_conflict() {
    let (store, bucket) = setup();
    store.fail_next(Operation::PutObject, 1, Failure::Timeout);
    store.before_next(Operation::HeadObject, |s| {
        s.put_behind(B, "k", "theirs");
    });
    let e = bucket
        .put("k", RequestBody::Bytes(b"ours"), &exclusive(&[]))
        .unwrap_err();
    assert!(e.is_precondition_failed(), "{e:?}");
    assert_eq!(store.object(B, "k").unwrap().data, b"theirs");
    assert_eq!(store.count(Operation::PutObject), 1);
}

#[test]
fn a_412_after_a_lost_reply_is_the_writers_own_object() {
    // The first PUT is applied and its reply lost; the look fails, so it is sent again and
    // meets its own object (412): looked into again, that is a success, not "file exists".
    let (store, bucket) = setup();
    store.lose_next_replies(Operation::PutObject, 1);
    store.fail_next(Operation::HeadObject, 1, Failure::Network);
    let etag = bucket
        .put("k", RequestBody::Bytes(b"mine"), &exclusive(&[]))
        .unwrap();
    assert_eq!(etag, store.object(B, "k").map(|o| o.etag));
    assert_eq!(store.count(Operation::PutObject), 2);
    assert_eq!(store.count(Operation::HeadObject), 2);
}

#[test]
fn a_lost_if_match_put_is_recognised_by_its_content() {
    let (store, bucket) = setup();
    let old = store.put_behind(B, "k", "old");
    store.lose_next_replies(Operation::PutObject, 1);
    let opts = PutOptions {
        if_match: Some(old),
        ..PutOptions::default()
    };
    bucket.put("k", RequestBody::Bytes(b"new"), &opts).unwrap();
    assert_eq!(store.object(B, "k").unwrap().data, b"new");
    assert_eq!(store.count(Operation::PutObject), 1);
}

#[test]
fn servers_whose_etags_are_not_md5s_are_compared_byte_for_byte() {
    let (store, bucket) = setup();
    store.opaque_etags();
    store.lose_next_replies(Operation::PutObject, 1);
    let data = bytes(3 * MIB, 7);
    let f = file_of(&data);
    let body = RequestBody::File {
        file: &f,
        offset: 0,
        len: data.len() as u64,
    };
    let etag = bucket.put("k", body, &exclusive(&[])).unwrap();
    assert_eq!(etag, store.object(B, "k").map(|o| o.etag));
    assert_eq!(store.count(Operation::PutObject), 1);
    assert!(
        store.count(Operation::GetObject) >= 1,
        "read back to compare"
    );
    // The same size and metadata but other bytes: someone else's.
    store.put_behind(B, "k2", bytes(3 * MIB, 8));
    store.fail_next(Operation::PutObject, 1, Failure::Network);
    let body = RequestBody::File {
        file: &f,
        offset: 0,
        len: data.len() as u64,
    };
    let e = bucket.put("k2", body, &exclusive(&[])).unwrap_err();
    assert!(e.is_precondition_failed(), "{e:?}");
}

#[test]
fn an_outcome_no_look_can_settle_is_unknown() {
    let (store, bucket) = setup();
    store.fail_next(Operation::PutObject, 4, Failure::Network);
    store.fail_next(Operation::HeadObject, 4, Failure::Network);
    let e = bucket
        .put("k", RequestBody::Bytes(b"x"), &exclusive(&[]))
        .unwrap_err();
    assert!(e.is_outcome_unknown(), "{e:?}");
    assert_eq!(e.errno(), libc::EIO);
    assert_eq!(
        store.count(Operation::PutObject),
        4,
        "the policy's attempts"
    );
}

#[test]
fn unconditional_puts_are_not_looked_into() {
    let (store, bucket) = setup();
    store.fail_next(Operation::PutObject, 1, Failure::Network);
    let e = bucket
        .put("k", RequestBody::Bytes(b"x"), &PutOptions::default())
        .unwrap_err();
    assert!(matches!(e, StorageError::Network { .. }));
    assert_eq!(store.count(Operation::HeadObject), 0);
}

// ---- multipart uploads and their completion --------------------------------------------------

/// A multipart upload of two parts (one of S3's minimum size, a short tail) begun on `bucket`:
/// the upload, its parts and its bytes.
pub(super) fn two_part_upload(
    bucket: &Bucket,
    key: &str,
    opts: &PutOptions,
) -> (MultipartUpload, Vec<(u32, String)>, Vec<u8>) {
    let data = bytes(MIN_PART_SIZE + 10, 3);
    let upload = bucket.begin_multipart(key, opts).unwrap();
    let mut parts = Vec::new();
    for (n, chunk) in (1..).zip(data.chunks(MIN_PART_SIZE as usize)) {
        let body = RequestBody::Bytes(chunk);
        let etag = bucket.upload_part(key, &upload.upload_id, n, body).unwrap();
        parts.push((n, etag));
    }
    (upload, parts, data)
}

#[test]
fn a_lost_completion_is_recognised_by_its_etag_and_the_journal_entry_goes() {
    let (store, bucket) = setup();
    let (_dir, j) = journal();
    let bucket = bucket.with_journal(Some(j.clone()));
    let (upload, parts, data) = two_part_upload(&bucket, "k", &PutOptions::default());
    assert_eq!(journal_entries(&j), 1, "on disk while it runs");
    store.lose_next_replies(Operation::CompleteMultipartUpload, 1);
    let etag = bucket
        .finish_multipart(upload, Ok(parts), data.len() as u64, &exclusive(&[]))
        .unwrap();
    assert_eq!(etag, store.object(B, "k").map(|o| o.etag));
    assert_eq!(store.object(B, "k").unwrap().data, data);
    assert_eq!(store.count(Operation::CompleteMultipartUpload), 1);
    assert_eq!(store.count(Operation::ListParts), 0, "the ETag settled it");
    assert_eq!(journal_entries(&j), 0);
    assert!(store.uploads(B).is_empty());
}

#[test]
fn a_lost_completion_on_a_server_whose_etags_are_not_md5s() {
    let (store, bucket) = setup();
    store.opaque_etags();
    let opts = PutOptions {
        metadata: [("mtime", "1.5")].into_iter().collect(),
        ..PutOptions::default()
    };
    let (upload, parts, data) = two_part_upload(&bucket, "k", &opts);
    store.lose_next_replies(Operation::CompleteMultipartUpload, 1);
    bucket
        .finish_multipart(upload, Ok(parts), data.len() as u64, &opts)
        .unwrap();
    assert_eq!(store.count(Operation::CompleteMultipartUpload), 1);
    assert_eq!(
        store.count(Operation::ListParts),
        1,
        "upload gone + size + metadata"
    );
}

#[test]
fn a_completion_that_did_not_happen_is_sent_again() {
    let (store, bucket) = setup();
    let (upload, parts, data) = two_part_upload(&bucket, "k", &PutOptions::default());
    store.fail_next(Operation::CompleteMultipartUpload, 1, Failure::Network);
    bucket
        .finish_multipart(upload, Ok(parts), data.len() as u64, &PutOptions::default())
        .unwrap();
    assert_eq!(store.count(Operation::CompleteMultipartUpload), 2);
    assert_eq!(store.object(B, "k").unwrap().data, data);
}

#[test]
fn a_completion_whose_upload_is_gone_and_object_replaced_is_unknown() {
    let (store, bucket) = setup();
    store.opaque_etags();
    let (_dir, j) = journal();
    let bucket = bucket.with_journal(Some(j.clone()));
    let (upload, parts, data) = two_part_upload(&bucket, "k", &PutOptions::default());
    store.lose_next_replies(Operation::CompleteMultipartUpload, 1);
    store.before_next(Operation::HeadObject, |s| {
        s.put_behind(B, "k", "replaced since");
    });
    let e = bucket
        .finish_multipart(upload, Ok(parts), data.len() as u64, &PutOptions::default())
        .unwrap_err();
    assert!(e.is_outcome_unknown(), "{e:?}");
    assert_eq!(
        journal_entries(&j),
        0,
        "the upload is gone: nothing to recover"
    );
}

#[test]
fn an_unknown_completion_whose_upload_is_still_open_is_aborted_and_known() {
    let (store, bucket) = setup();
    let (upload, parts, data) = two_part_upload(&bucket, "k", &PutOptions::default());
    store.fail_next(Operation::CompleteMultipartUpload, 4, Failure::Network);
    store.fail_next(Operation::HeadObject, 4, Failure::Network);
    let e = bucket
        .finish_multipart(upload, Ok(parts), data.len() as u64, &PutOptions::default())
        .unwrap_err();
    assert!(matches!(e, StorageError::Network { .. }), "{e:?}");
    assert!(e.to_string().contains("not completed"), "{e}");
    assert!(store.uploads(B).is_empty(), "aborted");
    assert!(store.object(B, "k").is_none());
}

#[test]
fn failed_parts_abort_the_upload() {
    let (store, bucket) = setup();
    let (_dir, j) = journal();
    let bucket = bucket.with_journal(Some(j.clone()));
    let upload = bucket.begin_multipart("k", &PutOptions::default()).unwrap();
    let e = StorageError::invalid("part", "failed");
    let r = bucket.finish_multipart(upload, Err(e), 0, &PutOptions::default());
    assert!(matches!(r, Err(StorageError::InvalidInput { .. })));
    assert!(store.uploads(B).is_empty());
    assert_eq!(journal_entries(&j), 0);
    assert_eq!(store.count(Operation::AbortMultipartUpload), 1);
}

#[test]
fn put_file_goes_multipart_above_the_threshold_in_parallel_parts() {
    let (store, bucket) = setup();
    let (_dir, j) = journal();
    let transfer = TransferConfig {
        multipart_threshold: 6 * MIB,
        part_size: MIN_PART_SIZE,
        parallelism: 3,
        ..TransferConfig::default()
    };
    let bucket = bucket.with_transfer(transfer).with_journal(Some(j.clone()));
    let small = bytes(6 * MIB, 1);
    bucket
        .put_file(
            "small",
            &file_of(&small),
            small.len() as u64,
            &PutOptions::default(),
        )
        .unwrap();
    assert_eq!(store.count(Operation::PutObject), 1);
    let big = bytes(16 * MIB + 3, 2);
    let opts = PutOptions {
        metadata: [("mode", "33188")].into_iter().collect(),
        content_headers: vec![("content-type".into(), "text/plain".into())],
        ..PutOptions::default()
    };
    let etag = bucket
        .put_file("big", &file_of(&big), big.len() as u64, &opts)
        .unwrap();
    let stored = store.object(B, "big").unwrap();
    assert_eq!(stored.data, big);
    assert_eq!(etag.as_deref(), Some(stored.etag.as_str()));
    assert!(stored.etag.ends_with("-4"));
    assert_eq!(stored.metadata.get("mode"), Some("33188"));
    assert_eq!(stored.info().content_type(), Some("text/plain"));
    assert_eq!(store.count(Operation::UploadPart), 4);
    assert_eq!(journal_entries(&j), 0);
    // A part that fails aborts the whole upload; nothing partial is left.
    store.fail_next(
        Operation::UploadPart,
        1,
        Failure::Status(500, "InternalError"),
    );
    let e = bucket
        .put_file("big2", &file_of(&big), big.len() as u64, &opts)
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(store.uploads(B).is_empty());
    assert!(store.object(B, "big2").is_none());
    assert_eq!(journal_entries(&j), 0);
    // An exclusive multipart upload over an existing key: refused at completion.
    let e = bucket
        .put_file("big", &file_of(&big), big.len() as u64, &exclusive(&[]))
        .unwrap_err();
    assert!(e.is_precondition_failed());
    assert!(store.uploads(B).is_empty());
}

#[test]
fn copies_go_part_by_part_above_the_copy_threshold_and_keep_metadata() {
    let (store, bucket) = setup();
    let transfer = TransferConfig {
        copy_threshold: 6 * MIB,
        copy_part_size: MIN_PART_SIZE,
        ..TransferConfig::default()
    };
    let bucket = bucket.with_transfer(transfer);
    let data = bytes(11 * MIB, 5);
    let meta: Metadata = [("a", "1")].into_iter().collect();
    let etag = store.put_behind_with(B, "src", data.clone(), &meta, &[]);
    let copy = |dst: &str, replace: Option<ReplaceMetadata>, size: Option<u64>| {
        bucket.copy(&CopyRequest {
            src: bucket.obj("src"),
            dst: bucket.obj(dst),
            replace,
            if_match: Some(etag.clone()),
            size,
            storage_class: None,
        })
    };
    copy("dst", None, None).unwrap();
    assert_eq!(store.count(Operation::UploadPartCopy), 3);
    assert_eq!(store.count(Operation::CopyObject), 0);
    let copied = store.object(B, "dst").unwrap();
    assert_eq!(copied.data, data);
    assert_eq!(copied.metadata, meta, "carried over explicitly");
    let replaced = ReplaceMetadata {
        metadata: [("b", "2")].into_iter().collect(),
        content_headers: Vec::new(),
    };
    copy("src", Some(replaced), Some(data.len() as u64)).unwrap();
    assert_eq!(store.object(B, "src").unwrap().metadata.get("b"), Some("2"));
    // Below the threshold: one CopyObject.
    store.put_behind(B, "small", "x");
    bucket
        .copy(&CopyRequest {
            src: bucket.obj("small"),
            dst: bucket.obj("small2"),
            replace: None,
            if_match: None,
            size: None,
            storage_class: None,
        })
        .unwrap();
    assert_eq!(store.count(Operation::CopyObject), 1);
}

// ---- deletes, listings, reads ----------------------------------------------------------------

#[test]
fn many_keys_are_deleted_and_listed_in_pages() {
    let (store, bucket) = setup();
    let keys: Vec<KeyVersion> = (0..2500)
        .map(|i| KeyVersion::from(format!("d/{i:05}")))
        .collect();
    for k in &keys {
        store.put_behind(B, &k.key, "");
    }
    store.put_behind(B, "d/sub/x", "");
    let (objects, prefixes) = bucket.list_all("d/", Some("/")).unwrap();
    assert_eq!(objects.len(), 2500);
    assert_eq!(prefixes, ["d/sub/"]);
    assert_eq!(store.count(Operation::ListObjectsV2), 3);
    let r = bucket.delete_many(&keys).unwrap();
    assert!(r.errors.is_empty());
    assert_eq!(store.count(Operation::DeleteObjects), 3);
    assert_eq!(store.keys(B), ["d/sub/x"]);
    bucket.delete("d/sub/x", None).unwrap();
    bucket.delete("d/sub/x", None).unwrap();
    assert!(bucket.head_if_any("d/sub/x").unwrap().is_none());
    let page = bucket.list_page(&ListRequest::default()).unwrap();
    assert!(page.objects.is_empty());
}

#[test]
fn uploads_and_parts_are_listed_across_pages() {
    let (store, bucket) = setup();
    let upload = bucket.begin_multipart("k", &PutOptions::default()).unwrap();
    for n in 1..=1001 {
        bucket
            .upload_part("k", &upload.upload_id, n, RequestBody::Bytes(b"p"))
            .unwrap();
    }
    let parts = bucket.list_parts("k", &upload.upload_id).unwrap();
    assert_eq!(parts.len(), 1001);
    assert_eq!(store.count(Operation::ListParts), 2);
    for i in 0..1000 {
        bucket
            .begin_multipart(&format!("u/{i}"), &PutOptions::default())
            .unwrap();
    }
    assert_eq!(bucket.list_uploads("").unwrap().len(), 1001);
    assert_eq!(bucket.list_uploads("u/").unwrap().len(), 1000);
    bucket.abort_upload(upload).unwrap();
    assert_eq!(bucket.list_uploads("k").unwrap().len(), 0);
}

#[test]
fn reads_and_downloads_through_the_bucket() {
    let (store, bucket) = setup();
    let data = bytes(MIB, 9);
    store.put_behind(B, "k", data.clone());
    store.cut_next_bodies(1, 1000);
    let mut buf = vec![0u8; 5000];
    let (n, etag) = bucket.read_range("k", 100, &mut buf, None).unwrap();
    assert_eq!((n, &buf[..]), (5000, &data[100..5100]));
    assert_eq!(etag, bucket.head("k").unwrap().etag);
    let mut out = tempfile::tempfile().unwrap();
    bucket.download("k", &mut out).unwrap();
    out.seek(SeekFrom::Start(0)).unwrap();
    let mut back = Vec::new();
    out.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    let g = bucket.get("k", Some((0, 10)), etag.as_deref()).unwrap();
    assert_eq!(g.content_length, 10);
    assert!(bucket.head("nope").unwrap_err().is_not_found());
}

#[test]
fn a_streamed_upload_over_a_bucket() {
    let (store, bucket) = setup();
    let (_dir, j) = journal();
    let transfer = TransferConfig {
        part_size: MIN_PART_SIZE,
        parallelism: 2,
        ..TransferConfig::default()
    };
    let bucket = bucket.with_transfer(transfer).with_journal(Some(j.clone()));
    let data = bytes(12 * MIB, 4);
    let file = file_of(&data);
    let opts = PutOptions::default();
    let mut up = StreamingUpload::start_in(&bucket, "s", &opts, file.try_clone().unwrap()).unwrap();
    up.ship_up_to(11 * MIB).unwrap();
    assert_eq!(up.shipped_end(), 2 * MIN_PART_SIZE);
    up.finish(data.len() as u64, &exclusive(&[])).unwrap();
    assert_eq!(store.object(B, "s").unwrap().data, data);
    assert_eq!(store.count(Operation::UploadPart), 3);
    assert_eq!(journal_entries(&j), 0);
    // Aborted: nothing left, on the server or in the journal.
    let up = StreamingUpload::start_in(&bucket, "t", &opts, file).unwrap();
    up.abort().unwrap();
    assert!(store.uploads(B).is_empty());
    assert!(store.object(B, "t").is_none());
    assert_eq!(journal_entries(&j), 0);
}

#[test]
fn the_journal_recovers_uploads_left_by_a_stopped_process() {
    let (store, bucket) = setup();
    let (_dir, j) = journal();
    let bucket = bucket.with_journal(Some(j.clone()));
    let live = bucket
        .begin_multipart("live", &PutOptions::default())
        .unwrap();
    // Neither completed nor aborted, as after a crash: the entry stays, unlocked.
    drop(
        bucket
            .begin_multipart("dead", &PutOptions::default())
            .unwrap(),
    );
    let r = UploadJournal::open(j.dir()).unwrap().recover(&store);
    assert_eq!(r.live, 1, "the running upload's entry is locked");
    assert_eq!(r.aborted.len(), 1);
    assert_eq!(r.aborted[0].0.key, "dead");
    assert_eq!(
        store.uploads(B),
        [("live".to_string(), live.upload_id.clone())]
    );
    bucket.abort_upload(live).unwrap();
    assert_eq!(journal_entries(&j), 0);
}

/// A delete is a write of its key for the spacing of copies ([`crate::s3::spacing`]): on
/// Garage a copy onto a key in the millisecond of its delete lost to the delete (xfstests
/// generic/736: a file lost by `mv a T; mv T a; mv b T; mv T b`).
#[test]
fn a_copy_onto_a_key_just_deleted_is_spaced_from_the_delete() {
    let (store, bucket) = setup();
    for k in ["one", "many"] {
        store.put_behind(B, k, "x");
    }
    bucket.delete("one", None).unwrap();
    bucket
        .delete_many(&[KeyVersion {
            key: "many".into(),
            etag: None,
        }])
        .unwrap();
    assert!(store.keys(B).is_empty());
    assert!(bucket.recent.remembers("one"), "DeleteObject");
    assert!(bucket.recent.remembers("many"), "DeleteObjects");
}
