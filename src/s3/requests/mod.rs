//! The S3 requests, one room per kind, each with its reply's parser and their tests.
//!
//! - [`object`] — HeadObject, GetObject, PutObject, CopyObject, DeleteObject;
//! - [`list`] — ListObjectsV2;
//! - [`multipart`] — CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload,
//!   AbortMultipartUpload, ListParts, ListMultipartUploads;
//! - [`delete`] — DeleteObjects;
//! - [`bucket`] — HeadBucket, CreateBucket, DeleteBucket.
//!
//! A function here sends exactly one request through the [`S3Client`] (which retries the
//! idempotent ones) and reads its reply: no policy, no loop over pages, no multipart decision.
//! [`crate::s3::Storage`] offers them as its [`crate::s3::ObjectStore`] methods. Each request
//! is built with its [`crate::s3::Operation`]; a write that must not be resent blindly (a
//! conditional PUT, CreateMultipartUpload, CompleteMultipartUpload) is marked so here, where
//! the request is built.
//!
//! Every 2xx XML reply is read through [`read_reply`], so an `<Error>` document in a `200 OK`
//! is the error it reports, never a success.

pub(crate) mod bucket;
pub(crate) mod delete;
pub(crate) mod list;
pub(crate) mod multipart;
pub(crate) mod object;

use super::client::S3Response;
use super::error::{Result, StorageError};
use super::name::ObjectRef;
use super::sign;
use super::xml;

/// Read a 2xx reply's XML body and parse it with `parse` (see [`xml::parse_reply`]): an
/// `<Error>` body is the error it reports, a body that cannot be read is a network error, one
/// that cannot be understood a [`StorageError::BadReply`].
pub(crate) fn read_reply<T, E: Into<xml::ReplyError>>(
    resp: S3Response,
    what: &str,
    bucket: &str,
    key: &str,
    parse: impl FnOnce(&[u8]) -> std::result::Result<T, E>,
) -> Result<T> {
    let status = resp.status;
    let bytes = resp.read_small_body(what)?;
    xml::parse_reply(&bytes, parse).map_err(|e| reply_error(what, bucket, key, status, e))
}

/// The [`StorageError`] for a reply that is not a success: an `<Error>` body by its code (as
/// if the server had sent it with an error status), anything else a `BadReply`.
fn reply_error(
    what: &str,
    bucket: &str,
    key: &str,
    status: u16,
    e: xml::ReplyError,
) -> StorageError {
    let (bucket, key) = (bucket.to_string(), key.to_string());
    match e {
        xml::ReplyError::S3(body) => match body.code.as_str() {
            "PreconditionFailed" => StorageError::PreconditionFailed { bucket, key },
            "NoSuchBucket" => StorageError::NoSuchBucket { bucket },
            "NoSuchKey" | "NoSuchUpload" => StorageError::NotFound {
                bucket,
                key,
                code: Some(body.code),
            },
            _ => StorageError::Http {
                status,
                code: Some(body.code),
                message: body.message,
                bucket,
                key,
                request_id: body.request_id,
            },
        },
        xml::ReplyError::Xml(x) => StorageError::BadReply {
            what: what.to_string(),
            detail: x.to_string(),
        },
    }
}

/// `x-amz-copy-source` value: `/bucket/key`, the key URI-encoded (slashes kept).
pub(crate) fn copy_source(src: &ObjectRef) -> String {
    format!(
        "/{}/{}",
        sign::uri_encode(&src.bucket, true),
        sign::uri_encode(&src.key, false)
    )
}

/// An ETag as a conditional header carries it: quoted.
pub(crate) fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

#[cfg(test)]
mod tests {
    use super::delete::build_delete_objects;
    use super::delete::parse_delete_result;
    use super::list::parse_list_objects_v2;
    use super::multipart::{
        build_complete_multipart, parse_complete_multipart, parse_initiate_multipart,
        parse_list_multipart_uploads, parse_list_parts,
    };
    use super::object::{parse_copy_result, parse_tagging};
    use super::*;
    use crate::s3::fixtures::*;
    use crate::s3::xml::{parse_error, parse_iso8601, parse_reply, ReplyError, XmlError};

