//! User metadata (`x-amz-meta-*`) and the headers that describe an object's content.
//!
//! S3 stores user metadata as HTTP headers, so names are case-insensitive (S3 lower-cases them)
//! and values must be header-safe. Values that are not printable ASCII are stored RFC 2047
//! encoded (`=?UTF-8?B?…?=`), the form AWS itself uses when it returns non-ASCII metadata, and are
//! decoded on the way back, so any UTF-8 string round-trips.
//!
//! [`Metadata`] keys are the full lower-case header names (`x-amz-meta-color`), as in the seed
//! connector, where `metadata == headers` for the `x-amz-meta-*` part of the headers.

use std::collections::BTreeMap;

use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::error::{Result, StorageError};

/// The prefix of every user-metadata header.
pub const META_PREFIX: &str = "x-amz-meta-";

/// S3 limits user metadata to 2 KB: the sum of the bytes of every name (without the prefix) and
/// value as sent.
pub const MAX_USER_METADATA_BYTES: usize = 2048;

/// Headers an object keeps across a metadata-only self-copy, a rename's copy and a rewrite:
/// its content headers, and how the server stores it (storage class, server-side encryption).
/// With `x-amz-metadata-directive: REPLACE` S3 forgets them unless they are sent again, and a
/// copy or a PUT without `x-amz-storage-class` / `x-amz-server-side-encryption` puts the
/// object in STANDARD under the bucket's default encryption: a `chmod` of an object in
/// STANDARD_IA, or of one encrypted with its own KMS key, would change what it costs and who
/// can read it. Read from a HEAD (a server that does not report them sends nothing back) and
/// sent again as they came.
pub const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    STORAGE_CLASS_HEADER,
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-bucket-key-enabled",
];

/// The header naming an object's storage class (absent: STANDARD).
pub const STORAGE_CLASS_HEADER: &str = "x-amz-storage-class";

/// A storage class as a HEAD or a listing names it, if it is one other than STANDARD (which
/// S3 leaves out of a HEAD, and a copy gets anyway): the one rule for "no class to keep".
pub fn other_class(named: &str) -> Option<&str> {
    Some(named).filter(|c| !c.is_empty() && *c != "STANDARD")
}

/// How many tags an object has, as a HEAD (or GET) names it; absent: none. Kept with the
/// content headers as a note and never sent: the write that replaces the object asks for the
/// tags themselves (GetObjectTagging) and sends them as [`TAGGING_HEADER`] — a PUT or a
/// multipart upload gives the new object the tags it carries, none if it carries none. A copy
/// keeps the source's tags by itself.
pub const TAG_COUNT_HEADER: &str = "x-amz-tagging-count";

/// The tags a PUT, a multipart upload or a copy gives the object, in URL query form
/// (`k1=v1&k2=v2`, [`TagSet::to_header`]). Among a copy's headers, even empty, it makes the
/// copy's tags these (`x-amz-tagging-directive: REPLACE`) instead of the source's.
pub const TAGGING_HEADER: &str = "x-amz-tagging";

/// Every header read from a HEAD into an object's kept headers: [`KEPT_HEADERS`], sent again
/// as they came, and [`TAG_COUNT_HEADER`], which the write replacing the object turns into
/// its tags.
pub fn headers_kept_from_head() -> impl Iterator<Item = &'static str> {
    KEPT_HEADERS.iter().copied().chain([TAG_COUNT_HEADER])
}

/// The number of tags `headers` (an object's kept headers) say the object has.
pub fn tag_count(headers: &[(String, String)]) -> u64 {
    headers
        .iter()
        .find(|(n, _)| n == TAG_COUNT_HEADER)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The headers of a request that writes an object, from its kept headers: the tag count, a
/// reply's note, left out; an empty tag set, said by leaving the tags out.
pub fn request_headers(
    headers: &[(String, String)],
) -> impl Iterator<Item = (String, String)> + '_ {
    headers
        .iter()
        .filter(|(n, v)| n != TAG_COUNT_HEADER && !(n == TAGGING_HEADER && v.is_empty()))
        .cloned()
}

