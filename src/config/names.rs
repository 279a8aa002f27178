//! What a region, a bucket and a key prefix may look like: checked once here, with a message
//! that says what is wrong, so a bad name never reaches the server.

use std::net::Ipv4Addr;

/// Region names as AWS spells them (`us-west-2`): lower-case letters, digits and `-`.
pub(super) fn validate_region(r: &str) -> Result<(), String> {
    let ok = r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !r.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("'{r}' is not a region name like us-west-2"))
    }
}

/// Bucket-name check, deliberately lenient: the legacy rules S3 still honours for old buckets
/// (us-east-1 allowed 3-255 characters of letters — upper case too —, digits, `.`, `-` and `_`;
/// the seed's own example uses `ZZZZZZZ`), so any bucket that can exist is accepted. What could
/// never be a bucket, or would break the request path (empty, `/`, whitespace, control or
/// other characters), is refused here with a clear message instead of a 400 from the server.
/// Names outside the strict DNS rules are reached path-style; see [`is_dns_compatible_bucket`].
pub(super) fn validate_bucket(b: &str) -> Result<(), String> {
    let problem = if b.is_empty() {
        "is empty"
    } else if let Some(c) = b
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "{b:?} is not a valid bucket name: it contains {c:?} (allowed: letters, digits, '.', '-', '_')"
        ));
    } else if b.len() < 3 || b.len() > 255 {
        "must be 3 to 255 characters long"
    } else {
        return Ok(());
    };
    Err(format!("'{b}' is not a valid bucket name: it {problem}"))
}

/// True if `b` follows today's strict (DNS-compatible) bucket-name rules, so it can be used as
/// a host-name label (virtual-hosted addressing): 3-63 characters of lower-case letters,
/// digits, `.` and `-`, starting and ending with a letter or digit, no `..`, not an IPv4
/// address.
pub fn is_dns_compatible_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !b.contains("..")
        && b.parse::<Ipv4Addr>().is_err()
}

/// Rejects prefixes that would escape or confuse the key namespace, then
/// normalises to "" or "dir/" (no leading '/').
pub(super) fn normalize_prefix(p: &str) -> Result<String, String> {
    if p.contains('\0') {
        return Err("contains a NUL character".to_string());
    }
    if p.contains("//") {
        return Err(format!("'{p}' contains '//' (an empty path segment)"));
    }
    let p = p.strip_prefix('/').unwrap_or(p);
    // S3 keeps `.` and `..` in keys as they are (`a/../pre/` is not `pre/`), and a mount hides
    // keys with such a segment, as no file name can be one: what a mount of this prefix wrote
    // would be invisible to a mount of the bucket.
    if let Some(dots) = p.split('/').find(|s| matches!(*s, "." | "..")) {
        return Err(format!(
            "'{p}' has a '{dots}' segment, which S3 keeps in the keys as it is (a mount of the bucket hides such keys); name the prefix as the keys spell it"
        ));
    }
    if p.is_empty() || p.ends_with('/') {
        Ok(p.to_string())
    } else {
        Ok(format!("{p}/"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Overrides;
    use super::*;

    #[test]
    fn bucket_names() {
        // The seed's own example: a legacy (upper-case) name is accepted.
        let c = load_file(
            "s3:\n  access_key_id: a\n  secret_access_key: b\n  default_bucket: \"ZZZZZZZ\"\n",
        )
        .unwrap();
        assert_eq!(c.default_bucket.as_deref(), Some("ZZZZZZZ"));
        let e =
            err_of("s3:\n  access_key_id: a\n  secret_access_key: b\n  default_bucket: \"a/b\"\n");
        assert!(
            e.contains(
                "field `s3.default_bucket`: \"a/b\" is not a valid bucket name: it contains '/'"
            ),
            "{e}"
        );
        let (_d, p) = seed(&full(""));
        let ov = Overrides {
            bucket: Some("my bucket".into()),
            ..Default::default()
        };
        let e = load_with(Some(&p), &[], ov, None).unwrap_err().to_string();
        assert!(
            e.starts_with("command line: field `--bucket`: \"my bucket\""),
            "{e}"
        );
        for bad in [
            "",
            "ab",
            "a/b",
            "a b",
            "tab\tb",
            "new\nline",
            "nul\0x",
            "del\x7f",
            "caf\u{e9}",
            "a:b",
            "a?b",
            &"a".repeat(256),
        ] {
            assert!(validate_bucket(bad).is_err(), "{bad:?}");
        }
        for good in [
            "abc",
            "com.prometheus.cgtest-1",
            "my-bucket-01",
            "ZZZZZZZ",
            "a_b_c",
            "My.Legacy_Bucket",
            &"a".repeat(255),
        ] {
            assert!(validate_bucket(good).is_ok(), "{good}");
        }
        assert!(is_dns_compatible_bucket("my-bucket-01"));
        for not_dns in [
            "ZZZZZZZ",
            "a_b",
            "-abc",
            "a..b",
            "192.168.1.1",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_compatible_bucket(not_dns), "{not_dns}");
        }
    }

    #[test]
    fn prefix_rules() {
        assert_eq!(normalize_prefix("/a/b").unwrap(), "a/b/");
        assert_eq!(normalize_prefix("a/").unwrap(), "a/");
        assert_eq!(normalize_prefix("/").unwrap(), "");
        for bad in [
            "a//b", "../x", "/../x", "..", "a\0b", "a/../pre", "./pre", "pre/.", "pre/./x/", "x/..",
        ] {
            assert!(normalize_prefix(bad).is_err(), "{bad:?}");
        }
        for good in ["a.b/", "..a/", "a../", ".hidden/x", "a/.../"] {
            assert!(normalize_prefix(good).is_ok(), "{good:?}");
        }
        let e = err_of(&full("  prefix: \"a/../pre\"\n"));
        assert!(
            e.contains("field `s3.prefix`: 'a/../pre' has a '..' segment"),
            "{e}"
        );
        let e = err_of(&full("  prefix: \"a//b\"\n"));
        assert!(e.contains("field `s3.prefix`: 'a//b' contains '//'"), "{e}");
    }
}
