//! Requests on one object: HeadObject, GetObject, PutObject, CopyObject, DeleteObject,
//! GetObjectTagging.
//!
//! A GET's reply is checked before its body is handed on: a `206` must say, in a valid
//! `Content-Range`, that it holds the bytes asked for (bytes from elsewhere would land at the
//! wrong offset); a `200` to a ranged request from a non-zero offset means the server ignored
//! the range, an error. An `If-Match` the server ignored is caught by comparing the ETag.

use super::super::body::RequestBody;
use super::super::client::{S3Client, S3Request, S3Response};
use super::super::error::{Result, StorageError};
use super::super::meta::{
    headers_kept_from_head, request_headers, Metadata, TagSet, STORAGE_CLASS_HEADER, TAGGING_HEADER,
};
use super::super::name::ObjectRef;
use super::super::operation::Operation;
use super::super::types::{CopyRequest, CopyResult, GetObject, ObjectInfo, PutOptions};
use super::super::xml::{self, error_or_tree, etag_of, parse_iso8601, select_root, ReplyError};
use super::{copy_source, quoted, read_reply};

/// HeadObject.
pub(crate) fn head_object(client: &S3Client, obj: &ObjectRef) -> Result<ObjectInfo> {
    let resp = client.execute(&S3Request::new(
        Operation::HeadObject,
        &obj.bucket,
        &obj.key,
    ))?;
    let size = resp
        .content_length()
        .ok_or_else(|| StorageError::BadReply {
            what: format!("HEAD {obj}"),
            detail: "no valid Content-Length".into(),
        })?;
    Ok(info_from_response(&resp, size))
}

/// GetObject of the whole object or of bytes `[start, end)`, optionally only if its ETag is
/// `if_match`.
pub(crate) fn get_object(
    client: &S3Client,
    obj: &ObjectRef,
    range: Option<(u64, u64)>,
    if_match: Option<&str>,
) -> Result<GetObject> {
    let what = format!("GET {obj}");
    let mut req = S3Request::new(Operation::GetObject, &obj.bucket, &obj.key)
        .header_opt("if-match", if_match.map(quoted));
    if let Some((start, end)) = range {
        if end <= start {
            return Err(StorageError::invalid("range", format!("{start}..{end}")));
        }
        req = req.header("range", format!("bytes={start}-{}", end - 1));
    }
    let resp = client.execute(&req)?;
    let content_length = resp
        .content_length()
        .ok_or_else(|| StorageError::BadReply {
            what: what.clone(),
            detail: "no valid Content-Length".into(),
        })?;
    let total_size = if resp.status == 206 {
        let (start, end, total) = resp
            .header("content-range")
            .and_then(parse_content_range)
            .ok_or_else(|| StorageError::BadReply {
                what: what.clone(),
                detail: "206 without a valid Content-Range".into(),
            })?;
        // Bytes from elsewhere than asked would land at the wrong offset.
        let asked = range.map_or(0, |(s, _)| s);
        if start != asked || (end - start).checked_add(1) != Some(content_length) {
            return Err(StorageError::BadReply {
                what,
                detail: format!(
                    "asked for bytes from {asked}, got Content-Range bytes {start}-{end} with Content-Length {content_length}"
                ),
            });
        }
        total
    } else {
        if let Some((start, _)) = range {
            if start != 0 {
                return Err(StorageError::BadReply {
                    what,
                    detail: "server ignored the Range header".into(),
                });
            }
        }
        content_length
    };
    let info = info_from_response(&resp, total_size);
    let etag = info.etag.clone();
    if let (Some(want), Some(got)) = (if_match, etag.as_deref()) {
        if want != got {
            return Err(StorageError::PreconditionFailed {
                bucket: obj.bucket.clone(),
                key: obj.key.clone(),
            });
        }
    }
    Ok(GetObject {
        etag,
        content_length,
        total_size,
        body: Box::new(resp.into_reader()),
        info,
    })
}

/// PutObject; returns the new ETag. A conditional PUT (`If-None-Match: *`, `If-Match`) is sent
/// once: a blind resend after a lost reply would meet the object the first attempt stored and
/// fail with 412 (see [`crate::s3::reconcile`], which looks before sending it again).
pub(crate) fn put_object(
    client: &S3Client,
    obj: &ObjectRef,
    body: RequestBody<'_>,
    opts: &PutOptions,
) -> Result<Option<String>> {
    let mut req = S3Request::new(Operation::PutObject, &obj.bucket, &obj.key)
        .headers(opts.headers()?)
        .header_opt("if-none-match", opts.if_none_match_any.then_some("*"))
        .header_opt("if-match", opts.if_match.as_deref().map(quoted))
        .body(body);
    if opts.if_none_match_any || opts.if_match.is_some() {
        req = req.not_idempotent();
    }
    let resp = client.execute(&req)?;
    Ok(resp.header("etag").map(xml::normalize_etag))
}

