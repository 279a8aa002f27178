//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts, ListMultipartUploads.
//!
//! CreateMultipartUpload and CompleteMultipartUpload are sent once, never retried by the
//! client: a second CreateMultipartUpload would leave an upload nobody knows of, and a
//! completion whose reply was lost meets NoSuchUpload or 412 when sent again on many servers
//! (see [`crate::s3::reconcile`], which looks before it resends one).

use super::super::body::RequestBody;
use super::super::client::{S3Client, S3Request};
use super::super::error::{Result, StorageError};
use super::super::name::ObjectRef;
use super::super::operation::Operation;
use super::super::types::{
    CopyResult, ListedPart, ListedUpload, PartsPage, PutOptions, UploadsPage, UploadsRequest,
};
use super::super::xml::{
    self, error_or_tree, escape_text, etag_of, is_truncated, listed_key, parse_iso8601,
    parse_number, parse_root, select_root, url_encoded, xml_char_ok, ReplyError, XmlError, S3_NS,
};
use super::object::parse_copy_result;
use super::{copy_source, quoted, read_reply};

/// CreateMultipartUpload with `opts`' metadata and content headers; returns the upload id.
pub(crate) fn create_multipart_upload(
    client: &S3Client,
    obj: &ObjectRef,
    opts: &PutOptions,
) -> Result<String> {
    let req = S3Request::new(Operation::CreateMultipartUpload, &obj.bucket, &obj.key)
        .query("uploads", "")
        .headers(opts.headers()?)
        .not_idempotent();
    let what = format!("CreateMultipartUpload {obj}");
    let resp = client.execute(&req)?;
    read_reply(resp, &what, &obj.bucket, &obj.key, parse_initiate_multipart)
}

/// UploadPart; returns the part's ETag.
pub(crate) fn upload_part(
    client: &S3Client,
    obj: &ObjectRef,
    upload_id: &str,
    part_number: u32,
    body: RequestBody<'_>,
) -> Result<String> {
    let req = S3Request::new(Operation::UploadPart, &obj.bucket, &obj.key)
        .query("partNumber", part_number.to_string())
        .query("uploadId", upload_id)
        .body(body);
    let resp = client.execute(&req)?;
    resp.header("etag")
        .map(xml::normalize_etag)
        .ok_or_else(|| StorageError::BadReply {
            what: format!("UploadPart {part_number} of {obj}"),
            detail: "no ETag".into(),
        })
}

/// UploadPartCopy of bytes `[start, end)` of `src` (only if its ETag is `if_match`, when
/// given); returns the part's ETag.
pub(crate) fn upload_part_copy(
    client: &S3Client,
    obj: &ObjectRef,
    upload_id: &str,
    part_number: u32,
    src: &ObjectRef,
    (start, end): (u64, u64),
    if_match: Option<&str>,
) -> Result<String> {
    let req = S3Request::new(Operation::UploadPartCopy, &obj.bucket, &obj.key)
        .query("partNumber", part_number.to_string())
        .query("uploadId", upload_id)
        .header("x-amz-copy-source", copy_source(src))
        .header(
            "x-amz-copy-source-range",
            format!("bytes={start}-{}", end.saturating_sub(1)),
        )
        .header_opt("x-amz-copy-source-if-match", if_match.map(quoted));
    let what = format!("UploadPartCopy {part_number} of {obj}");
    let resp = client.execute(&req)?;
    let r = read_reply(resp, &what, &obj.bucket, &obj.key, parse_copy_result)?;
    r.etag.ok_or_else(|| StorageError::BadReply {
        what,
        detail: "no ETag".into(),
    })
}

