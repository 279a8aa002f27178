//! Extended attributes other than `user.x-amz-meta-*`, kept in one metadata entry as s3fs
//! keeps them, so that each reads the other's: `x-amz-meta-xattr` holds the percent-encoded
//! JSON object `{"NAME":"BASE64(VALUE)",...}`, names in byte order.
//!
//! s3fs's reader splits the object at every `,` and each pair at its last `:` without JSON
//! escapes, so a name with a `,`, a `"`, a `\` or a control character cannot be stored where
//! s3fs would read it back: [`storable_name`] refuses those. Reading is as lenient as s3fs's:
//! a pair that does not parse is skipped, not an error.

use std::collections::BTreeMap;

use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The short metadata name (`x-amz-meta-xattr`).
pub const ENTRY: &str = "xattr";

/// Bytes left as they are in the entry: what URLs leave unreserved.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Names and values, by name.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// True if `name` can be stored so that s3fs reads it back (see the module documentation).
pub fn storable_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| matches!(c, ',' | '"' | '\\') || c.is_control())
}

/// The attributes an entry's value holds (an empty set for one that does not parse).
pub fn parse(value: &str) -> Xattrs {
    let json = percent_decode_str(value).decode_utf8_lossy();
    let mut out = Xattrs::new();
    let (Some(start), Some(end)) = (json.find('{'), json.rfind('}')) else {
        return out;
    };
    if end <= start {
        return out;
    }
    for pair in json[start + 1..end].split(',') {
        let Some((name, value)) = pair.rsplit_once(':') else {
            continue;
        };
        let (Some(name), Some(value)) = (unquote(name), unquote(value)) else {
            continue;
        };
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(value) {
            out.insert(name.to_string(), bytes);
        }
    }
    out
}

/// The entry's value for `xattrs`; `None` when there are none (the entry is then removed).
pub fn render(xattrs: &Xattrs) -> Option<String> {
    if xattrs.is_empty() {
        return None;
    }
    let pairs: Vec<String> = xattrs
        .iter()
        .map(|(name, value)| {
            let value = base64::engine::general_purpose::STANDARD.encode(value);
            format!("\"{name}\":\"{value}\"")
        })
        .collect();
    let json = format!("{{{}}}", pairs.join(","));
    Some(utf8_percent_encode(&json, KEEP).to_string())
}

fn unquote(s: &str) -> Option<&str> {
    s.trim().strip_prefix('"')?.strip_suffix('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &[u8])]) -> Xattrs {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let x = set(&[
            ("key1", b"value1"),
            ("user.mime_type", b"text/plain"),
            ("name:with:colons", b"\0\xff binary"),
            ("trusted.x", b""),
        ]);
        let v = render(&x).unwrap();
        assert!(v.bytes().all(|b| b.is_ascii_graphic()), "{v}");
        assert_eq!(parse(&v), x);
        assert_eq!(render(&Xattrs::new()), None);
    }

    #[test]
    fn what_s3fs_writes_is_read() {
        // {"key":"value"} as s3fs's own tests send it, and as s3fs writes two names.
        assert_eq!(
            parse("%7B%22key%22%3A%22dmFsdWU%3D%22%7D"),
            set(&[("key", b"value")])
        );
        assert_eq!(
            parse("%7B%221234%22%3A%22NTY3OA%3D%3D%22%2C%22foo%22%3A%22YmFy%22%7D"),
            set(&[("1234", b"5678"), ("foo", b"bar")])
        );
        // An empty object (s3fs writes `{}` after the last removal).
        assert_eq!(parse("%7B%7D"), Xattrs::new());
    }

    #[test]
    fn what_does_not_parse_is_skipped() {
        for bad in ["", "not json", "}{", "%7B%22a%22%7D", "{\"a\":\"!!\"}"] {
            assert_eq!(parse(bad), Xattrs::new(), "{bad:?}");
        }
        assert_eq!(
            parse("{\"a\":\"YQ==\",broken,\"b\":\"Yg==\"}"),
            set(&[("a", b"a"), ("b", b"b")])
        );
    }

    #[test]
    fn names_s3fs_could_not_read_back_are_refused() {
        for ok in ["key1", "user.a b", "trusted.x:y", "ü"] {
            assert!(storable_name(ok), "{ok:?}");
        }
        for bad in ["", "a,b", "a\"b", "a\\b", "a\nb"] {
            assert!(!storable_name(bad), "{bad:?}");
        }
    }
}
