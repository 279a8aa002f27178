//! ListObjectsV2: one page of a bucket listing, keys url-encoded on the wire
//! (`encoding-type=url`) so that any key survives the XML.

use super::super::client::{S3Client, S3Request};
use super::super::error::Result;
use super::super::meta::other_class;
use super::super::operation::Operation;
use super::super::types::{ListPage, ListRequest, ListedObject};
use super::super::xml::{
    etag_of, is_truncated, listed_key, parse_iso8601, parse_number, parse_root, url_encoded,
    XmlError,
};
use super::read_reply;

/// One ListObjectsV2 page. Keys that are not UTF-8 are left out (and logged).
pub(crate) fn list_objects_v2(
    client: &S3Client,
    bucket: &str,
    list: &ListRequest,
) -> Result<ListPage> {
    let mut req = S3Request::new(Operation::ListObjectsV2, bucket, "")
        .query("list-type", "2")
        .query("encoding-type", "url")
        .query("prefix", list.prefix.clone());
    if let Some(d) = &list.delimiter {
        req = req.query("delimiter", d.clone());
    }
    if let Some(t) = &list.continuation_token {
        req = req.query("continuation-token", t.clone());
    }
    if let Some(s) = &list.start_after {
        req = req.query("start-after", s.clone());
    }
    if let Some(m) = list.max_keys {
        req = req.query("max-keys", m.to_string());
    }
    let what = format!("ListObjectsV2 s3://{bucket}/{}", list.prefix);
    let resp = client.execute(&req)?;
    let page = read_reply(resp, &what, bucket, "", parse_list_objects_v2)?;
    for bad in &page.skipped_invalid {
        log::warn!("{what}: skipping a key that is not valid UTF-8: {bad:?}");
    }
    Ok(page)
}