/// CompleteMultipartUpload with these parts, only if `cond`'s `if_none_match_any` /
/// `if_match` hold (S3 checks them at completion: 412 → [`StorageError::PreconditionFailed`];
/// the upload stays open). Other fields of `cond` are ignored: metadata and content headers
/// belong to the upload's creation. Sent once, not retried.
pub(crate) fn complete_multipart_upload(
    client: &S3Client,
    obj: &ObjectRef,
    upload_id: &str,
    parts: &[(u32, String)],
    cond: &PutOptions,
) -> Result<CopyResult> {
    let body = build_complete_multipart(parts);
    let req = S3Request::new(Operation::CompleteMultipartUpload, &obj.bucket, &obj.key)
        .query("uploadId", upload_id)
        .header("content-type", "application/xml")
        .header_opt("if-none-match", cond.if_none_match_any.then_some("*"))
        .header_opt("if-match", cond.if_match.as_deref().map(quoted))
        .body(RequestBody::Bytes(body.as_bytes()))
        .not_idempotent();
    let what = format!("CompleteMultipartUpload {obj}");
    let resp = client.execute(&req)?;
    read_reply(resp, &what, &obj.bucket, &obj.key, parse_complete_multipart)
}

/// AbortMultipartUpload (an upload already gone is 404 NoSuchUpload, an error here).
pub(crate) fn abort_multipart_upload(
    client: &S3Client,
    obj: &ObjectRef,
    upload_id: &str,
) -> Result<()> {
    let req = S3Request::new(Operation::AbortMultipartUpload, &obj.bucket, &obj.key)
        .query("uploadId", upload_id);
    client.execute(&req).map(|_| ())
}

/// One ListParts page: the parts after part `marker`, at most `max_parts` of them (S3's
/// default and maximum is 1000).
pub(crate) fn list_parts(
    client: &S3Client,
    obj: &ObjectRef,
    upload_id: &str,
    marker: Option<u32>,
    max_parts: Option<u32>,
) -> Result<PartsPage> {
    let mut req =
        S3Request::new(Operation::ListParts, &obj.bucket, &obj.key).query("uploadId", upload_id);
    if let Some(m) = marker {
        req = req.query("part-number-marker", m.to_string());
    }
    if let Some(m) = max_parts {
        req = req.query("max-parts", m.to_string());
    }
    let what = format!("ListParts {obj}");
    let resp = client.execute(&req)?;
    read_reply(resp, &what, &obj.bucket, &obj.key, parse_list_parts)
}

/// One ListMultipartUploads page (`encoding-type=url`). Keys that are not UTF-8 are left out
/// (and logged).
pub(crate) fn list_multipart_uploads(
    client: &S3Client,
    bucket: &str,
    list: &UploadsRequest,
) -> Result<UploadsPage> {
    let mut req = S3Request::new(Operation::ListMultipartUploads, bucket, "")
        .query("uploads", "")
        .query("encoding-type", "url")
        .query("prefix", list.prefix.clone());
    if let Some(key) = &list.key_marker {
        req = req.query("key-marker", key.clone());
        if let Some(id) = &list.upload_id_marker {
            req = req.query("upload-id-marker", id.clone());
        }
    }
    let what = format!("ListMultipartUploads s3://{bucket}/{}", list.prefix);
    let resp = client.execute(&req)?;
    let page = read_reply(resp, &what, bucket, "", parse_list_multipart_uploads)?;
    for bad in &page.skipped_invalid {
        log::warn!("{what}: skipping a key that is not valid UTF-8: {bad:?}");
    }
    Ok(page)
}

/// The `UploadId` of an InitiateMultipartUpload reply.
pub(crate) fn parse_initiate_multipart(body: &[u8]) -> Result<String, XmlError> {
    let root = parse_root(body, "InitiateMultipartUploadResult")?;
    let id = root.required("UploadId")?.trim();
    if id.is_empty() {
        return Err(XmlError::Missing("UploadId"));
    }
    Ok(id.to_string())
}

