//! AWS Signature Version 4 for S3-style requests.
//!
//! s3mount talks to S3 (and S3-compatible servers) with a plain HTTP client, so it has to sign
//! every request itself. This module turns the parts of a request (method, already-encoded path,
//! raw query pairs, headers, payload hash) into the extra headers that carry the signature:
//! `x-amz-date`, `x-amz-content-sha256`, optionally `x-amz-security-token`, and `authorization`.
//!
//! It knows nothing about any HTTP library: callers pass strings and get strings back. The path is
//! taken exactly as sent on the wire (S3 wants no double encoding and no dot-segment
//! normalisation); the query is passed decoded and encoded/sorted here, and
//! [`canonical_query_string`] gives the caller the very same string to put in the URL.
//!
//! The lower-level steps (canonical request, string to sign, signing key) are exposed inside the
//! crate so the tests can check them one by one against the AWS SigV4 test suite.

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// SHA-256 of the empty string, the payload hash of every bodiless request.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Payload hash value telling S3 the body is not covered by the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The secret material used to sign. `Debug` is deliberately not derived so it cannot be logged.
pub struct SigningCredentials<'a> {
    /// Access key id (goes into the `Credential=` scope in clear).
    pub access_key_id: &'a str,
    /// Secret key the signing key is derived from; never sent.
    pub secret_access_key: &'a str,
    /// Session token of temporary credentials, sent as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
}

/// The parts of an HTTP request that SigV4 covers.
pub struct RequestToSign<'a> {
    /// HTTP method, upper case (`GET`, `PUT`, ...).
    pub method: &'a str,
    /// Path exactly as sent on the wire, already URI-encoded by the caller.
    pub canonical_uri: &'a str,
    /// Raw (decoded) query name/value pairs; the signer encodes and sorts them.
    pub query: &'a [(String, String)],
    /// Headers to sign; must include `host`. Any case; repeated names allowed.
    pub headers: &'a [(String, String)],
    /// Lowercase hex SHA-256 of the body, or [`UNSIGNED_PAYLOAD`].
    pub payload_sha256: &'a str,
}

/// Everything computed while signing; the tests compare each step with the AWS test suite.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SignatureParts {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    pub signature: String,
    pub authorization: String,
}

/// Sign for S3-style services. Returns the headers the caller must ADD to the request, in this
/// order: `x-amz-date`, `x-amz-content-sha256` (= `payload_sha256`), `x-amz-security-token` (only
/// with a session token), `authorization`. The added `x-amz-*` headers are signed too.
///
/// The caller's `headers` must not already carry any of these four; copies there are ignored.
pub fn sign(
    req: &RequestToSign<'_>,
    creds: &SigningCredentials<'_>,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    let amz_date = format_amz_date(time);
    let mut added: Vec<(String, String)> = vec![
        ("x-amz-date".to_string(), amz_date.clone()),
        (
            "x-amz-content-sha256".to_string(),
            req.payload_sha256.to_string(),
        ),
    ];
    if let Some(token) = creds.session_token {
        added.push(("x-amz-security-token".to_string(), token.to_string()));
    }

    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(name, _)| {
            let n = name.trim();
            !(n.eq_ignore_ascii_case("x-amz-date")
                || n.eq_ignore_ascii_case("x-amz-content-sha256")
                || n.eq_ignore_ascii_case("x-amz-security-token")
                || n.eq_ignore_ascii_case("authorization"))
        })
        .cloned()
        .collect();
    headers.extend(added.iter().cloned());

    let full = RequestToSign {
        method: req.method,
        canonical_uri: req.canonical_uri,
        query: req.query,
        headers: &headers,
        payload_sha256: req.payload_sha256,
    };
    let parts = sign_prepared(&full, creds, region, service, &amz_date);
    added.push(("authorization".to_string(), parts.authorization));
    added
}

/// Sign a request whose `headers` already hold everything to be signed, including `x-amz-date`
/// (whose value must equal `amz_date`) and, if wanted, `x-amz-content-sha256` and
/// `x-amz-security-token`. Nothing is added; every step is returned.
pub(crate) fn sign_prepared(
    req: &RequestToSign<'_>,
    creds: &SigningCredentials<'_>,
    region: &str,
    service: &str,
    amz_date: &str,
) -> SignatureParts {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = credential_scope(date, region, service);
    let canonical_request = canonical_request(
        req.method,
        req.canonical_uri,
        req.query,
        req.headers,
        req.payload_sha256,
    );
    let (_, signed_headers) = canonical_headers(req.headers);
    let string_to_sign = string_to_sign(amz_date, &scope, &canonical_request);
    let key = signing_key(creds.secret_access_key, date, region, service);
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    );
    SignatureParts {
        canonical_request,
        string_to_sign,
        signed_headers,
        signature,
        authorization,
    }
}

