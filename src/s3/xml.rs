//! The S3 XML documents s3mount reads and writes, on top of quick-xml.
//!
//! Replies (ListObjectsV2, InitiateMultipartUpload, CopyObject / UploadPartCopy,
//! CompleteMultipartUpload, ListMultipartUploads, ListParts, DeleteObjects, error bodies) are
//! first read into a tiny element tree and then picked apart by local name. The parsers are
//! tolerant of what real servers write, not credulous:
//!
//! - **Root names**: `…Result` as AWS, MinIO, Ceph and Garage write it, `…Response` as moto
//!   5.2.1 writes CompleteMultipartUpload and ListParts, and a `…Response` wrapping the
//!   `…Result` (the query-protocol shape). Any other root is refused.
//! - **Namespaces**: the S3 namespace, none, another, or a prefix (`<s3:Key>`): names are
//!   compared without it.
//! - **Unknown elements** (checksums, `ServerSideEncryption`, `Owner`, ...) are skipped; element
//!   order does not matter; whitespace (including the keep-alive spaces S3 sends before a late
//!   CompleteMultipartUpload reply) and a byte-order mark before the document are ignored.
//! - **ETags** quoted, unquoted, with the quotes escaped (`&quot;`, `&#34;` as Go's encoder
//!   writes them, or escaped twice), or weak (`W/"…"`): [`normalize_etag`] gives the bare value,
//!   in XML and in headers alike.
//! - **`<Error>` in a 2xx reply**: AWS answers CompleteMultipartUpload, CopyObject and
//!   UploadPartCopy with `200 OK` before the work is done and reports a failure in the body;
//!   such a body is the error it carries ([`ReplyError::S3`]), never a success.
//!
//! What a caller needs is still required: a reply without it (no `UploadId`, no `Key` in a
//! listing entry, a number that is not one) is an error, never a default. Text is kept exactly
//! (object keys may start or end with spaces); numbers and booleans are trimmed before parsing.
//!
//! Everything here reads bytes from the network, so nothing may panic: no `unwrap`, no indexing
//! that can go out of range, and element nesting is capped so neither building nor dropping the
//! tree can recurse without bound. Bad documents become an [`XmlError`] naming what is wrong.
//!
//! The two request bodies (CompleteMultipartUpload, DeleteObjects) are built here too, with
//! XML escaping, so that any key S3 can store can also be deleted.

use percent_encoding::percent_decode_str;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::time::SystemTime;

/// Deepest element nesting accepted; real S3 replies are at most 3 levels deep.
const MAX_DEPTH: usize = 32;
/// Longest excerpt of a bad value quoted in an error message.
const MAX_QUOTED: usize = 64;
const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// A byte-order mark some servers put before the XML declaration.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What is wrong with an S3 XML document.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum XmlError {
    /// The document is not well-formed XML (parser message).
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// The body was empty or had no root element.
    #[error("empty XML document")]
    Empty,
    /// Nesting deeper than any S3 reply has (refused to bound work).
    #[error("XML elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("expected root element <{expected}>, found <{found}>")]
    /// The root element is not the one this reply should have.
    UnexpectedRoot {
        /// Root element wanted.
        expected: &'static str,
        /// Root element found.
        found: String,
    },
    /// A required element is absent.
    #[error("missing required element <{0}>")]
    Missing(&'static str),
    #[error("element <{element}> is not a valid number: {value:?}")]
    /// An element that must hold a number does not.
    BadNumber {
        /// The element.
        element: &'static str,
        /// Its text.
        value: String,
    },
    #[error("element <{element}> is not a valid boolean: {value:?}")]
    /// An element that must hold `true`/`false` does not.
    BadBool {
        /// The element.
        element: &'static str,
        /// Its text.
        value: String,
    },
    /// `IsTruncated` is true but there is no token to continue with.
    #[error("listing is truncated but has no <NextContinuationToken>")]
    MissingContinuationToken,
    /// A key to send contains a character XML 1.0 cannot represent.
    #[error("key {0:?} contains a character that XML 1.0 cannot carry")]
    UnrepresentableKey(String),
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedObject {
    /// The key (url-decoded).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Quotes stripped.
    pub etag: Option<String>,
    /// LastModified.
    pub last_modified: Option<SystemTime>,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListPage {
    /// Objects on this page, in key order.
    pub objects: Vec<ListedObject>,
    /// `CommonPrefixes` (with a delimiter), url-decoded.
    pub common_prefixes: Vec<String>,
    /// More pages follow.
    pub is_truncated: bool,
    /// Token for the next page when truncated.
    pub next_continuation_token: Option<String>,
    /// Lossy renderings of keys/prefixes that were not valid UTF-8 after url-decoding.
    pub skipped_invalid: Vec<String>,
}

/// The body of an S3 `<Error>` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct S3ErrorBody {
    /// `<Code>`, e.g. `NoSuchKey`.
    pub code: String,
    /// `<Message>`.
    pub message: String,
    /// `<RequestId>`.
    pub request_id: Option<String>,
    /// `<Key>`, when the error names one.
    pub key: Option<String>,
    /// `<Resource>`, when present.
    pub resource: Option<String>,
}

impl std::fmt::Display for S3ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(key) = &self.key {
            write!(f, " (key {key:?})")?;
        }
        Ok(())
    }
}