/// An object's tags (S3 allows 10 a object; keys up to 128 characters, values up to 256), in
/// the order the server listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagSet(pub Vec<(String, String)>);

/// What a tag's key or value keeps unencoded in the `x-amz-tagging` header: the unreserved
/// characters of RFC 3986, as in a query string.
const TAG_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl TagSet {
    /// As the `x-amz-tagging` header: `k1=v1&k2=v2`, each percent-encoded.
    pub fn to_header(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.0 {
            if !out.is_empty() {
                out.push('&');
            }
            out.extend(utf8_percent_encode(k, TAG_ENCODE));
            out.push('=');
            out.extend(utf8_percent_encode(v, TAG_ENCODE));
        }
        out
    }

    /// Read an `x-amz-tagging` header as S3 does (`+` is a space); `None` if it is not
    /// URL query form of UTF-8 text.
    pub fn from_header(value: &str) -> Option<TagSet> {
        let mut tags = Vec::new();
        for pair in value.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| -> Option<String> {
                let s = s.replace('+', " ");
                percent_decode_str(&s)
                    .decode_utf8()
                    .ok()
                    .map(|c| c.into_owned())
            };
            tags.push((decode(k)?, decode(v)?));
        }
        Some(TagSet(tags))
    }

    /// True when there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An object's user metadata: lower-case `x-amz-meta-NAME` → decoded value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// An empty set.
    pub fn new() -> Self {
        Metadata::default()
    }

    /// Look a value up by full header name (`x-amz-meta-color`) or short name (`color`),
    /// case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&full_name(name)).map(String::as_str)
    }

    /// Set a value; `name` may be the full header name or the short one.
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(full_name(name), value.into());
    }

    /// Remove a value; returns it if present.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(&full_name(name))
    }

    /// Iterate `(full header name, value)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no user metadata.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Collect the `x-amz-meta-*` entries of a header list, decoding RFC 2047 values.
    pub fn from_headers<N: AsRef<str>, V: AsRef<str>>(
        headers: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut m = Metadata::new();
        for (name, value) in headers {
            let lower = name.as_ref().to_ascii_lowercase();
            if lower.starts_with(META_PREFIX) && lower.len() > META_PREFIX.len() {
                m.0.insert(lower, decode_value(value.as_ref()));
            }
        }
        m
    }

    /// Validate and encode as request headers (`x-amz-meta-name`, header-safe value).
    ///
    /// Errors: a name that is not an HTTP token, or more than [`MAX_USER_METADATA_BYTES`] in all.
    pub fn to_headers(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(self.0.len());
        let mut total = 0usize;
        for (name, value) in &self.0 {
            let short = &name[META_PREFIX.len()..];
            validate_name(short)?;
            let encoded = encode_value(value);
            total += short.len() + encoded.len();
            out.push((name.clone(), encoded));
        }
        if total > MAX_USER_METADATA_BYTES {
            return Err(StorageError::invalid(
                "metadata",
                format!(
                    "{total} bytes of user metadata; S3 allows at most {MAX_USER_METADATA_BYTES}"
                ),
            ));
        }
        Ok(out)
    }

    /// Bytes this metadata takes against the S3 limit.
    pub fn encoded_size(&self) -> usize {
        self.0
            .iter()
            .map(|(n, v)| n.len() - META_PREFIX.len() + encode_value(v).len())
            .sum()
    }
}

impl<K: AsRef<str>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = Metadata::new();
        for (k, v) in iter {
            m.insert(k.as_ref(), v);
        }
        m
    }
}

fn full_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with(META_PREFIX) {
        lower
    } else {
        format!("{META_PREFIX}{lower}")
    }
}

/// A metadata name must be a non-empty HTTP token (RFC 9110 `tchar`s).
pub fn validate_name(short: &str) -> Result<()> {
    let ok = !short.is_empty()
        && short.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid(
            "metadata name",
            format!("{short:?}: only letters, digits and !#$%&'*+-.^_`|~ are allowed"),
        ))
    }
}

