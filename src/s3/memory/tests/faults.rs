//! Buckets, and the switches tests use: injected failures, lost replies, changes behind the
//! mount, cut bodies, refused capabilities, counts.

use super::*;

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
        storage_class: None,
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
            storage_class: None,
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
