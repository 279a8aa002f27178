//! The XML under S3's replies, on top of quick-xml: a tiny element tree and the helpers every
//! reply's parser shares. Each reply's own parser lives with its request, in
//! `super::requests`.
//!
//! Replies are first read into a tiny element tree (`Node`) and then picked apart by local
//! name. The parsers are tolerant of what real servers write, not credulous:
//!
//! - **Root names**: `…Result` as AWS, MinIO, Ceph and Garage write it, `…Response` as moto
//!   5.2.1 writes CompleteMultipartUpload and ListParts, and a `…Response` wrapping the
//!   `…Result` (the query-protocol shape): `select_root`. Any other root is refused.
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
//!   such a body is the error it carries ([`ReplyError::S3`]), never a success ([`parse_reply`],
//!   `error_or_tree`).
//!
//! What a caller needs is still required: a reply without it (no `UploadId`, no `Key` in a
//! listing entry, a number that is not one) is an error, never a default. Text is kept exactly
//! (object keys may start or end with spaces); numbers and booleans are trimmed before parsing.
//!
//! Everything here reads bytes from the network, so nothing may panic: no `unwrap`, no indexing
//! that can go out of range, and element nesting is capped so neither building nor dropping the
//! tree can recurse without bound. Bad documents become an [`XmlError`] naming what is wrong.
//!
//! Request bodies are escaped here too (`escape_text`), so that any key S3 can store can also
//! be deleted.

use percent_encoding::percent_decode_str;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::time::SystemTime;

// The reply types, at the paths they had when their parsers lived here.
pub use super::types::{
    CopyResult, DeleteResult, ListPage, ListedObject, ListedPart, ListedUpload, PartsPage,
    UploadsPage,
};

/// Deepest element nesting accepted; real S3 replies are at most 3 levels deep.
const MAX_DEPTH: usize = 32;
/// Longest excerpt of a bad value quoted in an error message.
const MAX_QUOTED: usize = 64;
/// The S3 namespace of request bodies.
pub(crate) const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
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

// ---------------------------------------------------------------------------------------------
// A minimal element tree.

#[derive(Debug, Default)]
pub(crate) struct Node {
    /// Local name (namespace prefix dropped).
    pub(crate) name: String,
    /// Concatenated text and CDATA directly inside this element.
    pub(crate) text: String,
    pub(crate) children: Vec<Node>,
}

impl Node {
    /// The first child element named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child element named `name`.
    pub(crate) fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child element named `name`.
    pub(crate) fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The text of the child `name`, which the reply must have.
    pub(crate) fn required(&self, name: &'static str) -> Result<&str, XmlError> {
        self.text_of(name).ok_or(XmlError::Missing(name))
    }
}

/// A bad value, cut short for an error message.
pub(crate) fn quote(value: &str) -> String {
    value.chars().take(MAX_QUOTED).collect()
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

fn utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(bytes).map_err(|_| XmlError::Malformed("invalid UTF-8".into()))
}

/// Parse a whole document into its root element.
pub(crate) fn parse_tree(body: &[u8]) -> Result<Node, XmlError> {
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
pub(crate) fn select_root(mut root: Node, names: &[&'static str]) -> Result<Node, XmlError> {
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

/// Parse a document whose root must be `expected` (or its `…Response` form).
pub(crate) fn parse_root(body: &[u8], expected: &'static str) -> Result<Node, XmlError> {
    select_root(parse_tree(body)?, &[expected])
}

/// A number element (trimmed) of type `T` (`u64`, `u32`); anything else, or a number that does
/// not fit, is [`XmlError::BadNumber`].
pub(crate) fn parse_number<T: std::str::FromStr>(
    element: &'static str,
    value: &str,
) -> Result<T, XmlError> {
    value.trim().parse::<T>().map_err(|_| XmlError::BadNumber {
        element,
        value: quote(value),
    })
}

/// `true`/`false` (any case, trimmed).
pub(crate) fn parse_bool(element: &'static str, value: &str) -> Result<bool, XmlError> {
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
/// weak `W/` prefix and the quotes (any of `ETAG_QUOTES`, each end on its own) go.
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

/// The `<ETag>` child, normalized; `None` when absent or empty.
pub(crate) fn etag_of(node: &Node) -> Option<String> {
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

/// `IsTruncated` of a listing page (absent: not truncated).
pub(crate) fn is_truncated(root: &Node) -> Result<bool, XmlError> {
    match root.text_of("IsTruncated") {
        Some(v) => parse_bool("IsTruncated", v),
        None => Ok(false),
    }
}

/// Does the listing say `<EncodingType>url</EncodingType>` (keys url-encoded)?
pub(crate) fn url_encoded(root: &Node) -> bool {
    root.text_of("EncodingType")
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("url"))
}

/// A key of a listing: url-decoded when `url`; `Err` holds a lossy rendering of a key that is
/// not UTF-8 once decoded.
pub(crate) fn listed_key(url: bool, raw: &str) -> Result<String, String> {
    if url {
        url_decode(raw)
    } else {
        Ok(raw.to_string())
    }
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
// Error bodies, and 2xx replies that carry one.

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

/// The reply's tree, or the error its `<Error>` body reports (S3 sends one with `200 OK` when a
/// long request fails after the status line went out).
pub(crate) fn error_or_tree(body: &[u8]) -> Result<Node, ReplyError> {
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

// ---------------------------------------------------------------------------------------------
// Request bodies.

/// Can XML 1.0 carry this character?
pub(crate) fn xml_char_ok(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Escape text content. `\r` is written as a character reference so the server's line-end
/// normalisation cannot turn it into `\n`. Characters XML 1.0 cannot carry are an error.
pub(crate) fn escape_text(out: &mut String, s: &str) -> Result<(), ()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::fixtures::*;

    /// A root that nothing reads, for the tree's own tests.
    fn tree(doc: &str) -> Result<Node, XmlError> {
        parse_root(doc.as_bytes(), "ListBucketResult")
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let depth = 100_000;
        let mut doc = String::from("<ListBucketResult>");
        doc.push_str(&"<a>".repeat(depth));
        doc.push_str(&"</a>".repeat(depth));
        doc.push_str("</ListBucketResult>");
        assert!(matches!(tree(&doc), Err(XmlError::TooDeep)));
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
    }

    #[test]
    fn trees_refuse_what_is_not_one_document() {
        for bad in [
            "<ListBucketResult><Contents></ListBucketResult>",
            "",
            "   \n ",
            "<Foo/>",
            "<ListBucketResult><Name>&bogus;</Name></ListBucketResult>",
            "<ListBucketResult/><ListBucketResult/>",
            "text only",
        ] {
            assert!(tree(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            tree("<Foo/>").err().map(|e| e.to_string()).as_deref(),
            Some("expected root element <ListBucketResult>, found <Foo>")
        );
        let root = tree(
            "\u{FEFF} <ListBucketResult><a>1</a><a>2</a><b><![CDATA[<x>]]></b></ListBucketResult>",
        )
        .unwrap();
        assert_eq!(root.children("a").count(), 2);
        assert_eq!(root.text_of("b"), Some("<x>"));
        assert_eq!(root.required("c").err(), Some(XmlError::Missing("c")));
    }
}