    #[test]
    fn error_bodies_in_2xx_replies_map_like_error_statuses() {
        let s3 = |code: &str| {
            xml::ReplyError::S3(xml::S3ErrorBody {
                code: code.into(),
                message: "m".into(),
                request_id: Some("r".into()),
                key: None,
                resource: None,
            })
        };
        let e = reply_error("w", "b", "k", 200, s3("PreconditionFailed"));
        assert!(e.is_precondition_failed());
        let e = reply_error("w", "b", "k", 200, s3("NoSuchUpload"));
        assert!(
            matches!(e, StorageError::NotFound { code: Some(ref c), .. } if c == "NoSuchUpload")
        );
        let e = reply_error("w", "b", "k", 200, s3("InternalError"));
        assert!(e.is_transient(), "S3 asks for a retry: {e}");
        assert!(matches!(e, StorageError::Http { status: 200, .. }));
        let e = reply_error("w", "b", "k", 200, s3("InvalidPart"));
        assert!(!e.is_transient());
        let e = reply_error(
            "w",
            "b",
            "k",
            200,
            xml::ReplyError::Xml(xml::XmlError::Empty),
        );
        assert!(matches!(e, StorageError::BadReply { .. }));
    }

    #[test]
    fn a_2xx_reply_carrying_an_error_is_that_error() {
        for doc in [COMPLETE_200_ERROR, ERR_ACCESS_DENIED] {
            assert!(matches!(
                parse_reply(doc.as_bytes(), parse_initiate_multipart),
                Err(ReplyError::S3(_))
            ));
            assert!(matches!(
                parse_reply(doc.as_bytes(), parse_list_objects_v2),
                Err(ReplyError::S3(_))
            ));
        }
        assert_eq!(
            parse_reply(INITIATE.as_bytes(), parse_initiate_multipart).as_deref(),
            Ok("VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA")
        );
        assert!(matches!(
            parse_reply(b"<Foo/>", parse_initiate_multipart),
            Err(ReplyError::Xml(XmlError::UnexpectedRoot { .. }))
        ));
    }

    #[test]
    fn other_replies_accept_their_response_form() {
        let moto_style = INITIATE.replace(
            "InitiateMultipartUploadResult",
            "InitiateMultipartUploadResponse",
        );
        assert_eq!(
            parse_initiate_multipart(moto_style.as_bytes()).as_deref(),
            Ok("VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA")
        );
        // Still refused without what the caller needs.
        let no_id =
            "<InitiateMultipartUploadResponse><Bucket>b</Bucket></InitiateMultipartUploadResponse>";
        assert_eq!(
            parse_initiate_multipart(no_id.as_bytes()),
            Err(XmlError::Missing("UploadId"))
        );
        let copy = COPY_OBJECT.replace("CopyObjectResult", "CopyObjectResponse");
        assert_eq!(
            parse_copy_result(copy.as_bytes()),
            parse_copy_result(COPY_OBJECT.as_bytes())
        );
        let delete = DELETE_RESULT.replace("DeleteResult", "DeleteResponse");
        assert_eq!(
            parse_delete_result(delete.as_bytes()),
            parse_delete_result(DELETE_RESULT.as_bytes())
        );
        assert!(parse_list_objects_v2(b"<ListBucketResponse/>").is_ok());
        assert!(parse_list_objects_v2(b"<ListAllMyBucketsResult/>").is_err());
    }

