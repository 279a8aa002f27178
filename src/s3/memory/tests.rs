//! The in-memory store's S3 semantics: it is the ground truth of the tests above the seam, so
//! every rule it claims is checked here.

use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::s3::body::RequestBody;
use crate::s3::etag::{md5_etag, multipart_etag};
use crate::s3::name::ObjectRef;
use crate::s3::store::{ObjectStore, MIN_PART_SIZE};
use crate::s3::types::{
    CopyRequest, CopyResult, DeleteResult, ListPage, ListRequest, PutOptions, ReplaceMetadata,
    UploadsRequest,
};

const B: &str = "bucket";

fn obj(key: &str) -> ObjectRef {
    ObjectRef {
        bucket: B.into(),
        key: key.into(),
    }
}

fn store() -> MemoryStore {
    MemoryStore::with_bucket(B)
}

fn put(s: &MemoryStore, key: &str, data: &[u8]) -> String {
    s.put_object(&obj(key), RequestBody::Bytes(data), &PutOptions::default())
        .unwrap()
        .unwrap()
}

fn get(s: &MemoryStore, key: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
    let mut g = s.get_object(&obj(key), range, None)?;
    let mut out = Vec::new();
    g.body.read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, g.content_length);
    Ok(out)
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().copied().collect()
}

fn opts(if_none_match_any: bool, if_match: Option<&str>) -> PutOptions {
    PutOptions {
        if_none_match_any,
        if_match: if_match.map(str::to_string),
        ..PutOptions::default()
    }
}

fn status_of(e: &StorageError) -> Option<(u16, Option<&str>)> {
    match e {
        StorageError::Http { status, code, .. } => Some((*status, code.as_deref())),
        _ => None,
    }
}

#[test]
fn objects_keep_bytes_metadata_and_content_headers_as_a_head_returns_them() {
    let s = store();
    let written = PutOptions {
        metadata: meta(&[("Color", " blue "), ("mode", "33188")]),
        content_headers: vec![
            ("Content-Type".into(), "text/plain".into()),
            ("cache-control".into(), "no-cache".into()),
            ("x-amz-storage-class".into(), "STANDARD".into()),
        ],
        ..PutOptions::default()
    };
    let etag = s
        .put_object(&obj("a.txt"), RequestBody::Bytes(b"hello"), &written)
        .unwrap();
    assert_eq!(etag.as_deref(), Some("5d41402abc4b2a76b9719d911017c592"));
    let info = s.head_object(&obj("a.txt")).unwrap();
    assert_eq!(info.size, 5);
    assert_eq!(info.etag, etag);
    // Names lower-cased; surrounding spaces survive (the client encodes such values).
    assert_eq!(
        info.metadata,
        meta(&[("color", " blue "), ("mode", "33188")])
    );
    assert_eq!(info.content_type(), Some("text/plain"));
    assert_eq!(
        info.content_headers,
        vec![
            ("content-type".to_string(), "text/plain".to_string()),
            ("cache-control".to_string(), "no-cache".to_string())
        ]
    );
    let modified = info.last_modified.unwrap();
    assert_eq!(
        modified.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(),
        0,
        "whole seconds, as HTTP dates"
    );
    assert_eq!(get(&s, "a.txt", None).unwrap(), b"hello");
    // No Content-Type given: S3's default. Non-ASCII metadata round-trips.
    let plain = PutOptions {
        metadata: meta(&[("title", "ünïcødé ✓")]),
        ..PutOptions::default()
    };
    s.put_object(&obj("b"), RequestBody::Empty, &plain).unwrap();
    let info = s.head_object(&obj("b")).unwrap();
    assert_eq!(info.content_type(), Some("binary/octet-stream"));
    assert_eq!(info.metadata.get("title"), Some("ünïcødé ✓"));
    assert_eq!(info.size, 0);
    assert_eq!(
        info.etag.as_deref(),
        Some("d41d8cd98f00b204e9800998ecf8427e")
    );
    let f = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut &f, b"xxfileyy").unwrap();
    let body = RequestBody::File {
        file: &f,
        offset: 2,
        len: 4,
    };
    s.put_object(&obj("f"), body, &PutOptions::default())
        .unwrap();
    assert_eq!(get(&s, "f", None).unwrap(), b"file");
}