/// The canonical request: method, URI, query, canonical headers, signed headers, payload hash.
pub(crate) fn canonical_request(
    method: &str,
    canonical_uri: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    payload_sha256: &str,
) -> String {
    let (canonical_headers, signed_headers) = canonical_headers(headers);
    let uri = if canonical_uri.is_empty() {
        "/"
    } else {
        canonical_uri
    };
    format!(
        "{}\n{uri}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_sha256}",
        method.trim().to_ascii_uppercase(),
        canonical_query_string(query),
    )
}

/// Canonical header block (each line `name:value\n`) and the `;`-joined signed header names.
/// Names are lower-cased and trimmed; values trimmed with inner whitespace runs collapsed to one
/// space; repeated names joined with `,` in their original order; sorted by name.
pub(crate) fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        grouped
            .entry(name.trim().to_ascii_lowercase())
            .or_default()
            .push(collapse_whitespace(value));
    }
    let mut block = String::new();
    let mut names: Vec<&str> = Vec::with_capacity(grouped.len());
    for (name, values) in &grouped {
        block.push_str(name);
        block.push(':');
        block.push_str(&values.join(","));
        block.push('\n');
        names.push(name);
    }
    (block, names.join(";"))
}

fn collapse_whitespace(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value
        .split([' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256 of canonical request>`.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// `<yyyymmdd>/<region>/<service>/aws4_request`.
pub(crate) fn credential_scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// HMAC chain `AWS4<secret>` → date → region → service → `aws4_request`.
pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this constructor cannot fail; fall back to a plain
    // hash rather than panic should that ever change.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => Sha256::digest(data).into(),
    }
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What AWS UriEncode leaves as it is: the unreserved `A-Z a-z 0-9 - . _ ~`; every other byte
/// of the UTF-8 text becomes `%XX` with upper-case hex, as `percent-encoding` writes it.
const URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// UriEncode for a path, where `/` separates segments and stays.
const URI_ENCODE_PATH: &AsciiSet = &URI_ENCODE.remove(b'/');

/// AWS UriEncode: unreserved `A-Z a-z 0-9 - . _ ~` kept, every other UTF-8 byte written as `%XX`
/// (uppercase hex); `/` kept unless `encode_slash`.
pub fn uri_encode(input: &str, encode_slash: bool) -> String {
    let set = if encode_slash {
        URI_ENCODE
    } else {
        URI_ENCODE_PATH
    };
    utf8_percent_encode(input, set).to_string()
}

/// `a=1&b=2`: names and values UriEncoded (slash too), sorted by encoded (name, value) — exactly
/// the string that is signed, so the caller should put the same string in the URL.
pub fn canonical_query_string(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(n, v)| (uri_encode(n, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The last second `humantime` can write (9999-12-31T23:59:59Z): RFC 3339 has four-digit
/// years, so later times are clamped to it rather than formatted.
const LAST_FORMATTABLE_SECOND: Duration = Duration::from_secs(253_402_300_799);

/// `%Y%m%dT%H%M%SZ` in UTC: RFC 3339 (`2015-08-30T12:36:00Z`, from humantime) without its
/// separators. Times before 1970 are clamped to the epoch, times after 9999 to its last second.
pub(crate) fn format_amz_date(time: SystemTime) -> String {
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .min(LAST_FORMATTABLE_SECOND);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + since_epoch)
        .to_string()
        .replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    const AK: &str = "AKIDEXAMPLE";
    const SK: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";
    const SCOPE: &str = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// One case of the AWS SigV4 test suite (header-signed variant).
    struct Vector<'a> {
        method: &'a str,
        /// Raw path from request.txt; encoded here with `uri_encode(_, false)`.
        raw_path: &'a str,
        query: Vec<(String, String)>,
        /// Request headers from request.txt; X-Amz-Date is appended as the suite's signer does.
        headers: Vec<(String, String)>,
        token: Option<&'a str>,
        payload: String,
        canonical_request: &'a str,
        signed_headers: &'a str,
        signature: &'a str,
    }

    fn check(v: Vector<'_>) {
        let mut headers = v.headers.clone();
        headers.push(("X-Amz-Date".into(), DATE.into()));
        if let Some(t) = v.token {
            headers.push(("X-Amz-Security-Token".into(), t.into()));
        }
        let uri = uri_encode(v.raw_path, false);
        let req = RequestToSign {
            method: v.method,
            canonical_uri: &uri,
            query: &v.query,
            headers: &headers,
            payload_sha256: &v.payload,
        };
        let creds = SigningCredentials {
            access_key_id: AK,
            secret_access_key: SK,
            session_token: v.token,
        };
        let parts = sign_prepared(&req, &creds, "us-east-1", "service", DATE);
        assert_eq!(parts.canonical_request, v.canonical_request);
        assert_eq!(
            canonical_request(v.method, &uri, &v.query, &headers, &v.payload),
            v.canonical_request
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n{DATE}\n20150830/us-east-1/service/aws4_request\n{}",
            sha256_hex(v.canonical_request.as_bytes())
        );
        assert_eq!(parts.string_to_sign, sts);
        assert_eq!(
            string_to_sign(
                DATE,
                "20150830/us-east-1/service/aws4_request",
                v.canonical_request
            ),
            sts
        );
        assert_eq!(parts.signed_headers, v.signed_headers);
        assert_eq!(parts.signature, v.signature);
        assert_eq!(
            parts.authorization,
            format!(
                "AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders={}, Signature={}",
                v.signed_headers, v.signature
            )
        );
    }

    fn simple(
        method: &'static str,
        raw_path: &'static str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Vector<'static> {
        let mut headers = h(&[("Host", "example.amazonaws.com")]);
        headers.extend(h(extra));
        Vector {
            method,
            raw_path,
            query: h(query),
            headers,
            token: None,
            payload: EMPTY_SHA256.into(),
            canonical_request: "",
            signed_headers: "host;x-amz-date",
            signature: "",
        }
    }

    #[test]
    fn suite_get_vanilla() {
        check(Vector {
            canonical_request: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ..simple("GET", "/", &[], &[])
        });
    }

    #[test]
    fn suite_string_to_sign_get_vanilla() {
        // header-string-to-sign.txt of get-vanilla, verbatim.
        let cr = "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            string_to_sign(DATE, "20150830/us-east-1/service/aws4_request", cr),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
    }

    #[test]
    fn suite_get_vanilla_query_order_key_case() {
        check(Vector {
            canonical_request: "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ..simple("GET", "/", &[("Param2", "value2"), ("Param1", "value1")], &[])
        });
    }

    #[test]
    fn suite_get_vanilla_query_order_encoded() {
        check(Vector {
            canonical_request: "GET\n/\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
            ..simple(
                "GET",
                "/",
                &[("Param-3", "Value3"), ("Param", "Value2"), ("\u{1234}", "Value1")],
                &[],
            )
        });
    }

    #[test]
    fn suite_get_vanilla_query_unreserved() {
        let u = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let cr = format!("GET\n/\n{u}={u}\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        check(Vector {
            canonical_request: &cr,
            signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
            ..simple("GET", "/", &[(u, u)], &[])
        });
    }

    #[test]
    fn suite_get_vanilla_utf8_query() {
        check(Vector {
            canonical_request: "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
            ..simple("GET", "/", &[("\u{1234}", "bar")], &[])
        });
    }

    #[test]
    fn suite_get_header_value_trim() {
        check(Vector {
            canonical_request: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signed_headers: "host;my-header1;my-header2;x-amz-date",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
            ..simple(
                "GET",
                "/",
                &[],
                &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            )
        });
    }

    #[test]
    fn suite_get_header_key_duplicate() {
        check(Vector {
            canonical_request: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
            ..simple(
                "GET",
                "/",
                &[],
                &[
                    ("My-Header1", "value2"),
                    ("My-Header1", "value2"),
                    ("My-Header1", "value1"),
                ],
            )
        });
    }

    #[test]
    fn suite_get_header_value_order() {
        check(Vector {
            canonical_request: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
            ..simple(
                "GET",
                "/",
                &[],
                &[
                    ("My-Header1", "value4"),
                    ("My-Header1", "value1"),
                    ("My-Header1", "value3"),
                    ("My-Header1", "value2"),
                ],
            )
        });
    }

    #[test]
    fn suite_get_header_value_multiline() {
        check(Vector {
            canonical_request: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1 value2 value3\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd",
            ..simple(
                "GET",
                "/",
                &[],
                &[("My-Header1", "value1\n  value2\n     value3")],
            )
        });
    }

    #[test]
    fn suite_get_unreserved() {
        check(Vector {
            canonical_request: "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
            ..simple(
                "GET",
                "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                &[],
                &[],
            )
        });
    }

    #[test]
    fn suite_get_utf8() {
        check(Vector {
            canonical_request: "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            ..simple("GET", "/\u{1234}", &[], &[])
        });
    }

    #[test]
    fn suite_get_space_unnormalized() {
        check(Vector {
            canonical_request: "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
            ..simple("GET", "/example space/", &[], &[])
        });
    }

    #[test]
    fn suite_unnormalized_paths_kept_verbatim() {
        check(Vector {
            canonical_request: "GET\n/./\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "68714168e6557f8f2de0ef956fc24dc2593a4bd2961f8df51898d8a134695145",
            ..simple("GET", "/./", &[], &[])
        });
        check(Vector {
            canonical_request: "GET\n//example//\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5",
            ..simple("GET", "//example//", &[], &[])
        });
    }

    #[test]
    fn suite_post_vanilla_query_and_header_cases() {
        check(Vector {
            canonical_request: "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
            ..simple("POST", "/", &[("Param1", "value1")], &[])
        });
        check(Vector {
            canonical_request: "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
            ..simple("POST", "/", &[], &[("My-Header1", "VALUE1")])
        });
        check(Vector {
            canonical_request: "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
            ..simple("POST", "/", &[], &[("My-Header1", "value1")])
        });
    }

    #[test]
    fn suite_post_x_www_form_urlencoded() {
        let body = b"Param1=value1";
        let payload = sha256_hex(body);
        assert_eq!(
            payload,
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        let mut v = simple(
            "POST",
            "/",
            &[],
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Content-Length", "13"),
            ],
        );
        v.headers
            .push(("x-amz-content-sha256".into(), payload.clone()));
        check(Vector {
            canonical_request: "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nx-amz-date:20150830T123600Z\n\ncontent-length;content-type;host;x-amz-content-sha256;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            signed_headers: "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
            signature: "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
            payload,
            ..v
        });
    }

    #[test]
    fn suite_session_tokens() {
        check(Vector {
            canonical_request: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\n\nhost;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signed_headers: "host;x-amz-date;x-amz-security-token",
            signature: "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
            token: Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
            ..simple("GET", "/", &[], &[])
        });
        let sts = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        let cr = format!("POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{sts}\n\nhost;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        check(Vector {
            canonical_request: &cr,
            signed_headers: "host;x-amz-date;x-amz-security-token",
            signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
            token: Some(sts),
            ..simple("POST", "/", &[], &[])
        });
    }

    #[test]
    fn signing_key_matches_aws_documentation() {
        // "Derive a signing key" example of the SigV4 documentation.
        let key = signing_key(SK, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex::encode(key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    fn s3_creds() -> SigningCredentials<'static> {
        SigningCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            session_token: None,
        }
    }

    fn may_24_2013() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    #[test]
    fn s3_documentation_get_object_example() {
        let headers = h(&[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
        ]);
        let req = RequestToSign {
            method: "GET",
            canonical_uri: "/test.txt",
            query: &[],
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        };
        let added = sign(&req, &s3_creds(), "us-east-1", "s3", may_24_2013());
        assert_eq!(
            added,
            h(&[
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                ),
            ])
        );
        // The documented intermediate steps as well.
        let mut all = headers.clone();
        all.extend(added.iter().take(2).cloned());
        let cr = canonical_request("GET", "/test.txt", &[], &all, EMPTY_SHA256);
        assert_eq!(cr, "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(
            string_to_sign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request", &cr),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
    }

    #[test]
    fn s3_documentation_list_objects_example() {
        // GET /?max-keys=2&prefix=J on examplebucket, from the same documentation page.
        let headers = h(&[("Host", "examplebucket.s3.amazonaws.com")]);
        let query = h(&[("prefix", "J"), ("max-keys", "2")]);
        assert_eq!(canonical_query_string(&query), "max-keys=2&prefix=J");
        let req = RequestToSign {
            method: "GET",
            canonical_uri: "/",
            query: &query,
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        };
        let added = sign(&req, &s3_creds(), "us-east-1", "s3", may_24_2013());
        let auth = added
            .iter()
            .find(|(n, _)| n == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            auth,
            Some("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
        );
    }

    #[test]
    fn sign_adds_session_token_and_ignores_caller_copies() {
        let creds = SigningCredentials {
            session_token: Some("tok en"),
            ..s3_creds()
        };
        let headers = h(&[
            ("Host", "b.s3.amazonaws.com"),
            ("X-Amz-Date", "19990101T000000Z"),
        ]);
        let req = RequestToSign {
            method: "PUT",
            canonical_uri: "/k",
            query: &[],
            headers: &headers,
            payload_sha256: UNSIGNED_PAYLOAD,
        };
        let added = sign(&req, &creds, "eu-west-1", "s3", may_24_2013());
        let names: Vec<&str> = added.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-amz-date",
                "x-amz-content-sha256",
                "x-amz-security-token",
                "authorization"
            ]
        );
        assert_eq!(added[1].1, UNSIGNED_PAYLOAD);
        assert!(added[3]
            .1
            .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
        assert!(added[3].1.contains("/20130524/eu-west-1/s3/aws4_request"));
    }

    #[test]
    fn uri_encode_cases() {
        assert_eq!(uri_encode("a b", true), "a%20b");
        assert_eq!(uri_encode("a+b", true), "a%2Bb");
        assert_eq!(uri_encode("100%", true), "100%25");
        assert_eq!(uri_encode("~user-._", true), "~user-._");
        assert_eq!(uri_encode("é€😀", true), "%C3%A9%E2%82%AC%F0%9F%98%80");
        assert_eq!(uri_encode("dir/sub/f", false), "dir/sub/f");
        assert_eq!(uri_encode("dir/sub/f", true), "dir%2Fsub%2Ff");
        assert_eq!(
            uri_encode("*?#[]=&$:@,;'!()\"", true),
            "%2A%3F%23%5B%5D%3D%26%24%3A%40%2C%3B%27%21%28%29%22"
        );
        assert_eq!(uri_encode("", false), "");
        assert_eq!(uri_encode("\0\n", false), "%00%0A");
    }

    #[test]
    fn canonical_query_string_sorting_and_empty_values() {
        let q = h(&[
            ("uploadId", "a/b+c"),
            ("partNumber", "2"),
            ("acl", ""),
            ("a", "2"),
            ("a", "1"),
        ]);
        assert_eq!(
            canonical_query_string(&q),
            "a=1&a=2&acl=&partNumber=2&uploadId=a%2Fb%2Bc"
        );
        assert_eq!(canonical_query_string(&[]), "");
    }

    #[test]
    fn amz_date_formatting() {
        assert_eq!(format_amz_date(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            format_amz_date(UNIX_EPOCH + Duration::from_secs(1_440_938_160)),
            DATE
        );
        // Leap day and end of year.
        assert_eq!(
            format_amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert_eq!(
            format_amz_date(UNIX_EPOCH + Duration::from_secs(1_735_689_599)),
            "20241231T235959Z"
        );
        assert_eq!(
            format_amz_date(UNIX_EPOCH - Duration::from_secs(10)),
            "19700101T000000Z"
        );
        // Far future: no panic, still well formed.
        let far = format_amz_date(
            UNIX_EPOCH
                .checked_add(Duration::from_secs(1 << 40))
                .unwrap_or(UNIX_EPOCH),
        );
        assert!(far.ends_with('Z'));
    }

    #[test]
    fn amz_date_clamps_after_year_9999() {
        let last = UNIX_EPOCH + LAST_FORMATTABLE_SECOND;
        assert_eq!(format_amz_date(last), "99991231T235959Z");
        assert_eq!(
            format_amz_date(last + Duration::from_secs(1 << 40)),
            "99991231T235959Z"
        );
    }

    #[test]
    fn uri_encode_round_trips_and_keeps_only_unreserved() {
        use proptest::prelude::*;
        use proptest::test_runner::TestRunner;
        TestRunner::default()
            .run(&(any::<String>(), any::<bool>()), |(s, slash)| {
                let encoded = uri_encode(&s, slash);
                let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8();
                prop_assert_eq!(decoded.as_deref(), Ok(s.as_str()));
                let plain = encoded.replace('%', "");
                prop_assert!(plain.bytes().all(|b| b.is_ascii_alphanumeric()
                    || b"-._~".contains(&b)
                    || (b == b'/' && !slash)));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn sha256_hex_of_empty_is_constant() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }
}