    /// Tiny xorshift generator: deterministic, no extra dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
    }

    fn run_all_parsers(data: &[u8]) {
        let _ = parse_list_objects_v2(data);
        let _ = parse_error(data);
        let _ = parse_initiate_multipart(data);
        let _ = parse_copy_result(data).map_err(|e| e.to_string());
        let _ = parse_tagging(data).map_err(|e| e.to_string());
        let _ = parse_complete_multipart(data);
        let _ = parse_delete_result(data);
        let _ = parse_list_multipart_uploads(data);
        let _ = parse_list_parts(data);
        if let Ok(s) = std::str::from_utf8(data) {
            let _ = parse_iso8601(s);
        }
    }

    /// Values that break number, boolean and date parsing, put into the elements that hold them.
    const BAD_VALUES: &[&str] = &[
        "",
        "-1",
        "-0",
        "+5",
        "1.5",
        "1e3",
        "0x10",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999999999",
        " 7 ",
        "NaN",
        "true",
        "TRUE",
        "yes",
        "1",
        "&#0;",
        "&amp;",
        "%FF%FE",
        "%",
        "%C3%28",
        "9999-99-99T99:99:99Z",
        "1970-01-01T00:00:00Z",
        "0001-01-01T00:00:00.000Z",
        "2009-10-12T17:50:30.0000000000000000000001Z",
        "\u{202e}",
        "<x/>",
    ];
    const VALUE_ELEMENTS: &[&str] = &[
        "Size",
        "KeyCount",
        "MaxKeys",
        "IsTruncated",
        "LastModified",
        "ETag",
        "Key",
        "Prefix",
        "EncodingType",
        "NextContinuationToken",
        "UploadId",
        "Code",
    ];

    /// Replace the text of the first `<element>` in `doc` with `value`, if there is one.
    fn with_value(doc: &str, element: &str, value: &str) -> Option<String> {
        let open = format!("<{element}>");
        let close = format!("</{element}>");
        let start = doc.find(&open)? + open.len();
        let end = start + doc[start..].find(&close)?;
        Some(format!("{}{value}{}", &doc[..start], &doc[end..]))
    }

    #[test]
    fn fuzz_no_panic() {
        let mut inputs = 0u64;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        // Well-formed documents with a bad value where a number, flag or date belongs.
        for doc in ALL_DOCS {
            for element in VALUE_ELEMENTS {
                for value in BAD_VALUES {
                    if let Some(d) = with_value(doc, element, value) {
                        run_all_parsers(d.as_bytes());
                        inputs += 1;
                        // A bad size is an error, never a wrong size.
                        if *element == "Size" && d.contains("<ListBucketResult") {
                            let got = parse_list_objects_v2(d.as_bytes())
                                .map(|p| p.objects.first().map(|o| o.size));
                            match value.trim().parse::<u64>() {
                                Ok(n) => assert_eq!(got, Ok(Some(n)), "{value:?}"),
                                Err(_) => assert!(got.is_err(), "{value:?} gave {got:?}"),
                            }
                        }
                    }
                }
            }
        }
        const INTERESTING: &[&[u8]] = &[
            b"<",
            b">",
            b"</",
            b"/>",
            b"&",
            b"&amp;",
            b"&#x0;",
            b"&#xFFFFFFFF;",
            b"<![CDATA[",
            b"]]>",
            b"<?",
            b"?>",
            b"<!--",
            b"\xff",
            b"\x00",
            b"%",
            b"%FF",
            b"+",
            b"\"",
            b"<Error>",
            b"<Size>",
            b"99999999999999999999999",
            b"<a:b:c>",
            b"\xf0\x9f",
        ];
        for round in 0..3000 {
            let mut data: Vec<u8> = if round % 10 == 0 {
                (0..rng.below(300)).map(|_| rng.next() as u8).collect()
            } else {
                ALL_DOCS[rng.below(ALL_DOCS.len())].as_bytes().to_vec()
            };
            for _ in 0..=rng.below(6) {
                let pos = rng.below(data.len() + 1);
                match rng.below(5) {
                    0 => data.truncate(pos),
                    1 => {
                        if pos < data.len() {
                            data[pos] = rng.next() as u8;
                        }
                    }
                    2 => {
                        let piece = INTERESTING[rng.below(INTERESTING.len())];
                        data.splice(pos..pos, piece.iter().copied());
                    }
                    3 => {
                        let end = (pos + rng.below(40)).min(data.len());
                        data.drain(pos..end);
                    }
                    _ => {
                        let start = rng.below(data.len() + 1);
                        let end = (start + rng.below(80)).min(data.len());
                        let chunk: Vec<u8> = data[start..end].to_vec();
                        data.splice(pos..pos, chunk);
                    }
                }
            }
            run_all_parsers(&data);
            inputs += 1;
        }
        // Random strings through the builders as well.
        for _ in 0..500 {
            inputs += 1;
            let key: String = (0..rng.below(20))
                .filter_map(|_| char::from_u32((rng.next() % 0x11_0000) as u32))
                .collect();
            let _ = build_delete_objects(std::slice::from_ref(&key), rng.below(2) == 0);
            let _ = build_complete_multipart(&[(rng.next() as u32, key)]);
        }
        eprintln!("XML replies and bodies: {inputs} inputs fuzzed");
    }
}