#[test]
fn ranged_gets_clip_at_the_end_and_refuse_past_it() {
    let s = store();
    let etag = put(&s, "k", b"0123456789");
    assert_eq!(get(&s, "k", Some((2, 5))).unwrap(), b"234");
    assert_eq!(get(&s, "k", Some((8, 100))).unwrap(), b"89");
    let g = s.get_object(&obj("k"), Some((8, 100)), None).unwrap();
    assert_eq!((g.content_length, g.total_size), (2, 10));
    assert_eq!(g.info.size, 10);
    let past = get(&s, "k", Some((10, 11))).unwrap_err();
    assert_eq!(status_of(&past), Some((416, Some("InvalidRange"))));
    assert_eq!(past.errno(), libc::EINVAL);
    assert!(matches!(
        get(&s, "k", Some((5, 5))),
        Err(StorageError::InvalidInput { .. })
    ));
    put(&s, "empty", b"");
    assert_eq!(get(&s, "empty", None).unwrap(), b"");
    assert!(get(&s, "empty", Some((0, 1))).is_err(), "no byte to serve");
    // If-Match: the bare or the quoted ETag; another is 412.
    for want in [etag.clone(), format!("\"{etag}\"")] {
        assert!(s.get_object(&obj("k"), None, Some(&want)).is_ok());
    }
    let e = s.get_object(&obj("k"), None, Some("other")).unwrap_err();
    assert!(e.is_precondition_failed());
}