/// One CopyObject (up to S3's 5 GiB limit): metadata directive COPY, or REPLACE with the
/// metadata and content headers given; `x-amz-copy-source-if-match` when `c.if_match` is set.
/// Sent once: a blind resend after a lost reply would copy twice, or meet a self-copy's own new
/// version (412) (see [`crate::s3::reconcile`]).
pub(crate) fn copy_object(client: &S3Client, c: &CopyRequest) -> Result<CopyResult> {
    let mut req = S3Request::new(Operation::CopyObject, &c.dst.bucket, &c.dst.key)
        .not_idempotent()
        .header("x-amz-copy-source", copy_source(&c.src))
        .header_opt(
            "x-amz-copy-source-if-match",
            c.if_match.as_deref().map(quoted),
        );
    match &c.replace {
        None => {
            req = req
                .header("x-amz-metadata-directive", "COPY")
                .header_opt(STORAGE_CLASS_HEADER, c.storage_class.as_deref())
        }
        Some(r) => {
            // The source's tags go with the copy unless the headers name the copy's own.
            let own_tags = r.content_headers.iter().any(|(n, _)| n == TAGGING_HEADER);
            req = req
                .header("x-amz-metadata-directive", "REPLACE")
                .headers(r.metadata.to_headers()?)
                .headers(request_headers(&r.content_headers));
            if own_tags {
                req = req.header("x-amz-tagging-directive", "REPLACE");
            }
        }
    }
    let what = format!("CopyObject {} -> {}", c.src, c.dst);
    let resp = client.execute(&req)?;
    read_reply(resp, &what, &c.dst.bucket, &c.dst.key, parse_copy_result)
}

/// DeleteObject (S3 answers 204 whether or not the key existed). Sent once: a blind resend
/// after a lost reply could delete what another client wrote meanwhile (see
/// [`crate::s3::reconcile`]).
pub(crate) fn delete_object(client: &S3Client, obj: &ObjectRef) -> Result<()> {
    let req = S3Request::new(Operation::DeleteObject, &obj.bucket, &obj.key).not_idempotent();
    client.execute(&req).map(|_| ())
}

/// GetObjectTagging: the object's tags (a missing key is `NotFound`).
pub(crate) fn get_object_tagging(client: &S3Client, obj: &ObjectRef) -> Result<TagSet> {
    let req =
        S3Request::new(Operation::GetObjectTagging, &obj.bucket, &obj.key).query("tagging", "");
    let what = format!("GetObjectTagging {obj}");
    let resp = client.execute(&req)?;
    read_reply(resp, &what, &obj.bucket, &obj.key, parse_tagging)
}

/// `<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag>…</TagSet></Tagging>`; a tag
/// without a key is a bad reply, one without a value has the empty value.
pub(crate) fn parse_tagging(body: &[u8]) -> Result<TagSet, ReplyError> {
    let root = select_root(error_or_tree(body)?, &["Tagging"])?;
    let mut tags = Vec::new();
    for set in root.children("TagSet") {
        for tag in set.children("Tag") {
            let key = tag.required("Key")?;
            tags.push((
                key.to_string(),
                tag.text_of("Value").unwrap_or("").to_string(),
            ));
        }
    }
    Ok(TagSet(tags))
}

/// What a HEAD's (or GET's) headers say about the object, which is `size` bytes long.
fn info_from_response(resp: &S3Response, size: u64) -> ObjectInfo {
    let mut content_headers = Vec::new();
    for name in headers_kept_from_head() {
        if let Some(v) = resp.header(name) {
            content_headers.push((name.to_string(), v.to_string()));
        }
    }
    ObjectInfo {
        size,
        etag: resp.header("etag").map(xml::normalize_etag),
        last_modified: resp
            .header("last-modified")
            .and_then(|d| httpdate::parse_http_date(d).ok()),
        metadata: Metadata::from_headers(resp.header_pairs()),
        content_headers,
    }
}

/// `bytes 0-9/1234` → (0, 9, 1234); `None` unless first ≤ last < total.
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        // Digits only: no sign, no spaces inside (u64's parser takes a leading '+').
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last, total) = (number(first)?, number(last)?, number(total)?);
    (first <= last && last < total).then_some((first, last, total))
}

