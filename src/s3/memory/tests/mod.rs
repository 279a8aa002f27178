//! The in-memory store's S3 semantics: it is the ground truth of the tests above the seam, so
//! every rule it claims is checked here.

use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::s3::body::RequestBody;
use crate::s3::etag::{md5_etag, multipart_etag};
use crate::s3::meta::TagSet;
use crate::s3::name::ObjectRef;
use crate::s3::store::{ObjectStore, MIN_PART_SIZE};
use crate::s3::types::{
    CopyRequest, CopyResult, DeleteResult, ListPage, ListRequest, PutOptions, ReplaceMetadata,
    UploadsRequest,
};

mod faults;
mod listing;
mod multipart;

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
            storage_class: None,
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
fn tags_as_s3_keeps_them_a_put_has_what_it_names_a_copy_its_sources() {
    let s = store();
    let tagged = PutOptions {
        content_headers: vec![("x-amz-tagging".into(), "a=1&b=two%20words".into())],
        ..PutOptions::default()
    };
    let two = TagSet(vec![
        ("a".into(), "1".into()),
        ("b".into(), "two words".into()),
    ]);
    s.put_object(&obj("t"), RequestBody::Bytes(b"x"), &tagged)
        .unwrap();
    assert_eq!(s.get_object_tagging(&obj("t")).unwrap(), two);
    let head = s.head_object(&obj("t")).unwrap();
    assert!(head
        .content_headers
        .contains(&("x-amz-tagging-count".into(), "2".into())));
    // A copy takes the source's tags, with either metadata directive, unless it names its own.
    let copy = |dst: &str, content_headers: Option<Vec<(String, String)>>| {
        s.copy_object(&CopyRequest {
            src: obj("t"),
            dst: obj(dst),
            replace: content_headers.map(|content_headers| ReplaceMetadata {
                metadata: Metadata::new(),
                content_headers,
            }),
            if_match: None,
            size: None,
            storage_class: None,
        })
        .unwrap();
        s.get_object_tagging(&obj(dst)).unwrap()
    };
    assert_eq!(copy("c1", None), two);
    assert_eq!(copy("c2", Some(vec![])), two);
    let none = vec![("x-amz-tagging".to_string(), String::new())];
    assert_eq!(copy("c3", Some(none)), TagSet::default());
    // A PUT over it, or a multipart upload, has only what it names.
    put(&s, "t", b"y");
    assert_eq!(s.get_object_tagging(&obj("t")).unwrap(), TagSet::default());
    let head = s.head_object(&obj("t")).unwrap();
    assert!(!head
        .content_headers
        .iter()
        .any(|(n, _)| n == "x-amz-tagging-count"));
    let id = s.create_multipart_upload(&obj("m"), &tagged).unwrap();
    let part = vec![7u8; 10];
    let etag = s
        .upload_part(&obj("m"), &id, 1, RequestBody::Bytes(&part))
        .unwrap();
    s.complete_multipart_upload(&obj("m"), &id, &[(1, etag)], &PutOptions::default())
        .unwrap();
    assert_eq!(s.get_object_tagging(&obj("m")).unwrap(), two);
    assert!(s
        .get_object_tagging(&obj("gone"))
        .unwrap_err()
        .is_not_found());
    // Not a query string of UTF-8: refused, as S3 does.
    let bad = PutOptions {
        content_headers: vec![("x-amz-tagging".into(), "a=%FF".into())],
        ..PutOptions::default()
    };
    let e = s
        .put_object(&obj("bad"), RequestBody::Bytes(b"x"), &bad)
        .unwrap_err();
    assert_eq!(status_of(&e), Some((400, Some("InvalidArgument"))));
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