/// ETag and date of a copy or a completed multipart upload.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyResult {
    /// ETag of the new object (quotes stripped).
    pub etag: Option<String>,
    /// LastModified of the new object.
    pub last_modified: Option<SystemTime>,
}

/// Why a CopyObject / UploadPartCopy / CompleteMultipartUpload reply is not a success.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyError {
    /// S3 answered (possibly with 200 OK) with an `<Error>` document.
    S3(S3ErrorBody),
    /// The reply could not be understood.
    Xml(XmlError),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::S3(body) => write!(f, "S3 error {body}"),
            ReplyError::Xml(e) => write!(f, "bad reply: {e}"),
        }
    }
}

impl std::error::Error for ReplyError {}

impl From<XmlError> for ReplyError {
    fn from(e: XmlError) -> Self {
        ReplyError::Xml(e)
    }
}

/// Outcome of DeleteObjects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeleteResult {
    /// Keys reported deleted.
    pub deleted: Vec<String>,
    /// (key, code, message)
    pub errors: Vec<(String, String, String)>,
}

/// One in-progress multipart upload of a ListMultipartUploads page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedUpload {
    /// The key being uploaded (url-decoded).
    pub key: String,
    /// The upload id.
    pub upload_id: String,
    /// When the upload was started (`<Initiated>`); `None` if absent or unreadable.
    pub initiated: Option<SystemTime>,
}

/// One page of ListMultipartUploads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UploadsPage {
    /// Uploads on this page, by key and then by start time.
    pub uploads: Vec<ListedUpload>,
    /// More pages follow.
    pub is_truncated: bool,
    /// `key-marker` of the next page (url-decoded).
    pub next_key_marker: Option<String>,
    /// `upload-id-marker` of the next page.
    pub next_upload_id_marker: Option<String>,
    /// Lossy renderings of keys that were not valid UTF-8 after url-decoding.
    pub skipped_invalid: Vec<String>,
}

/// One uploaded part of a ListParts page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPart {
    /// Part number (1-based).
    pub part_number: u32,
    /// Size in bytes.
    pub size: u64,
    /// ETag (quotes stripped).
    pub etag: Option<String>,
}

/// One page of ListParts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartsPage {
    /// Parts on this page, by part number.
    pub parts: Vec<ListedPart>,
    /// More pages follow.
    pub is_truncated: bool,
    /// `part-number-marker` of the next page.
    pub next_part_number_marker: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// A minimal element tree.

#[derive(Debug, Default)]
struct Node {
    /// Local name (namespace prefix dropped).
    name: String,
    /// Concatenated text and CDATA directly inside this element.
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    fn required(&self, name: &'static str) -> Result<&str, XmlError> {
        self.text_of(name).ok_or(XmlError::Missing(name))
    }
}

fn quote(value: &str) -> String {
    value.chars().take(MAX_QUOTED).collect()
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

fn utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(bytes).map_err(|_| XmlError::Malformed("invalid UTF-8".into()))
}

/// Parse a whole document into its root element.
fn parse_tree(body: &[u8]) -> Result<Node, XmlError> {
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let body = body.get(start..).unwrap_or_default();
    if body.is_empty() {
        return Err(XmlError::Empty);
    }
    let mut reader = Reader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let name = utf8(e.local_name().as_ref())?.to_string();
                stack.push(Node {
                    name,
                    ..Node::default()
                });
            }
            Event::Empty(e) => {
                let node = Node {
                    name: utf8(e.local_name().as_ref())?.to_string(),
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => {
                        return Err(XmlError::Malformed("content after the root element".into()))
                    }
                }
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unmatched end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(malformed)?;
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&text);
                } else if !text.trim().is_empty() {
                    return Err(XmlError::Malformed("text outside the root element".into()));
                }
            }
            Event::CData(c) => {
                let raw = c.into_inner();
                let text = utf8(&raw)?;
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(text);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed(
            "document ends inside an element".into(),
        ));
    }
    root.ok_or(XmlError::Empty)
}