/// A CopyObject (`<CopyObjectResult>`) or UploadPartCopy (`<CopyPartResult>`) reply (or their
/// `…Response` forms). S3 may answer 200 OK with an `<Error>` body; that is
/// `Err(ReplyError::S3)`.
pub(crate) fn parse_copy_result(body: &[u8]) -> Result<CopyResult, ReplyError> {
    let root = select_root(
        error_or_tree(body)?,
        &["CopyObjectResult", "CopyPartResult"],
    )?;
    Ok(CopyResult {
        etag: etag_of(&root),
        last_modified: root.text_of("LastModified").and_then(parse_iso8601),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::fixtures::*;
    use crate::s3::xml::XmlError;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 0-9/1234"), Some((0, 9, 1234)));
        assert_eq!(parse_content_range(" bytes 5-5/6 "), Some((5, 5, 6)));
        for bad in [
            "bytes */1234",
            "bytes 0-9/*",
            "garbage",
            "bytes 9-0/10",
            "bytes 0-10/10",
            "bytes -1-5/10",
            "bytes +1-5/10",
            "bytes 0-5/18446744073709551616",
            "bytes 0-18446744073709551615/18446744073709551615",
            "bytes 0-/10",
            "bytes 0 9/10",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn content_range_fuzz() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let count = std::cell::Cell::new(0u64);
        let numbers = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..100).prop_map(|n| n.to_string()),
            "-?[0-9]{0,25}",
            Just("*".to_string()),
            "\\PC{0,4}",
        ];
        let header = prop_oneof![
            (numbers.clone(), numbers.clone(), numbers)
                .prop_map(|(a, b, c)| format!("bytes {a}-{b}/{c}")),
            any::<String>(),
        ];
        let mut runner = TestRunner::new(Config {
            cases: 3000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&header, |h| {
                count.set(count.get() + 1);
                if let Some((a, b, c)) = parse_content_range(&h) {
                    prop_assert!(a <= b && b < c, "{h:?}");
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("Content-Range: {} inputs fuzzed", count.get());
    }

    /// A HEAD's reply with these raw header bytes.
    fn reply_with(headers: &[(&str, &[u8])]) -> S3Response {
        let mut map = ureq::http::HeaderMap::new();
        for (name, value) in headers {
            map.append(
                ureq::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                ureq::http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        S3Response {
            status: 200,
            headers: map,
            body: ureq::Body::builder().data(Vec::new()),
        }
    }

    #[test]
    fn metadata_that_is_not_ascii_is_kept() {
        // A server that kept the raw bytes a client sent hands them back: UTF-8, or Latin-1
        // (HTTP's old default). Dropped, a value would be lost by the next rewrite, chmod or
        // setfattr, which send the object's metadata again (RFC 2047-encoded).
        let resp = reply_with(&[
            ("x-amz-meta-author", "Jürgen".as_bytes()),
            ("x-amz-meta-latin", b"J\xfcrgen"),
            ("x-amz-meta-plain", b"ascii"),
        ]);
        let info = info_from_response(&resp, 0);
        assert_eq!(info.metadata.get("author"), Some("Jürgen"));
        assert_eq!(info.metadata.get("latin"), Some("Jürgen"));
        assert_eq!(info.metadata.get("plain"), Some("ascii"));
        assert_eq!(info.metadata.len(), 3);
    }

    #[test]
    fn tag_sets() {
        let two = TagSet(vec![
            ("tag1".into(), "val1".into()),
            ("tag2".into(), "val2 & more".into()),
        ]);
        assert_eq!(parse_tagging(TAGGING.as_bytes()).unwrap(), two);
        // No namespace, a prefix, unknown elements, a tag without a value.
        let loose = r#"<s3:Tagging xmlns:s3="urn:x"><Extra/><s3:TagSet><s3:Tag><s3:Key>k</s3:Key><Other>o</Other></s3:Tag></s3:TagSet></s3:Tagging>"#;
        assert_eq!(
            parse_tagging(loose.as_bytes()).unwrap(),
            TagSet(vec![("k".into(), String::new())])
        );
        for empty in ["<Tagging><TagSet/></Tagging>", "<Tagging></Tagging>"] {
            assert_eq!(parse_tagging(empty.as_bytes()).unwrap(), TagSet::default());
        }
        for bad in [
            "<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
            "<ListBucketResult/>",
            "<Tagging><TagSet>",
            "",
        ] {
            assert!(parse_tagging(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_tagging(ERR_NO_SUCH_KEY.as_bytes()),
            Err(ReplyError::S3(_))
        ));
    }

    #[test]
    fn copy_results() {
        // The reference's CopyObject example has no zone designator: read as UTC.
        assert_eq!(
            parse_copy_result(COPY_OBJECT.as_bytes()).unwrap(),
            CopyResult {
                etag: Some("9b2cf535f27731c974343645a3985328".into()),
                last_modified: Some(at(1_256_769_120, 0)),
            }
        );
        assert_eq!(
            parse_copy_result(COPY_PART.as_bytes()).unwrap(),
            CopyResult {
                etag: Some("9b2cf535f27731c974343645a3985328".into()),
                last_modified: Some(at(1_256_769_120, 0)),
            }
        );
        match parse_copy_result(ERR_NO_SUCH_KEY.as_bytes()) {
            Err(ReplyError::S3(e)) => assert_eq!(e.code, "NoSuchKey"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse_copy_result(b"<CopyObjectResult><ETag>"),
            Err(ReplyError::Xml(XmlError::Malformed(_)))
        ));
    }

    #[test]
    fn etags_in_xml_in_every_quoting() {
        // `&quot;` is unescaped by the parser, `&amp;quot;` leaves `&quot;` behind.
        for etag in [
            "&quot;abc&quot;",
            "&amp;quot;abc&amp;quot;",
            "&#34;abc&#34;",
            "abc",
        ] {
            let doc = format!("<CopyObjectResult><ETag>{etag}</ETag></CopyObjectResult>");
            assert_eq!(
                parse_copy_result(doc.as_bytes()).map(|r| r.etag),
                Ok(Some("abc".to_string())),
                "{etag}"
            );
        }
    }
}