/// A CompleteMultipartUpload reply (`<CompleteMultipartUploadResult>`, or moto 5.2.1's
/// `<CompleteMultipartUploadResponse>`): the new object's ETag (quotes stripped). S3 may
/// answer 200 OK with an `<Error>` body; that is `Err(ReplyError::S3)`.
pub(crate) fn parse_complete_multipart(body: &[u8]) -> Result<CopyResult, ReplyError> {
    let root = select_root(error_or_tree(body)?, &["CompleteMultipartUploadResult"])?;
    Ok(CopyResult {
        etag: etag_of(&root),
        last_modified: root.text_of("LastModified").and_then(parse_iso8601),
    })
}

/// A ListMultipartUploads page. With `<EncodingType>url</EncodingType>`, keys and the next key
/// marker are url-decoded; keys that are not UTF-8 afterwards go to `skipped_invalid`. A
/// truncated page without a next marker is an error (the listing could not go on).
pub(crate) fn parse_list_multipart_uploads(body: &[u8]) -> Result<UploadsPage, XmlError> {
    let root = parse_root(body, "ListMultipartUploadsResult")?;
    let url = url_encoded(&root);
    let decode = |raw: &str| listed_key(url, raw);
    let mut page = UploadsPage {
        is_truncated: is_truncated(&root)?,
        next_upload_id_marker: root
            .text_of("NextUploadIdMarker")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        ..UploadsPage::default()
    };
    if let Some(raw) = root.text_of("NextKeyMarker").filter(|t| !t.is_empty()) {
        page.next_key_marker = Some(
            decode(raw).map_err(|_| XmlError::Malformed("NextKeyMarker is not UTF-8".into()))?,
        );
    }
    if page.is_truncated && page.next_key_marker.is_none() {
        return Err(XmlError::Missing("NextKeyMarker"));
    }
    for item in root.children("Upload") {
        let raw_key = item.required("Key")?;
        let upload_id = item.required("UploadId")?.trim();
        if upload_id.is_empty() {
            return Err(XmlError::Missing("UploadId"));
        }
        match decode(raw_key) {
            Ok(key) => page.uploads.push(ListedUpload {
                key,
                upload_id: upload_id.to_string(),
                initiated: item.text_of("Initiated").and_then(parse_iso8601),
            }),
            Err(lossy) => page.skipped_invalid.push(lossy),
        }
    }
    Ok(page)
}

/// A ListParts page. The root is `<ListPartsResult>`; moto (5.x) writes `<ListPartsResponse>`,
/// accepted too.
pub(crate) fn parse_list_parts(body: &[u8]) -> Result<PartsPage, XmlError> {
    let root = parse_root(body, "ListPartsResult")?;
    let mut page = PartsPage {
        is_truncated: is_truncated(&root)?,
        ..PartsPage::default()
    };
    if let Some(m) = root
        .text_of("NextPartNumberMarker")
        .filter(|t| !t.trim().is_empty())
    {
        page.next_part_number_marker = Some(parse_number::<u32>("NextPartNumberMarker", m)?);
    }
    if page.is_truncated && page.next_part_number_marker.is_none() {
        return Err(XmlError::Missing("NextPartNumberMarker"));
    }
    for p in root.children("Part") {
        page.parts.push(ListedPart {
            part_number: parse_number::<u32>("PartNumber", p.required("PartNumber")?)?,
            size: parse_number::<u64>("Size", p.required("Size")?)?,
            etag: etag_of(p),
        });
    }
    Ok(page)
}