/// Does a root element named `found` stand for the reply `expected` (a `…Result` name)?
/// Servers write `…Result` (AWS, MinIO, Ceph, Garage) or `…Response` (moto 5.2.1's
/// CompleteMultipartUpload and ListParts).
fn root_is(found: &str, expected: &str) -> bool {
    found == expected
        || expected
            .strip_suffix("Result")
            .is_some_and(|stem| found.strip_prefix(stem) == Some("Response"))
}

/// The element holding the reply `expected`, one of `names` (the first is the name reported
/// when none matches): the root itself, or the `…Result` inside a `…Response` root.
fn select_root(mut root: Node, names: &[&'static str]) -> Result<Node, XmlError> {
    let Some(expected) = names.iter().copied().find(|n| root_is(&root.name, n)) else {
        return Err(XmlError::UnexpectedRoot {
            expected: names.first().copied().unwrap_or("?"),
            found: quote(&root.name),
        });
    };
    if root.name != expected {
        if let Some(i) = root.children.iter().position(|c| c.name == expected) {
            return Ok(root.children.swap_remove(i));
        }
    }
    Ok(root)
}

fn parse_root(body: &[u8], expected: &'static str) -> Result<Node, XmlError> {
    select_root(parse_tree(body)?, &[expected])
}

fn parse_u64(element: &'static str, value: &str) -> Result<u64, XmlError> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| XmlError::BadNumber {
            element,
            value: quote(value),
        })
}

fn parse_u32(element: &'static str, value: &str) -> Result<u32, XmlError> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| XmlError::BadNumber {
            element,
            value: quote(value),
        })
}

fn parse_bool(element: &'static str, value: &str) -> Result<bool, XmlError> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("true") => Ok(true),
        v if v.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(XmlError::BadBool {
            element,
            value: quote(value),
        }),
    }
}

/// How servers quote an ETag: a plain `"`, or the quote escaped once more than XML needs
/// (`&quot;`, `&#34;` and `&#x22;` survive the parser's unescaping when written `&amp;quot;`).
const ETAG_QUOTES: &[&str] = &["\"", "&quot;", "&#34;", "&#x22;"];

/// An ETag from a header or an XML element, reduced to its value: surrounding whitespace, a
/// weak `W/` prefix and the quotes (any of [`ETAG_QUOTES`], each end on its own) go.
/// `"abc"`, `abc`, `&quot;abc&quot;` and `W/"abc"` all give `abc`.
pub fn normalize_etag(raw: &str) -> String {
    let mut t = raw.trim();
    t = t.strip_prefix("W/").unwrap_or(t);
    if let Some(rest) = ETAG_QUOTES.iter().find_map(|q| t.strip_prefix(q)) {
        t = rest;
    }
    if let Some(rest) = ETAG_QUOTES.iter().find_map(|q| t.strip_suffix(q)) {
        t = rest;
    }
    t.trim().to_string()
}

fn etag_of(node: &Node) -> Option<String> {
    node.text_of("ETag")
        .map(normalize_etag)
        .filter(|e| !e.is_empty())
}

/// Undo `EncodingType=url` (form style: `+` is a space, `%XX` a byte). `Err` holds a lossy
/// rendering when the bytes are not UTF-8.
fn url_decode(value: &str) -> Result<String, String> {
    let plus_as_space = value.replace('+', " ");
    let bytes: Vec<u8> = percent_decode_str(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// ISO-8601 / RFC 3339 UTC timestamp as S3 writes it, e.g. `2009-10-12T17:50:30.000Z`
/// (fractional seconds optional; a missing zone designator is read as UTC, as in the
/// CopyObject example of the S3 reference). `None` when it cannot be read.
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Some(t);
    }
    // Some servers write an explicit zero offset instead of `Z`.
    let zulu = s
        .strip_suffix("+00:00")
        .or_else(|| s.strip_suffix("-00:00"))?;
    humantime::parse_rfc3339(&format!("{zulu}Z")).ok()
}

// ---------------------------------------------------------------------------------------------
// Replies.