#[test]
fn missing_keys_and_buckets_fail_as_the_client_reports_them() {
    let s = store();
    match s.head_object(&obj("nope")).unwrap_err() {
        StorageError::NotFound { code, key, .. } => {
            assert_eq!(code, None, "a HEAD has no body");
            assert_eq!(key, "nope");
        }
        e => panic!("{e:?}"),
    }
    match get(&s, "nope", None).unwrap_err() {
        StorageError::NotFound { code, .. } => assert_eq!(code.as_deref(), Some("NoSuchKey")),
        e => panic!("{e:?}"),
    }
    let elsewhere = ObjectRef {
        bucket: "other".into(),
        key: "k".into(),
    };
    assert!(matches!(
        s.get_object(&elsewhere, None, None),
        Err(StorageError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        s.put_object(&elsewhere, RequestBody::Empty, &PutOptions::default()),
        Err(StorageError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        s.head_bucket("other"),
        Err(StorageError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        s.list_objects_v2("other", &ListRequest::default()),
        Err(StorageError::NoSuchBucket { .. })
    ));
    // HEAD of a key in a missing bucket: 404 without a body says no more than "not found".
    assert!(matches!(
        s.head_object(&elsewhere),
        Err(StorageError::NotFound { code: None, .. })
    ));
    s.delete_object(&obj("nope")).unwrap();
}

#[test]
fn conditional_puts() {
    let s = store();
    let first = s
        .put_object(&obj("k"), RequestBody::Bytes(b"1"), &opts(true, None))
        .unwrap()
        .unwrap();
    let again = s.put_object(&obj("k"), RequestBody::Bytes(b"2"), &opts(true, None));
    assert!(again.unwrap_err().is_precondition_failed());
    let wrong = s.put_object(&obj("k"), RequestBody::Bytes(b"2"), &opts(false, Some("x")));
    assert!(wrong.unwrap_err().is_precondition_failed());
    assert_eq!(
        get(&s, "k", None).unwrap(),
        b"1",
        "refused writes change nothing"
    );
    let replaced = s
        .put_object(
            &obj("k"),
            RequestBody::Bytes(b"2"),
            &opts(false, Some(&first)),
        )
        .unwrap();
    assert_ne!(replaced.as_deref(), Some(first.as_str()));
    // If-Match on a key that does not exist: 404 NoSuchKey (AWS), not 412.
    let missing = s.put_object(&obj("m"), RequestBody::Empty, &opts(false, Some(&first)));
    assert!(matches!(
        missing,
        Err(StorageError::NotFound { code: Some(ref c), .. }) if c == "NoSuchKey"
    ));
}

#[test]
fn metadata_and_keys_are_checked_as_s3_and_the_client_check_them() {
    let s = store();
    let big = PutOptions {
        metadata: meta(&[("big", &"x".repeat(2100))]),
        ..PutOptions::default()
    };
    // Too much metadata, or a name HTTP cannot carry: the client refuses before sending.
    let bad = PutOptions {
        metadata: meta(&[("bad name", "v")]),
        ..PutOptions::default()
    };
    for opts in [big, bad] {
        let e = s
            .put_object(&obj("k"), RequestBody::Empty, &opts)
            .unwrap_err();
        assert!(matches!(e, StorageError::InvalidInput { .. }), "{e:?}");
        let e = s.create_multipart_upload(&obj("k"), &opts).unwrap_err();
        assert!(matches!(e, StorageError::InvalidInput { .. }), "{e:?}");
    }
    assert_eq!(s.total_requests(), 0, "nothing was sent");
    let long = "k".repeat(1025);
    let e = s
        .put_object(&obj(&long), RequestBody::Empty, &PutOptions::default())
        .unwrap_err();
    assert_eq!(status_of(&e), Some((400, Some("KeyTooLongError"))));
    assert_eq!(e.errno(), libc::ENAMETOOLONG);
    assert!(s.keys(B).is_empty());
}

#[test]
fn copies_keep_or_replace_metadata_and_honour_the_source_condition() {
    let s = store();
    let src = PutOptions {
        metadata: meta(&[("a", "1")]),
        content_headers: vec![("content-type".into(), "text/x".into())],
        ..PutOptions::default()
    };
    let etag = s
        .put_object(&obj("src"), RequestBody::Bytes(b"data"), &src)
        .unwrap();
    let copy = |dst: &str, replace: Option<ReplaceMetadata>, if_match: Option<&str>| {
        s.copy_object(&CopyRequest {
            src: obj("src"),
            dst: obj(dst),
            replace,
            if_match: if_match.map(str::to_string),
            size: None,
        })
    };
    let r = copy("kept", None, etag.as_deref()).unwrap();
    assert_eq!(r.etag, etag, "the MD5 of the same bytes");
    let info = s.head_object(&obj("kept")).unwrap();
    assert_eq!(info.metadata, meta(&[("a", "1")]));
    assert_eq!(info.content_type(), Some("text/x"));
    let replaced = ReplaceMetadata {
        metadata: meta(&[("b", "2")]),
        content_headers: Vec::new(),
    };
    copy("src", Some(replaced), etag.as_deref()).unwrap();
    let info = s.head_object(&obj("src")).unwrap();
    assert_eq!(info.metadata, meta(&[("b", "2")]));
    assert_eq!(
        info.content_type(),
        Some("binary/octet-stream"),
        "REPLACE drops the content headers not sent again"
    );
    assert_eq!(get(&s, "src", None).unwrap(), b"data");
    let e = copy("x", None, Some("stale")).unwrap_err();
    assert!(e.is_precondition_failed());
    let e = copy("src", None, None).unwrap_err();
    assert_eq!(status_of(&e), Some((400, Some("InvalidRequest"))), "{e}");
    s.delete_behind(B, "src");
    match copy("x", None, None).unwrap_err() {
        StorageError::NotFound { code, .. } => assert_eq!(code.as_deref(), Some("NoSuchKey")),
        e => panic!("{e:?}"),
    }
}

#[test]
fn delete_objects_is_quiet_and_checked_like_the_client() {
    let s = store();
    for k in ["a", "b", "c"] {
        put(&s, k, b"x");
    }
    let keys = vec!["a".to_string(), "b".to_string(), "missing".to_string()];
    let r = s.delete_objects(B, &keys).unwrap();
    assert_eq!(r, DeleteResult::default(), "quiet: no list of deleted keys");
    assert_eq!(s.keys(B), vec!["c".to_string()]);
    let many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    assert!(matches!(
        s.delete_objects(B, &many),
        Err(StorageError::InvalidInput { .. })
    ));
    assert!(matches!(
        s.delete_objects("other", &keys),
        Err(StorageError::NoSuchBucket { .. })
    ));
}

fn list(s: &MemoryStore, req: &ListRequest) -> ListPage {
    s.list_objects_v2(B, req).unwrap()
}

/// Every page of a listing, concatenated, with the number of pages.
fn list_all(s: &MemoryStore, mut req: ListRequest) -> (Vec<String>, Vec<String>, usize) {
    let (mut keys, mut prefixes, mut pages) = (Vec::new(), Vec::new(), 0);
    loop {
        let page = list(s, &req);
        pages += 1;
        keys.extend(page.objects.into_iter().map(|o| o.key));
        prefixes.extend(page.common_prefixes);
        match page.next_continuation_token {
            Some(t) if page.is_truncated => req.continuation_token = Some(t),
            _ => return (keys, prefixes, pages),
        }
    }
}

#[test]
fn listing_with_prefix_delimiter_pages_and_start_after() {
    let s = store();
    for k in ["a", "d/1", "d/2", "d/sub/3", "e/1", "f", "é"] {
        put(&s, k, b"x");
    }
    let page = list(
        &s,
        &ListRequest {
            delimiter: Some("/".into()),
            ..ListRequest::default()
        },
    );
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["a", "f", "é"]);
    assert_eq!(page.common_prefixes, ["d/", "e/"]);
    assert!(!page.is_truncated);
    assert_eq!(page.objects[0].size, 1);
    assert!(page.objects[0].etag.is_some() && page.objects[0].last_modified.is_some());
    let sub = list(
        &s,
        &ListRequest {
            prefix: "d/".into(),
            delimiter: Some("/".into()),
            ..ListRequest::default()
        },
    );
    let keys: Vec<&str> = sub.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        (keys, sub.common_prefixes),
        (vec!["d/1", "d/2"], vec!["d/sub/".to_string()])
    );
    // Pages of two: a common prefix counts as one entry and never comes twice.
    let (keys, prefixes, pages) = list_all(
        &s,
        ListRequest {
            delimiter: Some("/".into()),
            max_keys: Some(2),
            ..ListRequest::default()
        },
    );
    assert_eq!(keys, ["a", "f", "é"]);
    assert_eq!(prefixes, ["d/", "e/"]);
    assert_eq!(pages, 3);
    let after = list(
        &s,
        &ListRequest {
            start_after: Some("d/2".into()),
            ..ListRequest::default()
        },
    );
    let keys: Vec<&str> = after.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["d/sub/3", "e/1", "f", "é"]);
    let bad = s.list_objects_v2(
        B,
        &ListRequest {
            continuation_token: Some("not a token".into()),
            ..ListRequest::default()
        },
    );
    assert_eq!(
        status_of(&bad.unwrap_err()),
        Some((400, Some("InvalidArgument")))
    );
}

