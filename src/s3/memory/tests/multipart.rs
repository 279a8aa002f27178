//! Multipart uploads: parts, ETags, refusals, part copies, listings of parts and uploads.

use super::*;

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