/// Header-safe form of a value: printable ASCII as is (S3 trims surrounding spaces, so a value
/// with them is encoded too), everything else RFC 2047 base64.
pub fn encode_value(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !looks_encoded(value);
    if plain {
        value.to_string()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value.as_bytes())
        )
    }
}

fn looks_encoded(v: &str) -> bool {
    v.starts_with("=?") && v.ends_with("?=")
}

/// Decode an RFC 2047 encoded-word (`=?charset?B|Q?text?=`, UTF-8 or ASCII charsets); anything
/// else, or anything malformed, is returned as it came.
pub fn decode_value(value: &str) -> String {
    decode_encoded_word(value.trim()).unwrap_or_else(|| value.to_string())
}

fn decode_encoded_word(v: &str) -> Option<String> {
    let inner = v.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let charset = parts.next()?.to_ascii_lowercase();
    let encoding = parts.next()?.to_ascii_lowercase();
    let text = parts.next()?;
    if !matches!(charset.as_str(), "utf-8" | "us-ascii" | "utf8") {
        return None;
    }
    let bytes = match encoding.as_str() {
        "b" => base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .ok()?,
        "q" => decode_q(text)?,
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}

fn decode_q(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => {
                out.push(b' ');
                i += 1;
            }
            b'=' => {
                let hex = b.get(i + 1..i + 3)?;
                let s = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(s, 16).ok()?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Content headers of the source, overridden by those given.
pub fn merge_headers(
    base: &[(String, String)],
    over: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = base
        .iter()
        .filter(|(n, _)| !over.iter().any(|(o, _)| o == n))
        .cloned()
        .collect();
    out.extend(over.iter().cloned());
    out
}

/// Content-Type from a key's extension (`application/octet-stream` when unknown).
pub fn guess_content_type(key: &str) -> String {
    mime_guess::from_path(key)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_go_as_a_query_string_and_come_back() {
        let tags = TagSet(vec![
            ("project".into(), "blue & green".into()),
            ("owner".into(), "a=b+c/d é".into()),
            ("empty".into(), String::new()),
            ("~ok-_.".into(), "%20".into()),
        ]);
        let header = tags.to_header();
        assert_eq!(
            header,
            "project=blue%20%26%20green&owner=a%3Db%2Bc%2Fd%20%C3%A9&empty=&~ok-_.=%2520"
        );
        assert_eq!(TagSet::from_header(&header), Some(tags));
        // As S3 reads a query string: `+` is a space, a key alone has the empty value.
        assert_eq!(
            TagSet::from_header("a+b=c+d&e"),
            Some(TagSet(vec![
                ("a b".into(), "c d".into()),
                ("e".into(), String::new())
            ]))
        );
        assert_eq!(TagSet::from_header("bad=%FF"), None);
        assert_eq!(TagSet::default().to_header(), "");
    }

    #[test]
    fn a_write_never_sends_the_tag_count_nor_an_empty_tag_set() {
        let kept = vec![
            ("content-type".to_string(), "text/plain".to_string()),
            (TAG_COUNT_HEADER.to_string(), "2".to_string()),
            (TAGGING_HEADER.to_string(), String::new()),
        ];
        assert_eq!(tag_count(&kept), 2);
        assert_eq!(tag_count(&kept[..1]), 0);
        assert_eq!(request_headers(&kept).collect::<Vec<_>>(), kept[..1]);
        let with_tags = vec![(TAGGING_HEADER.to_string(), "a=1".to_string())];
        assert_eq!(request_headers(&with_tags).collect::<Vec<_>>(), with_tags);
    }

    #[test]
    fn names_are_case_insensitive_and_prefixed() {
        let mut m = Metadata::new();
        m.insert("Color", "red");
        assert_eq!(m.get("x-amz-meta-color"), Some("red"));
        assert_eq!(m.get("COLOR"), Some("red"));
        m.insert("X-Amz-Meta-State", "new");
        assert_eq!(m.iter().count(), 2);
        assert_eq!(m.remove("state"), Some("new".into()));
    }

    #[test]
    fn ascii_values_go_plain_and_others_round_trip() {
        assert_eq!(encode_value("processed"), "processed");
        for v in [
            "héllo wörld",
            "日本語",
            "line\nbreak",
            " padded ",
            "=?x?=",
            "",
            "tab\t",
        ] {
            let e = encode_value(v);
            assert!(e.bytes().all(|b| (0x20..0x7f).contains(&b)), "{e:?}");
            assert_eq!(decode_value(&e), v, "{v:?}");
        }
        assert_eq!(
            decode_value("=?utf-8?Q?caf=C3=A9_au_lait?="),
            "café au lait"
        );
        assert_eq!(decode_value("=?UTF-8?B?!!!?="), "=?UTF-8?B?!!!?=");
        assert_eq!(decode_value("=?"), "=?");
    }

    #[test]
    fn from_headers_picks_only_metadata() {
        let h = [
            ("Content-Type", "text/plain"),
            ("x-amz-meta-color", "red"),
            ("X-AMZ-META-Name", "=?UTF-8?B?w6k=?="),
            ("x-amz-meta-", "ignored"),
        ];
        let m = Metadata::from_headers(h);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("name"), Some("é"));
    }

    #[test]
    fn limits_and_bad_names() {
        let mut m = Metadata::new();
        m.insert("big", "x".repeat(MAX_USER_METADATA_BYTES));
        assert!(m.to_headers().is_err());
        let mut m = Metadata::new();
        m.insert("bad name", "v");
        assert!(m.to_headers().is_err());
        let mut m = Metadata::new();
        m.insert("ok", "v");
        assert_eq!(
            m.to_headers().ok(),
            Some(vec![("x-amz-meta-ok".to_string(), "v".to_string())])
        );
    }

    #[test]
    fn fuzz_values_round_trip_and_names_never_panic() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let count = std::cell::Cell::new(0u64);
        let value = prop_oneof![
            any::<String>(),
            "[ -~]{0,40}",
            "=\\?[a-zA-Z0-9-]{0,8}\\?[bBqQx]?\\?[ -~]{0,20}\\?=",
            Just(" ".repeat(3)),
        ];
        let name = prop_oneof![any::<String>(), "[ -~]{0,20}", "[a-z0-9-]{1,20}"];
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&(value, name), |(v, n)| {
                count.set(count.get() + 1);
                let e = encode_value(&v);
                prop_assert!(
                    e.bytes().all(|b| (0x20..0x7f).contains(&b))
                        && !e.starts_with(' ')
                        && !e.ends_with(' '),
                    "not header-safe: {e:?}"
                );
                prop_assert_eq!(decode_value(&e), v.clone());
                // Whatever a server sends back decodes to something, without panicking.
                let _ = decode_value(&v);
                let mut m = Metadata::new();
                m.insert(&n, v.clone());
                let lower = n.to_ascii_lowercase();
                let ok_name =
                    validate_name(lower.strip_prefix(META_PREFIX).unwrap_or(&lower)).is_ok();
                match m.to_headers() {
                    Ok(h) => {
                        prop_assert!(ok_name, "bad name {n:?} accepted");
                        prop_assert!(m.encoded_size() <= MAX_USER_METADATA_BYTES);
                        let back =
                            Metadata::from_headers(h.iter().map(|(a, b)| (a.as_str(), b.as_str())));
                        prop_assert_eq!(back.get(&n), Some(v.as_str()));
                    }
                    Err(_) => prop_assert!(!ok_name || m.encoded_size() > MAX_USER_METADATA_BYTES),
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("metadata names and values: {} inputs fuzzed", count.get());
    }

    #[test]
    fn merge_prefers_override() {
        let base = vec![
            ("content-type".to_string(), "a".to_string()),
            ("cache-control".into(), "c".into()),
        ];
        let over = vec![("content-type".to_string(), "b".to_string())];
        let m = merge_headers(&base, &over);
        assert_eq!(m.len(), 2);
        assert!(m.contains(&("content-type".into(), "b".into())));
    }
}