/// Parse one ListObjectsV2 page. With `<EncodingType>url</EncodingType>`, keys and common
/// prefixes are url-decoded (the continuation token is never encoded); those that are not UTF-8
/// afterwards are reported in `skipped_invalid` instead of `objects` / `common_prefixes`.
pub(crate) fn parse_list_objects_v2(body: &[u8]) -> Result<ListPage, XmlError> {
    let root = parse_root(body, "ListBucketResult")?;
    let url = url_encoded(&root);
    let mut page = ListPage {
        is_truncated: is_truncated(&root)?,
        next_continuation_token: root
            .text_of("NextContinuationToken")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        ..ListPage::default()
    };
    if page.is_truncated && page.next_continuation_token.is_none() {
        return Err(XmlError::MissingContinuationToken);
    }
    let decode = |raw: &str| listed_key(url, raw);
    for item in root.children("Contents") {
        let raw_key = item.required("Key")?;
        let size = parse_number::<u64>("Size", item.required("Size")?)?;
        match decode(raw_key) {
            Ok(key) => page.objects.push(ListedObject {
                key,
                size,
                etag: etag_of(item),
                last_modified: item.text_of("LastModified").and_then(parse_iso8601),
                storage_class: item
                    .text_of("StorageClass")
                    .and_then(other_class)
                    .map(str::to_string),
            }),
            Err(lossy) => page.skipped_invalid.push(lossy),
        }
    }
    for group in root.children("CommonPrefixes") {
        for prefix in group.children("Prefix") {
            match decode(&prefix.text) {
                Ok(p) => page.common_prefixes.push(p),
                Err(lossy) => page.skipped_invalid.push(lossy),
            }
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::fixtures::*;

    #[test]
    fn list_with_common_prefixes() {
        let page = parse_list_objects_v2(LIST_COMMON_PREFIXES.as_bytes()).unwrap();
        assert_eq!(
            page,
            ListPage {
                objects: vec![ListedObject {
                    key: "photos/2006/index.html".into(),
                    size: 434_234,
                    etag: Some("fba9dede5f27731c9771645a39863328".into()),
                    last_modified: Some(at(1_255_369_830, 0)),
                    storage_class: None,
                }],
                common_prefixes: vec![
                    "photos/2006/February/".into(),
                    "photos/2006/January/".into()
                ],
                is_truncated: false,
                next_continuation_token: None,
                skipped_invalid: vec![],
            }
        );
    }

    #[test]
    fn list_truncated_with_token() {
        let page = parse_list_objects_v2(LIST_TRUNCATED.as_bytes()).unwrap();
        assert!(page.is_truncated);
        assert_eq!(
            page.next_continuation_token.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
        assert_eq!(page.objects.len(), 2);
        assert_eq!(
            page.objects[0].etag.as_deref(),
            Some("70ee1738b6b21e2c8a43f3a5ab0eee71")
        );
        assert_eq!(page.objects[1].size, 1111);
        assert_eq!(
            page.objects[1].etag.as_deref(),
            Some("becf17f89c30367a9a44495d62ed521a-1")
        );
    }

    #[test]
    fn list_truncated_without_token_is_an_error() {
        let doc = LIST_TRUNCATED.replace(
            "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>",
            "",
        );
        assert_eq!(
            parse_list_objects_v2(doc.as_bytes()),
            Err(XmlError::MissingContinuationToken)
        );
    }

    #[test]
    fn list_url_encoded_keys() {
        let page = parse_list_objects_v2(LIST_URL_ENCODED.as_bytes()).unwrap();
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            ["dir/my file.txt", "dir/a+b%c", "dir/café ✓", "dir/tab\t\r"]
        );
        assert_eq!(page.common_prefixes, ["dir/sub dir//"]);
        assert_eq!(page.skipped_invalid.len(), 2);
        assert!(page.skipped_invalid[0].starts_with("dir/bad"));
        assert!(page.skipped_invalid[0].contains('\u{FFFD}'));
        assert_eq!(page.objects[0].last_modified, Some(at(1_704_164_645, 0)));
        assert_eq!(page.objects[1].last_modified, Some(at(1_704_164_645, 123)));
        assert_eq!(page.objects[2].last_modified, None);
        assert_eq!(page.objects[2].etag, None);
    }

    #[test]
    fn list_without_encoding_keeps_keys_verbatim() {
        let doc = LIST_URL_ENCODED.replace("<EncodingType>url</EncodingType>", "");
        let page = parse_list_objects_v2(doc.as_bytes()).unwrap();
        assert_eq!(page.objects[0].key, "dir/my+file.txt");
        assert_eq!(page.objects[1].key, "dir/a%2Bb%25c");
        assert!(page.skipped_invalid.is_empty());
        // Leading/trailing spaces and escaped characters of raw keys survive.
        let doc = r#"<ListBucketResult><Contents><Key> a &amp; b&#x20;</Key><Size>0</Size></Contents></ListBucketResult>"#;
        let page = parse_list_objects_v2(doc.as_bytes()).unwrap();
        assert_eq!(page.objects[0].key, " a & b ");
    }

    #[test]
    fn list_empty_bucket() {
        assert_eq!(
            parse_list_objects_v2(LIST_EMPTY.as_bytes()).unwrap(),
            ListPage::default()
        );
    }

    #[test]
    fn list_tolerates_prefixes_order_and_unknown_elements() {
        let doc = r#"<s3:ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/">
            <s3:Unknown><Deep><Deeper/></Deep></s3:Unknown>
            <s3:Contents><s3:Size> 7 </s3:Size><s3:Owner><ID>x</ID></s3:Owner><s3:Key>k</s3:Key></s3:Contents>
            <!-- a comment -->
            <s3:IsTruncated> TRUE </s3:IsTruncated>
            <s3:NextContinuationToken><![CDATA[t<1>]]></s3:NextContinuationToken>
        </s3:ListBucketResult>"#;
        let page = parse_list_objects_v2(doc.as_bytes()).unwrap();
        assert_eq!(page.objects[0].key, "k");
        assert_eq!(page.objects[0].size, 7);
        assert!(page.is_truncated);
        assert_eq!(page.next_continuation_token.as_deref(), Some("t<1>"));
    }

    #[test]
    fn list_bad_inputs_are_errors() {
        let huge = LIST_COMMON_PREFIXES.replace("434234", "18446744073709551616");
        assert!(matches!(
            parse_list_objects_v2(huge.as_bytes()),
            Err(XmlError::BadNumber {
                element: "Size",
                ..
            })
        ));
        let neg = LIST_COMMON_PREFIXES.replace("434234", "-1");
        assert!(matches!(
            parse_list_objects_v2(neg.as_bytes()),
            Err(XmlError::BadNumber { .. })
        ));
        let word = LIST_COMMON_PREFIXES.replace("434234", "big");
        let err = parse_list_objects_v2(word.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "element <Size> is not a valid number: \"big\""
        );
        let bad_bool = LIST_EMPTY.replace(">false<", ">maybe<");
        assert!(matches!(
            parse_list_objects_v2(bad_bool.as_bytes()),
            Err(XmlError::BadBool { .. })
        ));
        let no_key = LIST_COMMON_PREFIXES.replace("<Key>photos/2006/index.html</Key>", "");
        assert_eq!(
            parse_list_objects_v2(no_key.as_bytes()),
            Err(XmlError::Missing("Key"))
        );
        let no_size = LIST_COMMON_PREFIXES.replace("<Size>434234</Size>", "");
        assert_eq!(
            parse_list_objects_v2(no_size.as_bytes()),
            Err(XmlError::Missing("Size"))
        );
        // Truncated document.
        let cut = &LIST_COMMON_PREFIXES.as_bytes()[..LIST_COMMON_PREFIXES.len() / 2];
        assert!(matches!(
            parse_list_objects_v2(cut),
            Err(XmlError::Malformed(_))
        ));
        // Mismatched tags, garbage, empty, invalid UTF-8, wrong root, unknown entity.
        for bad in [
            &b"<ListBucketResult><Contents></ListBucketResult>"[..],
            b"\x00\x01\x02garbage\xff",
            b"",
            b"   \n ",
            b"<ListBucketResult><Contents><Key>\xff\xfe</Key><Size>1</Size></Contents></ListBucketResult>",
            b"<Foo/>",
            b"<ListBucketResult><Name>&bogus;</Name></ListBucketResult>",
            b"<ListBucketResult/><ListBucketResult/>",
            b"text only",
        ] {
            assert!(parse_list_objects_v2(bad).is_err(), "{:?}", bad);
        }
        assert_eq!(
            parse_list_objects_v2(b"<Foo/>").unwrap_err().to_string(),
            "expected root element <ListBucketResult>, found <Foo>"
        );
    }

    #[test]
    fn a_listed_storage_class_other_than_standard_is_kept() {
        let page = parse_list_objects_v2(
            b"<ListBucketResult><IsTruncated>false</IsTruncated>\
              <Contents><Key>a</Key><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>\
              <Contents><Key>b</Key><Size>1</Size><StorageClass>GLACIER_IR</StorageClass></Contents>\
              <Contents><Key>c</Key><Size>1</Size></Contents></ListBucketResult>",
        )
        .unwrap();
        let classes: Vec<_> = page
            .objects
            .iter()
            .map(|o| o.storage_class.as_deref())
            .collect();
        assert_eq!(classes, [None, Some("GLACIER_IR"), None]);
    }
}