/// Parse one ListObjectsV2 page. With `<EncodingType>url</EncodingType>`, keys and common
/// prefixes are url-decoded (the continuation token is never encoded); those that are not UTF-8
/// afterwards are reported in `skipped_invalid` instead of `objects` / `common_prefixes`.
pub fn parse_list_objects_v2(body: &[u8]) -> Result<ListPage, XmlError> {
    let root = parse_root(body, "ListBucketResult")?;
    let url = root
        .text_of("EncodingType")
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("url"));
    let mut page = ListPage {
        is_truncated: match root.text_of("IsTruncated") {
            Some(v) => parse_bool("IsTruncated", v)?,
            None => false,
        },
        next_continuation_token: root
            .text_of("NextContinuationToken")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        ..ListPage::default()
    };
    if page.is_truncated && page.next_continuation_token.is_none() {
        return Err(XmlError::MissingContinuationToken);
    }
    let decode = |raw: &str| -> Result<String, String> {
        if url {
            url_decode(raw)
        } else {
            Ok(raw.to_string())
        }
    };
    for item in root.children("Contents") {
        let raw_key = item.required("Key")?;
        let size = parse_u64("Size", item.required("Size")?)?;
        match decode(raw_key) {
            Ok(key) => page.objects.push(ListedObject {
                key,
                size,
                etag: etag_of(item),
                last_modified: item.text_of("LastModified").and_then(parse_iso8601),
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

/// The `<Error>` document of a failed request; `None` when `body` is not one. The query
/// protocol's `<ErrorResponse><Error>…</Error></ErrorResponse>` is read too.
pub fn parse_error(body: &[u8]) -> Option<S3ErrorBody> {
    error_of(&parse_tree(body).ok()?)
}

fn error_of(root: &Node) -> Option<S3ErrorBody> {
    let err = match root.name.as_str() {
        "Error" => root,
        "ErrorResponse" => root.child("Error")?,
        _ => return None,
    };
    let opt = |name: &str| err.text_of(name).map(str::to_string);
    Some(S3ErrorBody {
        code: err.text_of("Code").unwrap_or_default().trim().to_string(),
        message: opt("Message").unwrap_or_default(),
        request_id: opt("RequestId"),
        key: opt("Key"),
        resource: opt("Resource"),
    })
}

/// The `UploadId` of an InitiateMultipartUpload reply.
pub fn parse_initiate_multipart(body: &[u8]) -> Result<String, XmlError> {
    let root = parse_root(body, "InitiateMultipartUploadResult")?;
    let id = root.required("UploadId")?.trim();
    if id.is_empty() {
        return Err(XmlError::Missing("UploadId"));
    }
    Ok(id.to_string())
}

/// The reply's tree, or the error its `<Error>` body reports (S3 sends one with `200 OK` when a
/// long request fails after the status line went out).
fn error_or_tree(body: &[u8]) -> Result<Node, ReplyError> {
    let root = parse_tree(body)?;
    match error_of(&root) {
        Some(err) => Err(ReplyError::S3(err)),
        None => Ok(root),
    }
}

/// Parse a successful (2xx) reply with `parse`, unless its body is an `<Error>` document: then
/// that error (see [`ReplyError::S3`]). Every 2xx XML reply goes through here, so a server
/// that reports a failure with `200 OK` is never read as having succeeded.
pub fn parse_reply<T, E: Into<ReplyError>>(
    body: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<T, ReplyError> {
    if let Some(err) = parse_error(body) {
        return Err(ReplyError::S3(err));
    }
    parse(body).map_err(Into::into)
}

/// A CopyObject (`<CopyObjectResult>`) or UploadPartCopy (`<CopyPartResult>`) reply (or their
/// `…Response` forms). S3 may answer 200 OK with an `<Error>` body; that is
/// `Err(ReplyError::S3)`.
pub fn parse_copy_result(body: &[u8]) -> Result<CopyResult, ReplyError> {
    let root = select_root(
        error_or_tree(body)?,
        &["CopyObjectResult", "CopyPartResult"],
    )?;
    Ok(CopyResult {
        etag: etag_of(&root),
        last_modified: root.text_of("LastModified").and_then(parse_iso8601),
    })
}

/// A CompleteMultipartUpload reply (`<CompleteMultipartUploadResult>`, or moto 5.2.1's
/// `<CompleteMultipartUploadResponse>`): the new object's ETag (quotes stripped). S3 may
/// answer 200 OK with an `<Error>` body; that is `Err(ReplyError::S3)`.
pub fn parse_complete_multipart(body: &[u8]) -> Result<CopyResult, ReplyError> {
    let root = select_root(error_or_tree(body)?, &["CompleteMultipartUploadResult"])?;
    Ok(CopyResult {
        etag: etag_of(&root),
        last_modified: root.text_of("LastModified").and_then(parse_iso8601),
    })
}

/// A DeleteObjects reply.
pub fn parse_delete_result(body: &[u8]) -> Result<DeleteResult, XmlError> {
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

/// A ListMultipartUploads page. With `<EncodingType>url</EncodingType>`, keys and the next key
/// marker are url-decoded; keys that are not UTF-8 afterwards go to `skipped_invalid`. A
/// truncated page without a next marker is an error (the listing could not go on).
pub fn parse_list_multipart_uploads(body: &[u8]) -> Result<UploadsPage, XmlError> {
    let root = parse_root(body, "ListMultipartUploadsResult")?;
    let url = root
        .text_of("EncodingType")
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("url"));
    let decode = |raw: &str| -> Result<String, String> {
        if url {
            url_decode(raw)
        } else {
            Ok(raw.to_string())
        }
    };
    let mut page = UploadsPage {
        is_truncated: match root.text_of("IsTruncated") {
            Some(v) => parse_bool("IsTruncated", v)?,
            None => false,
        },
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
pub fn parse_list_parts(body: &[u8]) -> Result<PartsPage, XmlError> {
    let root = parse_root(body, "ListPartsResult")?;
    let mut page = PartsPage {
        is_truncated: match root.text_of("IsTruncated") {
            Some(v) => parse_bool("IsTruncated", v)?,
            None => false,
        },
        ..PartsPage::default()
    };
    if let Some(m) = root
        .text_of("NextPartNumberMarker")
        .filter(|t| !t.trim().is_empty())
    {
        page.next_part_number_marker = Some(parse_u32("NextPartNumberMarker", m)?);
    }
    if page.is_truncated && page.next_part_number_marker.is_none() {
        return Err(XmlError::Missing("NextPartNumberMarker"));
    }
    for p in root.children("Part") {
        page.parts.push(ListedPart {
            part_number: parse_u32("PartNumber", p.required("PartNumber")?)?,
            size: parse_u64("Size", p.required("Size")?)?,
            etag: etag_of(p),
        });
    }
    Ok(page)
}

// ---------------------------------------------------------------------------------------------
// Request bodies.

fn xml_char_ok(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Escape text content. `\r` is written as a character reference so the server's line-end
/// normalisation cannot turn it into `\n`. Characters XML 1.0 cannot carry are an error.
fn escape_text(out: &mut String, s: &str) -> Result<(), ()> {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if xml_char_ok(c) => out.push(c),
            _ => return Err(()),
        }
    }
    Ok(())
}

/// The CompleteMultipartUpload request body. ETags are (re-)quoted; characters XML cannot carry
/// (never present in a real ETag) are dropped.
pub fn build_complete_multipart(parts: &[(u32, String)]) -> String {
    let mut out = format!("<CompleteMultipartUpload xmlns=\"{S3_NS}\">");
    for (number, etag) in parts {
        let clean: String = normalize_etag(etag)
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

/// The DeleteObjects request body. A key holding a character XML 1.0 cannot carry (a control
/// character other than tab, newline, carriage return) is an error: such an object has to be
/// deleted with a single DeleteObject instead.
pub fn build_delete_objects(keys: &[String], quiet: bool) -> Result<String, XmlError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    // ListObjectsV2 example of the S3 API reference (with a delimiter).
    const LIST_COMMON_PREFIXES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>example-bucket</Name>
  <Prefix>photos/2006/</Prefix>
  <KeyCount>3</KeyCount>
  <MaxKeys>1000</MaxKeys>
  <Delimiter>/</Delimiter>
  <IsTruncated>false</IsTruncated>
  <Contents>
    <Key>photos/2006/index.html</Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>"fba9dede5f27731c9771645a39863328"</ETag>
    <Size>434234</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <CommonPrefixes>
    <Prefix>photos/2006/February/</Prefix>
  </CommonPrefixes>
  <CommonPrefixes>
    <Prefix>photos/2006/January/</Prefix>
  </CommonPrefixes>
</ListBucketResult>"#;

    // Truncated page, as in the "list with continuation token" example.
    const LIST_TRUNCATED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name>
  <Prefix/>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <KeyCount>2</KeyCount>
  <MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents>
    <Key>happyface.jpg</Key>
    <LastModified>2014-11-21T19:40:05.000Z</LastModified>
    <ETag>&quot;70ee1738b6b21e2c8a43f3a5ab0eee71&quot;</ETag>
    <Size>11</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>happyface.jpg</Key>
    <LastModified>2014-11-21T19:40:05.000Z</LastModified>
    <ETag>"becf17f89c30367a9a44495d62ed521a-1"</ETag>
    <Size>1111</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
</ListBucketResult>"#;

    // EncodingType=url: S3 form-encodes keys (space as '+', '+' as %2B).
    const LIST_URL_ENCODED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>dir%2F</Prefix><ContinuationToken>tok</ContinuationToken><KeyCount>5</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>%2F</Delimiter><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><Contents><Key>dir/my+file.txt</Key><LastModified>2024-01-02T03:04:05Z</LastModified><ETag>"a"</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>dir/a%2Bb%25c</Key><LastModified>2024-01-02T03:04:05.123Z</LastModified><ETag>"b"</ETag><Size>2</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>dir/caf%C3%A9%20%E2%9C%93</Key><LastModified>garbage</LastModified><Size>3</Size></Contents><Contents><Key>dir/bad%FF%FE</Key><Size>4</Size></Contents><Contents><Key>dir/tab%09%0D</Key><Size>5</Size></Contents><CommonPrefixes><Prefix>dir/sub+dir%2F/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>dir/%C0/</Prefix></CommonPrefixes></ListBucketResult>"#;

    const LIST_EMPTY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>empty-bucket</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"#;

    const ERR_NO_SUCH_KEY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>NoSuchKey</Code>
  <Message>The resource you requested does not exist</Message>
  <Resource>/mybucket/myfoto.jpg</Resource>
  <RequestId>4442587FB7D0A2F9</RequestId>
</Error>"#;

    const ERR_NO_SUCH_BUCKET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>nope</BucketName><RequestId>TX4Y5Z6</RequestId><HostId>a2V5</HostId></Error>"#;

    const ERR_SIGNATURE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message><AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256
20130524T000000Z
20130524/us-east-1/s3/aws4_request
7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972</StringToSign><SignatureProvided>f0e8</SignatureProvided><CanonicalRequest>GET
/test.txt
</CanonicalRequest><RequestId>85A6B4C1</RequestId><HostId>eHk=</HostId></Error>"#;

    const ERR_ACCESS_DENIED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>656c76696e6727732072657175657374</RequestId><HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId></Error>"#;

    const INITIATE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket>
  <Key>example-object</Key>
  <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
</InitiateMultipartUploadResult>"#;

    const COMPLETE_OK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Location>http://Example-Bucket.s3.us-east-1.amazonaws.com/Example-Object</Location>
  <Bucket>Example-Bucket</Bucket>
  <Key>Example-Object</Key>
  <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag>
</CompleteMultipartUploadResult>"#;

    // The "200 OK with an error" example: keep-alive whitespace, then the error document.
    const COMPLETE_200_ERROR: &str = "    \n      \n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>InternalError</Code>\n  <Message>We encountered an internal error. Please try again.</Message>\n  <RequestId>656c76696e6727732072657175657374</RequestId>\n  <HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>\n</Error>";

    const COPY_OBJECT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CopyObjectResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
   <LastModified>2009-10-28T22:32:00</LastModified>
   <ETag>"9b2cf535f27731c974343645a3985328"</ETag>
</CopyObjectResult>"#;

    const COPY_PART: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CopyPartResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
   <LastModified>2009-10-28T22:32:00.000Z</LastModified>
   <ETag>"9b2cf535f27731c974343645a3985328"</ETag>
</CopyPartResult>"#;

    const DELETE_RESULT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted>
    <Key>sample1.txt</Key>
  </Deleted>
  <Error>
    <Key>sample2.txt</Key>
    <Code>AccessDenied</Code>
    <Message>Access Denied</Message>
  </Error>
</DeleteResult>"#;

    const ALL_DOCS: &[&str] = &[
        LIST_COMMON_PREFIXES,
        LIST_TRUNCATED,
        LIST_URL_ENCODED,
        LIST_EMPTY,
        ERR_NO_SUCH_KEY,
        ERR_NO_SUCH_BUCKET,
        ERR_SIGNATURE,
        ERR_ACCESS_DENIED,
        INITIATE,
        COMPLETE_OK,
        COMPLETE_200_ERROR,
        COPY_OBJECT,
        COPY_PART,
        DELETE_RESULT,
        LIST_UPLOADS,
        LIST_UPLOADS_URL,
        LIST_PARTS,
        COMPLETE_MOTO_521,
        COMPLETE_MINIO_STYLE,
        COMPLETE_CEPH_STYLE,
        COMPLETE_PREFIXED,
        COMPLETE_WRAPPED,
    ];

    // ListMultipartUploads example of the S3 API reference (trimmed: two uploads).
    const LIST_UPLOADS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>bucket</Bucket>
  <KeyMarker></KeyMarker>
  <UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>my-movie.m2ts</NextKeyMarker>
  <NextUploadIdMarker>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</NextUploadIdMarker>
  <MaxUploads>3</MaxUploads>
  <IsTruncated>true</IsTruncated>
  <Upload>
    <Key>my-divisor</Key>
    <UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
    <Initiator>
      <ID>arn:aws:iam::111122223333:user/user1-11111a31-17b5-4fb7-9df5-b111111f13de</ID>
      <DisplayName>user1-11111a31-17b5-4fb7-9df5-b111111f13de</DisplayName>
    </Initiator>
    <Owner>
      <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>
      <DisplayName>OwnerDisplayName</DisplayName>
    </Owner>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2010-11-10T20:48:33.000Z</Initiated>
  </Upload>
  <Upload>
    <Key>my-movie.m2ts</Key>
    <UploadId>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</UploadId>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2010-11-10T20:48:34Z</Initiated>
  </Upload>
</ListMultipartUploadsResult>"#;

    // The same with EncodingType=url, as moto and S3 answer `encoding-type=url`.
    const LIST_UPLOADS_URL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>bucket</Bucket>
  <EncodingType>url</EncodingType>
  <IsTruncated>false</IsTruncated>
  <Upload>
    <Key>dir/a+b%2Bc.txt</Key>
    <UploadId>abc</UploadId>
    <Initiated>not a date</Initiated>
  </Upload>
  <Upload>
    <Key>%FF</Key>
    <UploadId>def</UploadId>
  </Upload>
</ListMultipartUploadsResult>"#;

    // ListParts example of the S3 API reference (trimmed).
    const LIST_PARTS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket>
  <Key>example-object</Key>
  <UploadId>XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA</UploadId>
  <PartNumberMarker>1</PartNumberMarker>
  <NextPartNumberMarker>3</NextPartNumberMarker>
  <MaxParts>2</MaxParts>
  <IsTruncated>true</IsTruncated>
  <Part>
    <PartNumber>2</PartNumber>
    <LastModified>2010-11-10T20:48:34.000Z</LastModified>
    <ETag>"7778aef83f66abc1fa1e8477f296d394"</ETag>
    <Size>10485760</Size>
  </Part>
  <Part>
    <PartNumber>3</PartNumber>
    <LastModified>2010-11-10T20:48:33.000Z</LastModified>
    <ETag>"aaaa18db4cc2f85cedef654fccc4a4x8"</ETag>
    <Size>10485760</Size>
  </Part>
</ListPartsResult>"#;

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
    fn deep_nesting_is_refused_without_recursion() {
        let depth = 100_000;
        let mut doc = String::from("<ListBucketResult>");
        doc.push_str(&"<a>".repeat(depth));
        doc.push_str(&"</a>".repeat(depth));
        doc.push_str("</ListBucketResult>");
        assert_eq!(
            parse_list_objects_v2(doc.as_bytes()),
            Err(XmlError::TooDeep)
        );
    }

    #[test]
    fn error_bodies() {
        let e = parse_error(ERR_NO_SUCH_KEY.as_bytes()).unwrap();
        assert_eq!(
            e,
            S3ErrorBody {
                code: "NoSuchKey".into(),
                message: "The resource you requested does not exist".into(),
                request_id: Some("4442587FB7D0A2F9".into()),
                key: None,
                resource: Some("/mybucket/myfoto.jpg".into()),
            }
        );
        let e = parse_error(ERR_NO_SUCH_BUCKET.as_bytes()).unwrap();
        assert_eq!(e.code, "NoSuchBucket");
        assert_eq!(e.request_id.as_deref(), Some("TX4Y5Z6"));
        let e = parse_error(ERR_SIGNATURE.as_bytes()).unwrap();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert!(e.message.starts_with("The request signature we calculated"));
        let e = parse_error(ERR_ACCESS_DENIED.as_bytes()).unwrap();
        assert_eq!(e.code, "AccessDenied");
        assert_eq!(e.to_string(), "AccessDenied: Access Denied");
        let with_key = "<Error><Code>NoSuchKey</Code><Message>m</Message><Key>a b</Key></Error>";
        assert_eq!(
            parse_error(with_key.as_bytes()).unwrap().key.as_deref(),
            Some("a b")
        );
        assert_eq!(parse_error(LIST_EMPTY.as_bytes()), None);
        assert_eq!(parse_error(b""), None);
        assert_eq!(parse_error(b"<html>502 Bad Gateway</html>"), None);
        assert_eq!(parse_error(b"<Error><Code>X</Code>"), None);
        assert_eq!(parse_error(b"\xff\xff"), None);
    }

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

    // moto 5.2.1's reply (measured: `moto_server` 5.2.1, one part of "hello").
    const COMPLETE_MOTO_521: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<CompleteMultipartUploadResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://bucket1.s3.amazonaws.com/k3</Location><Bucket>bucket1</Bucket><Key>k3</Key><ETag>"62109206880d38a4010a98e11243924a-1"</ETag></CompleteMultipartUploadResponse>"#;

    // MinIO style: Go's encoder writes the quotes as `&#34;`, and checksum elements follow.
    const COMPLETE_MINIO_STYLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://127.0.0.1:9000/bucket/key</Location><Bucket>bucket</Bucket><Key>key</Key><ETag>&#34;3858f62230ac3c915f300c664312c11f-9&#34;</ETag><ChecksumCRC32C>nFp5yA==</ChecksumCRC32C><ChecksumType>COMPOSITE</ChecksumType></CompleteMultipartUploadResult>"#;

    // Ceph RGW style: no XML declaration, an unquoted ETag.
    const COMPLETE_CEPH_STYLE: &str = r#"<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>bucket.example.com/key</Location><Bucket>bucket</Bucket><Key>key</Key><ETag>3858f62230ac3c915f300c664312c11f-9</ETag></CompleteMultipartUploadResult>"#;

    // Garage style: a namespace prefix, the quotes escaped as `&quot;`, an unknown element.
    const COMPLETE_PREFIXED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<s3:CompleteMultipartUploadResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><s3:Location>/bucket/key</s3:Location><s3:Bucket>bucket</s3:Bucket><s3:Key>key</s3:Key><s3:ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</s3:ETag><s3:VersionId>v1</s3:VersionId></s3:CompleteMultipartUploadResult>"#;

    // No namespace, a BOM, keep-alive whitespace, and the query protocol's wrapper.
    const COMPLETE_WRAPPED: &str = "\u{FEFF}  \n<CompleteMultipartUploadResponse><CompleteMultipartUploadResult><ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag></CompleteMultipartUploadResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></CompleteMultipartUploadResponse>";

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
    fn etags_in_every_quoting() {
        for raw in [
            "3858f62230ac3c915f300c664312c11f-9",
            "\"3858f62230ac3c915f300c664312c11f-9\"",
            " \"3858f62230ac3c915f300c664312c11f-9\" ",
            "&quot;3858f62230ac3c915f300c664312c11f-9&quot;",
            "&#34;3858f62230ac3c915f300c664312c11f-9&#34;",
            "&#x22;3858f62230ac3c915f300c664312c11f-9&#x22;",
            "W/\"3858f62230ac3c915f300c664312c11f-9\"",
            "\"3858f62230ac3c915f300c664312c11f-9",
        ] {
            assert_eq!(
                normalize_etag(raw),
                "3858f62230ac3c915f300c664312c11f-9",
                "{raw:?}"
            );
        }
        assert_eq!(normalize_etag("\"\""), "");
        assert_eq!(normalize_etag("\""), "");
        // In XML: `&quot;` is unescaped by the parser, `&amp;quot;` leaves `&quot;` behind.
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
    fn iso8601_dates() {
        assert_eq!(
            parse_iso8601("2009-10-12T17:50:30.000Z"),
            Some(at(1_255_369_830, 0))
        );
        assert_eq!(
            parse_iso8601("2009-10-12T17:50:30Z"),
            Some(at(1_255_369_830, 0))
        );
        assert_eq!(
            parse_iso8601(" 2009-10-12T17:50:30.5Z\n"),
            Some(at(1_255_369_830, 500))
        );
        assert_eq!(
            parse_iso8601("2009-10-12T17:50:30+00:00"),
            Some(at(1_255_369_830, 0))
        );
        assert_eq!(
            parse_iso8601("2009-10-12T17:50:30"),
            Some(at(1_255_369_830, 0))
        );
        for bad in [
            "",
            "garbage",
            "2009-13-12T17:50:30Z",
            "2009-10-12",
            "2009-10-12T25:00:00Z",
            "2009-10-12T17:50:30+02:00",
            "9999999999-10-12T17:50:30Z",
            "+00:00",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
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
