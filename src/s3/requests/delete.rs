//! DeleteObjects: up to [`MAX_KEYS`] keys in one request, in quiet mode (the reply lists
//! only the keys that could not be deleted).

use base64::Engine;
use md5::Digest;

use super::super::body::RequestBody;
use super::super::client::{S3Client, S3Request};
use super::super::error::{Result, StorageError};
use super::super::operation::Operation;
use super::super::types::DeleteResult;
use super::super::xml::{escape_text, parse_root, quote, XmlError, S3_NS};
use super::read_reply;

/// DeleteObjects takes at most this many keys per request.
pub const MAX_KEYS: usize = 1000;

/// One DeleteObjects request for `keys` (at most [`MAX_KEYS`]). Keys S3 reports as not
/// deleted are returned in `errors`; a key XML cannot carry is refused before anything is sent
/// (such an object is deleted with a single DeleteObject). Sent once, as a DeleteObject is.
pub(crate) fn delete_objects(
    client: &S3Client,
    bucket: &str,
    keys: &[String],
) -> Result<DeleteResult> {
    let body = request_body(keys)?;
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()));
    let req = S3Request::new(Operation::DeleteObjects, bucket, "")
        .query("delete", "")
        .header("content-md5", md5)
        .header("content-type", "application/xml")
        .body(RequestBody::Bytes(body.as_bytes()))
        .not_idempotent();
    let resp = client.execute(&req)?;
    let what = format!("DeleteObjects s3://{bucket}");
    read_reply(resp, &what, bucket, "", parse_delete_result)
}

/// The quiet DeleteObjects body for `keys`, or why it cannot be sent: too many keys, or a key
/// XML 1.0 cannot carry. (Checked the same way by [`crate::s3::MemoryStore`].)
pub(crate) fn request_body(keys: &[String]) -> Result<String> {
    if keys.len() > MAX_KEYS {
        return Err(StorageError::invalid(
            "key",
            format!(
                "{} keys in one DeleteObjects (at most {MAX_KEYS})",
                keys.len()
            ),
        ));
    }
    build_delete_objects(keys, true)
        .map_err(|e| StorageError::invalid("key", format!("cannot be sent in DeleteObjects: {e}")))
}

/// The DeleteObjects request body. A key holding a character XML 1.0 cannot carry (a control
/// character other than tab, newline, carriage return) is an error: such an object has to be
/// deleted with a single DeleteObject instead.
pub(crate) fn build_delete_objects(keys: &[String], quiet: bool) -> Result<String, XmlError> {
    let mut out = format!("<Delete xmlns=\"{S3_NS}\">");
    if quiet {
        out.push_str("<Quiet>true</Quiet>");
    }
    for key in keys {
        out.push_str("<Object><Key>");
        escape_text(&mut out, key).map_err(|()| XmlError::UnrepresentableKey(quote(key)))?;
        out.push_str("</Key></Object>");
    }
    out.push_str("</Delete>");
    Ok(out)
}

/// A DeleteObjects reply.
pub(crate) fn parse_delete_result(body: &[u8]) -> Result<DeleteResult, XmlError> {
    let root = parse_root(body, "DeleteResult")?;
    let mut result = DeleteResult::default();
    for d in root.children("Deleted") {
        result.deleted.push(d.required("Key")?.to_string());
    }
    for e in root.children("Error") {
        result.errors.push((
            e.required("Key")?.to_string(),
            e.text_of("Code").unwrap_or_default().trim().to_string(),
            e.text_of("Message").unwrap_or_default().to_string(),
        ));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::fixtures::*;

    #[test]
    fn delete_result_with_error() {
        assert_eq!(
            parse_delete_result(DELETE_RESULT.as_bytes()).unwrap(),
            DeleteResult {
                deleted: vec!["sample1.txt".into()],
                errors: vec![(
                    "sample2.txt".into(),
                    "AccessDenied".into(),
                    "Access Denied".into()
                )],
            }
        );
        assert_eq!(
            parse_delete_result(b"<DeleteResult/>").unwrap(),
            DeleteResult::default()
        );
        assert_eq!(
            parse_delete_result(
                b"<DeleteResult><Deleted><VersionId>1</VersionId></Deleted></DeleteResult>"
            ),
            Err(XmlError::Missing("Key"))
        );
    }

    #[test]
    fn build_delete_objects_body() {
        let keys = vec![
            "plain.txt".to_string(),
            "a&b <c> \"d\" 'e'".to_string(),
            "tab\tnl\ncr\r".to_string(),
            "ünï ✓".to_string(),
        ];
        let body = build_delete_objects(&keys, true).unwrap();
        assert_eq!(
            body,
            "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>\
             <Object><Key>plain.txt</Key></Object>\
             <Object><Key>a&amp;b &lt;c&gt; \"d\" 'e'</Key></Object>\
             <Object><Key>tab\tnl\ncr&#13;</Key></Object>\
             <Object><Key>ünï ✓</Key></Object></Delete>"
        );
        assert!(!build_delete_objects(&keys, false)
            .unwrap()
            .contains("Quiet"));
        // Round trip through our own parser: every key comes back unchanged.
        let doc = build_delete_objects(&keys, false)
            .unwrap()
            .replace("<Delete ", "<DeleteResult ")
            .replace("</Delete>", "</DeleteResult>")
            .replace("Object>", "Deleted>");
        assert_eq!(parse_delete_result(doc.as_bytes()).unwrap().deleted, keys);
        for bad in ["nul\0", "bell\u{7}", "esc\u{1b}", "\u{FFFE}"] {
            let err = build_delete_objects(&[bad.to_string()], false).unwrap_err();
            assert!(matches!(err, XmlError::UnrepresentableKey(_)));
            assert!(err.to_string().contains("XML 1.0"));
        }
    }

    #[test]
    fn too_many_keys_are_refused_before_sending() {
        let keys: Vec<String> = (0..=MAX_KEYS).map(|i| format!("k{i}")).collect();
        assert!(request_body(&keys).is_err());
        assert!(request_body(&keys[..MAX_KEYS]).is_ok());
        assert!(request_body(&["bell\u{7}".to_string()]).is_err());
    }
}