/// The CompleteMultipartUpload request body. ETags are (re-)quoted; characters XML cannot carry
/// (never present in a real ETag) are dropped.
pub(crate) fn build_complete_multipart(parts: &[(u32, String)]) -> String {
    let mut out = format!("<CompleteMultipartUpload xmlns=\"{S3_NS}\">");
    for (number, etag) in parts {
        let clean: String = xml::normalize_etag(etag)
            .chars()
            .filter(|&c| xml_char_ok(c))
            .collect();
        out.push_str(&format!("<Part><PartNumber>{number}</PartNumber><ETag>\""));
        // Cannot fail: `clean` holds only characters XML can carry.
        let _ = escape_text(&mut out, &clean);
        out.push_str("\"</ETag></Part>");
    }
    out.push_str("</CompleteMultipartUpload>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::fixtures::*;

    #[test]
    fn initiate_multipart() {
        assert_eq!(
            parse_initiate_multipart(INITIATE.as_bytes()).unwrap(),
            "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"
        );
        let no_id = INITIATE.replace(
            "<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>",
            "<UploadId> </UploadId>",
        );
        assert_eq!(
            parse_initiate_multipart(no_id.as_bytes()),
            Err(XmlError::Missing("UploadId"))
        );
        assert!(parse_initiate_multipart(ERR_ACCESS_DENIED.as_bytes()).is_err());
    }

    #[test]
    fn complete_multipart_success_and_200_error() {
        assert_eq!(
            parse_complete_multipart(COMPLETE_OK.as_bytes()).unwrap(),
            CopyResult {
                etag: Some("3858f62230ac3c915f300c664312c11f-9".into()),
                last_modified: None,
            }
        );
        match parse_complete_multipart(COMPLETE_200_ERROR.as_bytes()) {
            Err(ReplyError::S3(e)) => {
                assert_eq!(e.code, "InternalError");
                assert_eq!(
                    e.request_id.as_deref(),
                    Some("656c76696e6727732072657175657374")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = parse_complete_multipart(COPY_OBJECT.as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            ReplyError::Xml(XmlError::UnexpectedRoot { .. })
        ));
        assert!(err.to_string().contains("CompleteMultipartUploadResult"));
        assert!(matches!(
            parse_complete_multipart(b"   "),
            Err(ReplyError::Xml(XmlError::Empty))
        ));
    }

    #[test]
    fn complete_multipart_as_servers_write_it() {
        let want = |etag: &str| CopyResult {
            etag: Some(etag.into()),
            last_modified: None,
        };
        assert_eq!(
            parse_complete_multipart(COMPLETE_MOTO_521.as_bytes()),
            Ok(want("62109206880d38a4010a98e11243924a-1"))
        );
        for doc in [
            COMPLETE_OK.replace("Example-Object", "key"),
            COMPLETE_MINIO_STYLE.to_string(),
            COMPLETE_CEPH_STYLE.to_string(),
            COMPLETE_PREFIXED.to_string(),
            COMPLETE_WRAPPED.to_string(),
            COMPLETE_OK.replace(" xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"", ""),
            COMPLETE_OK.replace("2006-03-01", "2099-01-01"),
        ] {
            assert_eq!(
                parse_complete_multipart(doc.as_bytes()),
                Ok(want("3858f62230ac3c915f300c664312c11f-9")),
                "{doc}"
            );
        }
        // An ETag is not required to call the upload complete (it is only remembered).
        let no_etag =
            COMPLETE_CEPH_STYLE.replace("<ETag>3858f62230ac3c915f300c664312c11f-9</ETag>", "");
        assert_eq!(
            parse_complete_multipart(no_etag.as_bytes()),
            Ok(CopyResult {
                etag: None,
                last_modified: None
            })
        );
        // Tolerant, not credulous: other roots are refused, so is a `Response` of another reply.
        for bad in [
            "<CompleteMultipartUpload><ETag>\"e\"</ETag></CompleteMultipartUpload>",
            "<ListPartsResponse><ETag>\"e\"</ETag></ListPartsResponse>",
            "<CompleteMultipartUploadResponseX/>",
            "<html><body>502 Bad Gateway</body></html>",
        ] {
            assert!(
                matches!(
                    parse_complete_multipart(bad.as_bytes()),
                    Err(ReplyError::Xml(XmlError::UnexpectedRoot { .. }))
                ),
                "{bad}"
            );
        }
        // The query protocol's error wrapper is an error, not a success.
        let wrapped_error = "<ErrorResponse><Error><Code>InternalError</Code><Message>m</Message></Error><RequestId>r</RequestId></ErrorResponse>";
        match parse_complete_multipart(wrapped_error.as_bytes()) {
            Err(ReplyError::S3(e)) => assert_eq!(e.code, "InternalError"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn list_uploads_with_initiated_dates() {
        let page = parse_list_multipart_uploads(LIST_UPLOADS.as_bytes()).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("my-movie.m2ts"));
        assert_eq!(
            page.next_upload_id_marker.as_deref(),
            Some("YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ")
        );
        assert_eq!(
            page.uploads,
            vec![
                ListedUpload {
                    key: "my-divisor".into(),
                    upload_id: "XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw".into(),
                    initiated: Some(at(1_289_422_113, 0)),
                },
                ListedUpload {
                    key: "my-movie.m2ts".into(),
                    upload_id: "YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ".into(),
                    initiated: Some(at(1_289_422_114, 0)),
                },
            ]
        );
    }

    #[test]
    fn list_uploads_url_encoded_and_odd() {
        let page = parse_list_multipart_uploads(LIST_UPLOADS_URL.as_bytes()).unwrap();
        assert!(!page.is_truncated);
        assert_eq!(page.uploads.len(), 1);
        assert_eq!(page.uploads[0].key, "dir/a b+c.txt");
        assert_eq!(page.uploads[0].initiated, None, "bad date → unknown age");
        assert_eq!(page.skipped_invalid.len(), 1);
        let truncated_without_marker =
            LIST_UPLOADS.replace("<NextKeyMarker>my-movie.m2ts</NextKeyMarker>", "");
        assert!(parse_list_multipart_uploads(truncated_without_marker.as_bytes()).is_err());
        let empty_id =
            LIST_UPLOADS_URL.replace("<UploadId>abc</UploadId>", "<UploadId> </UploadId>");
        assert!(parse_list_multipart_uploads(empty_id.as_bytes()).is_err());
        assert!(parse_list_multipart_uploads(LIST_PARTS.as_bytes()).is_err());
    }

    #[test]
    fn list_parts_page() {
        let page = parse_list_parts(LIST_PARTS.as_bytes()).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.next_part_number_marker, Some(3));
        assert_eq!(page.parts.len(), 2);
        assert_eq!(page.parts[0].part_number, 2);
        assert_eq!(page.parts[0].size, 10_485_760);
        assert_eq!(
            page.parts[0].etag.as_deref(),
            Some("7778aef83f66abc1fa1e8477f296d394")
        );
        let moto = LIST_PARTS.replace("ListPartsResult", "ListPartsResponse");
        assert_eq!(parse_list_parts(moto.as_bytes()), Ok(page));
        assert!(parse_list_parts(LIST_UPLOADS.as_bytes()).is_err());
        let bad = LIST_PARTS.replace("<PartNumber>2</PartNumber>", "<PartNumber>-2</PartNumber>");
        assert!(parse_list_parts(bad.as_bytes()).is_err());
    }

    #[test]
    fn build_complete_multipart_body() {
        let body = build_complete_multipart(&[
            (1, "\"a54357aff0632cce46d942af68356b38\"".into()),
            (2, "0c78aef83f66abc1fa1e8477f296d394".into()),
            (3, "x&<y>\u{1}".into()),
        ]);
        assert_eq!(
            body,
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Part><PartNumber>1</PartNumber><ETag>\"a54357aff0632cce46d942af68356b38\"</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>\"0c78aef83f66abc1fa1e8477f296d394\"</ETag></Part>\
             <Part><PartNumber>3</PartNumber><ETag>\"x&amp;&lt;y&gt;\"</ETag></Part>\
             </CompleteMultipartUpload>"
        );
        assert_eq!(
            build_complete_multipart(&[]),
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></CompleteMultipartUpload>"
        );
    }
}