#[test]
fn listing_pages_add_up_to_the_whole_listing() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let keys = proptest::collection::btree_set("[ab/]{1,5}", 0..30);
    let case = (keys, "[ab/]{0,2}", proptest::option::of(Just("/")), 1u32..5);
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case, |(keys, prefix, delimiter, max)| {
            let s = store();
            for k in &keys {
                put(&s, k, b"");
            }
            let req = ListRequest {
                prefix: prefix.clone(),
                delimiter: delimiter.map(str::to_string),
                ..ListRequest::default()
            };
            // The model: every key under the prefix, rolled up at the first delimiter.
            let mut want_keys = Vec::new();
            let mut want_prefixes: Vec<String> = Vec::new();
            for k in keys.iter().filter(|k| k.starts_with(&prefix)) {
                match delimiter.and_then(|d| k[prefix.len()..].find(d)) {
                    Some(i) => {
                        let p = k[..prefix.len() + i + 1].to_string();
                        if want_prefixes.last() != Some(&p) {
                            want_prefixes.push(p);
                        }
                    }
                    None => want_keys.push(k.clone()),
                }
            }
            let (all_keys, all_prefixes, _) = list_all(&s, req.clone());
            prop_assert_eq!(&all_keys, &want_keys);
            prop_assert_eq!(&all_prefixes, &want_prefixes);
            let (paged_keys, paged_prefixes, pages) = list_all(
                &s,
                ListRequest {
                    max_keys: Some(max),
                    ..req
                },
            );
            prop_assert_eq!(paged_keys, want_keys.clone());
            prop_assert_eq!(paged_prefixes, want_prefixes.clone());
            let entries = want_keys.len() + want_prefixes.len();
            prop_assert_eq!(pages, entries.div_ceil(max as usize).max(1));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A part of S3's minimum size, filled with `fill`.
fn part(fill: u8) -> Vec<u8> {
    vec![fill; MIN_PART_SIZE as usize]
}

#[test]
fn multipart_uploads_assemble_parts_with_s3s_etag() {
    let s = store();
    let create = PutOptions {
        metadata: meta(&[("mode", "33188")]),
        content_headers: vec![("content-type".into(), "video/mp4".into())],
        ..PutOptions::default()
    };
    let id = s.create_multipart_upload(&obj("big"), &create).unwrap();
    let (one, two) = (part(1), b"tail".to_vec());
    let e2 = s
        .upload_part(&obj("big"), &id, 2, RequestBody::Bytes(&two))
        .unwrap();
    let e1 = s
        .upload_part(&obj("big"), &id, 1, RequestBody::Bytes(&one))
        .unwrap();
    assert_eq!(e1, md5_etag(&one));
    assert_eq!(s.uploads(B), vec![("big".to_string(), id.clone())]);
    assert!(
        s.head_object(&obj("big")).is_err(),
        "invisible until completed"
    );
    let parts = vec![(1, format!("\"{e1}\"")), (2, e2.clone())];
    let done = s
        .complete_multipart_upload(&obj("big"), &id, &parts, &PutOptions::default())
        .unwrap();
    let want = multipart_etag([e1.as_str(), e2.as_str()]).unwrap();
    assert_eq!(done.etag.as_deref(), Some(want.as_str()));
    assert!(want.ends_with("-2"));
    let info = s.head_object(&obj("big")).unwrap();
    assert_eq!(info.size, one.len() as u64 + 4);
    assert_eq!(info.metadata, meta(&[("mode", "33188")]));
    assert_eq!(info.content_type(), Some("video/mp4"));
    assert_eq!(
        get(&s, "big", Some((one.len() as u64 - 1, u64::MAX))).unwrap(),
        b"\x01tail"
    );
    assert!(s.uploads(B).is_empty());
    // Completed: the upload is gone.
    for e in [
        s.complete_multipart_upload(&obj("big"), &id, &parts, &PutOptions::default())
            .map(|_| ())
            .unwrap_err(),
        s.abort_multipart_upload(&obj("big"), &id).unwrap_err(),
    ] {
        assert!(
            matches!(e, StorageError::NotFound { code: Some(ref c), .. } if c == "NoSuchUpload"),
            "{e:?}"
        );
    }
}

#[test]
fn multipart_refusals_leave_the_upload_open() {
    let s = store();
    let id = s
        .create_multipart_upload(&obj("k"), &PutOptions::default())
        .unwrap();
    let small = s
        .upload_part(&obj("k"), &id, 1, RequestBody::Bytes(b"small"))
        .unwrap();
    let last = s
        .upload_part(&obj("k"), &id, 2, RequestBody::Bytes(b"last"))
        .unwrap();
    let complete = |parts: &[(u32, String)], cond: &PutOptions| {
        s.complete_multipart_upload(&obj("k"), &id, parts, cond)
    };
    let code =
        |r: Result<CopyResult>| status_of(&r.unwrap_err()).map(|(_, c)| c.map(str::to_string));
    let none = PutOptions::default();
    assert_eq!(
        code(complete(&[(1, small.clone()), (2, last.clone())], &none)),
        Some(Some("EntityTooSmall".into()))
    );
    assert_eq!(
        code(complete(&[(2, last.clone()), (1, small.clone())], &none)),
        Some(Some("InvalidPartOrder".into()))
    );
    assert_eq!(
        code(complete(&[(1, "0".repeat(32))], &none)),
        Some(Some("InvalidPart".into()))
    );
    assert_eq!(
        code(complete(&[], &none)),
        Some(Some("MalformedXML".into()))
    );
    put(&s, "k", b"already");
    let e = complete(&[(2, last.clone())], &opts(true, None)).unwrap_err();
    assert!(e.is_precondition_failed());
    assert_eq!(s.uploads(B).len(), 1, "still open after every refusal");
    // One part (the last may be small): completes, under If-Match of the current object.
    let current = s.head_object(&obj("k")).unwrap().etag;
    complete(&[(2, last)], &opts(false, current.as_deref())).unwrap();
    assert_eq!(get(&s, "k", None).unwrap(), b"last");
    for n in [0, 10_001] {
        let e = s
            .upload_part(&obj("k"), "memory-upload-1", n, RequestBody::Empty)
            .unwrap_err();
        assert_eq!(status_of(&e), Some((400, Some("InvalidArgument"))));
    }
    let other = s
        .create_multipart_upload(&obj("k2"), &PutOptions::default())
        .unwrap();
    let e = s
        .upload_part(&obj("k"), &other, 1, RequestBody::Empty)
        .unwrap_err();
    assert!(e.is_not_found(), "an upload belongs to its key");
    s.abort_multipart_upload(&obj("k2"), &other).unwrap();
    assert!(s.uploads(B).is_empty());
}

#[test]
fn upload_part_copy_takes_a_range_of_the_source() {
    let s = store();
    let etag = put(&s, "src", b"0123456789");
    let id = s
        .create_multipart_upload(&obj("dst"), &PutOptions::default())
        .unwrap();
    let copy = |range, if_match: Option<&str>| {
        s.upload_part_copy(&obj("dst"), &id, 1, &obj("src"), range, if_match)
    };
    let e = copy((2, 5), Some(&etag)).unwrap();
    assert_eq!(e, md5_etag(b"234"));
    assert!(copy((2, 5), Some("stale"))
        .unwrap_err()
        .is_precondition_failed());
    for bad in [(5, 5), (8, 11)] {
        let e = copy(bad, None).unwrap_err();
        assert_eq!(
            status_of(&e),
            Some((400, Some("InvalidArgument"))),
            "{bad:?}"
        );
    }
    s.complete_multipart_upload(&obj("dst"), &id, &[(1, e)], &PutOptions::default())
        .unwrap();
    assert_eq!(get(&s, "dst", None).unwrap(), b"234");
}

#[test]
fn parts_and_uploads_are_listed_in_pages() {
    let s = store();
    let id = s
        .create_multipart_upload(&obj("k"), &PutOptions::default())
        .unwrap();
    for n in 1..=5 {
        s.upload_part(&obj("k"), &id, n, RequestBody::Bytes(&[n as u8]))
            .unwrap();
    }
    let page = s.list_parts(&obj("k"), &id, None, Some(2)).unwrap();
    let numbers: Vec<u32> = page.parts.iter().map(|p| p.part_number).collect();
    assert_eq!(numbers, [1, 2]);
    assert!(page.is_truncated);
    assert_eq!(page.next_part_number_marker, Some(2));
    let rest = s.list_parts(&obj("k"), &id, Some(2), None).unwrap();
    let numbers: Vec<u32> = rest.parts.iter().map(|p| p.part_number).collect();
    assert_eq!(numbers, [3, 4, 5]);
    assert!(!rest.is_truncated);
    assert_eq!(rest.parts[0].size, 1);
    assert!(s
        .list_parts(&obj("k"), "nope", None, None)
        .unwrap_err()
        .is_not_found());
    let second = s
        .create_multipart_upload(&obj("k"), &PutOptions::default())
        .unwrap();
    let other = s
        .create_multipart_upload(&obj("a/x"), &PutOptions::default())
        .unwrap();
    let all = s
        .list_multipart_uploads(B, &UploadsRequest::default())
        .unwrap();
    let ids: Vec<(&str, &str)> = all
        .uploads
        .iter()
        .map(|u| (u.key.as_str(), u.upload_id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("a/x", other.as_str()),
            ("k", id.as_str()),
            ("k", second.as_str())
        ]
    );
    assert!(all.uploads.iter().all(|u| u.initiated.is_some()));
    let after = s
        .list_multipart_uploads(
            B,
            &UploadsRequest {
                key_marker: Some("k".into()),
                upload_id_marker: Some(id.clone()),
                ..UploadsRequest::default()
            },
        )
        .unwrap();
    assert_eq!(after.uploads.len(), 1);
    assert_eq!(after.uploads[0].upload_id, second);
    let under_a = s
        .list_multipart_uploads(
            B,
            &UploadsRequest {
                prefix: "a/".into(),
                ..UploadsRequest::default()
            },
        )
        .unwrap();
    assert_eq!(under_a.uploads.len(), 1);
}

#[test]
fn buckets() {
    let s = MemoryStore::new();
    assert!(matches!(
        s.head_bucket(B),
        Err(StorageError::NoSuchBucket { .. })
    ));
    s.create_bucket(B).unwrap();
    s.head_bucket(B).unwrap();
    let again = s.create_bucket(B).unwrap_err();
    assert_eq!(
        status_of(&again),
        Some((409, Some("BucketAlreadyOwnedByYou")))
    );
    put(&s, "k", b"x");
    let full = s.delete_bucket(B).unwrap_err();
    assert_eq!(status_of(&full), Some((409, Some("BucketNotEmpty"))));
    s.delete_object(&obj("k")).unwrap();
    s.delete_bucket(B).unwrap();
    assert!(s.head_bucket(B).is_err());
}

#[test]
fn injected_failures_are_not_applied_and_map_like_the_client() {
    let s = store();
    s.fail_next(Operation::PutObject, 2, Failure::Status(503, "SlowDown"));
    for _ in 0..2 {
        let e = s
            .put_object(&obj("k"), RequestBody::Bytes(b"x"), &PutOptions::default())
            .unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert_eq!(status_of(&e), Some((503, Some("SlowDown"))));
    }
    assert!(s.keys(B).is_empty(), "failed requests change nothing");
    put(&s, "k", b"x");
    assert_eq!(s.count(Operation::PutObject), 3);
    let cases = [
        (Failure::Network, "network"),
        (Failure::Timeout, "timeout"),
        (Failure::BadReply, "bad reply"),
        (Failure::Status(412, "PreconditionFailed"), "412"),
        (Failure::Status(403, "AccessDenied"), "denied"),
    ];
    for (failure, what) in cases {
        s.fail_next(Operation::GetObject, 1, failure);
        let e = get(&s, "k", None).unwrap_err();
        let ok = match what {
            "network" => matches!(e, StorageError::Network { .. }),
            "timeout" => matches!(e, StorageError::Timeout { .. }),
            "bad reply" => matches!(e, StorageError::BadReply { .. }),
            "412" => e.is_precondition_failed(),
            _ => matches!(
                e,
                StorageError::AccessDenied {
                    action: Some("s3:GetObject"),
                    ..
                }
            ),
        };
        assert!(ok, "{what}: {e:?}");
    }
    assert_eq!(
        get(&s, "k", None).unwrap(),
        b"x",
        "only the next requests fail"
    );
    let e = s.head_object(&obj("k")).map(|_| ());
    assert!(e.is_ok(), "failures are per operation");
}

#[test]
fn lost_replies_are_applied() {
    let s = store();
    s.lose_next_replies(Operation::PutObject, 1);
    let e = s
        .put_object(&obj("k"), RequestBody::Bytes(b"x"), &opts(true, None))
        .unwrap_err();
    assert!(matches!(e, StorageError::Network { .. }), "{e:?}");
    assert_eq!(get(&s, "k", None).unwrap(), b"x", "the write happened");
    // The resend meets its own object.
    let e = s
        .put_object(&obj("k"), RequestBody::Bytes(b"x"), &opts(true, None))
        .unwrap_err();
    assert!(e.is_precondition_failed());
}

#[test]
fn changes_behind_the_mount_and_before_a_request() {
    let s = store();
    let first = put(&s, "k", b"one");
    let theirs = s.put_behind(B, "k", "two");
    assert_ne!(first, theirs);
    assert_eq!(s.count(Operation::PutObject), 1, "not a request of ours");
    s.before_next(Operation::GetObject, |s| {
        s.put_behind(B, "k", "three");
    });
    let e = s
        .get_object(&obj("k"), None, Some(&theirs))
        .map(|_| ())
        .unwrap_err();
    assert!(e.is_precondition_failed(), "changed just before the GET");
    assert!(s.delete_behind(B, "k"));
    assert!(!s.delete_behind(B, "k"));
    let m = meta(&[("x", "1")]);
    s.put_behind_with(
        "new",
        "k",
        "v",
        &m,
        &[("content-type".into(), "a/b".into())],
    );
    let stored = s.object("new", "k").unwrap();
    assert_eq!((stored.data.as_slice(), &stored.metadata), (&b"v"[..], &m));
    assert_eq!(stored.info().content_type(), Some("a/b"));
    assert_eq!(s.keys("new"), vec!["k".to_string()]);
}

#[test]
fn cut_bodies_and_capabilities() {
    let s = store();
    put(&s, "k", b"0123456789");
    s.cut_next_bodies(1, 4);
    let mut g = s.get_object(&obj("k"), None, None).unwrap();
    assert_eq!(g.content_length, 10);
    let mut buf = [0u8; 10];
    let mut got = 0;
    let err = loop {
        match g.body.read(&mut buf[got..]) {
            Ok(n) => got += n,
            Err(e) => break e,
        }
    };
    assert_eq!((got, &buf[..4]), (4, &b"0123"[..]));
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(
        get(&s, "k", None).unwrap(),
        b"0123456789",
        "only the next body"
    );

    s.reject(Capability::IfNoneMatch);
    let e = s
        .put_object(&obj("n"), RequestBody::Empty, &opts(true, None))
        .unwrap_err();
    assert_eq!(status_of(&e), Some((501, Some("NotImplemented"))));
    assert!(!e.is_transient());
    put(&s, "n", b"unconditional writes still work");
    s.ignore(Capability::CopySourceIfMatch);
    s.copy_object(&CopyRequest {
        src: obj("k"),
        dst: obj("c"),
        replace: None,
        if_match: Some("stale".into()),
        size: None,
    })
    .unwrap();
    assert_eq!(
        get(&s, "c", None).unwrap(),
        b"0123456789",
        "as moto: unchecked"
    );

    s.ignore(Capability::GetIfMatch);
    let g = s.get_object(&obj("k"), None, Some("stale")).unwrap();
    assert_eq!(g.content_length, 10, "as s3s-fs: unchecked");
    s.reject(Capability::GetIfMatch);
    let e = s.get_object(&obj("k"), None, Some("stale")).unwrap_err();
    assert_eq!(status_of(&e), Some((501, Some("NotImplemented"))));
    assert_eq!(
        get(&s, "k", None).unwrap(),
        b"0123456789",
        "unconditional GETs work"
    );

    s.reject_with(Capability::MetadataReplace, 400, "InvalidArgument");
    let e = s
        .copy_object(&CopyRequest {
            src: obj("k"),
            dst: obj("k"),
            replace: Some(ReplaceMetadata::default()),
            if_match: None,
            size: None,
        })
        .unwrap_err();
    assert_eq!(status_of(&e), Some((400, Some("InvalidArgument"))));
    s.reject(Capability::DeleteObjects);
    let e = s.delete_objects(B, &["k".to_string()]).unwrap_err();
    assert_eq!(status_of(&e), Some((501, Some("NotImplemented"))));
    s.delete_object(&obj("k")).unwrap();
    assert!(s.object(B, "k").is_none(), "DeleteObject still works");
}

#[test]
fn counts_time_and_the_single_attempt_view() {
    let s = store();
    put(&s, "k", b"x");
    s.head_object(&obj("k")).unwrap();
    let once = s.single_attempt();
    once.head_object(&obj("k")).unwrap();
    assert_eq!(s.count(Operation::HeadObject), 2, "one store behind both");
    assert_eq!(s.total_requests(), 3);
    s.reset_counts();
    assert_eq!(s.total_requests(), 0);
    let then = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    s.set_time(Some(then + Duration::from_millis(700)));
    put(&s, "t", b"x");
    assert_eq!(s.head_object(&obj("t")).unwrap().last_modified, Some(then));
    s.delay(Operation::HeadObject, Duration::from_millis(1));
    s.delay(Operation::HeadObject, Duration::ZERO);
    s.head_object(&obj("t")).unwrap();
    assert!(format!("{s:?}").contains("HeadObject"));
}

#[test]
fn the_server_refuses_metadata_over_its_limit_whatever_a_client_sends() {
    let big = vec![("x-amz-meta-big".to_string(), "x".repeat(2100))];
    let r = state::Attributes::stored(&big, &[]).unwrap_err();
    let e = refused(Operation::PutObject, (B, "k"), r);
    assert_eq!(status_of(&e), Some((400, Some("MetadataTooLarge"))));
    assert_eq!(e.errno(), libc::E2BIG);
}

#[test]
fn opaque_etags_are_not_md5s_of_the_bytes_nor_of_the_parts() {
    let s = store();
    s.opaque_etags();
    let etag = put(&s, "k", b"hello");
    assert_ne!(etag, md5_etag(b"hello"));
    assert!(
        crate::s3::etag::is_md5_hex(&etag),
        "32 hex digits all the same"
    );
    let id = s
        .create_multipart_upload(&obj("m"), &PutOptions::default())
        .unwrap();
    let e1 = s
        .upload_part(&obj("m"), &id, 1, RequestBody::Bytes(b"part"))
        .unwrap();
    assert_ne!(e1, md5_etag(b"part"));
    let done = s
        .complete_multipart_upload(&obj("m"), &id, &[(1, e1.clone())], &PutOptions::default())
        .unwrap();
    let etag = done.etag.unwrap();
    assert!(etag.ends_with("-1"));
    assert_ne!(Some(etag), multipart_etag([e1.as_str()]));
}
