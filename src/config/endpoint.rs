//! Where requests go: the [`Endpoint`] parsed from a host or URL, the region that an AWS
//! endpoint name implies, and how a bucket is put into request URLs ([`AddressingStyle`]).

use std::fmt;
use std::net::Ipv6Addr;

/// Region used when nothing names one (the AWS default as well).
pub(super) const DEFAULT_REGION: &str = "us-east-1";

/// How the bucket is put into request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressingStyle {
    /// Decide per bucket, see [`Config::addressing_for`](super::Config::addressing_for).
    Auto,
    /// `https://endpoint/bucket/key`.
    Path,
    /// `https://bucket.endpoint/key`.
    Virtual,
}

impl std::str::FromStr for AddressingStyle {
    type Err = String;

    /// Parses `auto`, `path` or `virtual` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AddressingStyle::Auto),
            "path" => Ok(AddressingStyle::Path),
            "virtual" => Ok(AddressingStyle::Virtual),
            _ => Err(format!("'{s}' is not one of path, virtual, auto")),
        }
    }
}

/// Parsed endpoint.
///
/// `host` is lower-case; an IPv6 address is kept in brackets (`[::1]`) so the
/// field can be pasted into a URL or a `Host` header as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `true` for https.
    pub tls: bool,
    /// Host name, IPv4 address or bracketed IPv6 address.
    pub host: String,
    /// Explicit port, if one was given.
    pub port: Option<u16>,
}

impl Endpoint {
    /// Parses `host`, `host:port`, `http://host:port`, `https://host[/]` or a
    /// bracketed IPv6 address like `[::1]:9000`.
    ///
    /// `tls` is the separate `tls` setting: it picks the scheme when `s` has
    /// none (default https), and it must agree with a scheme that is given.
    /// The error text explains what is wrong and never echoes user info.
    pub fn parse(s: &str, tls: Option<bool>) -> Result<Endpoint, String> {
        const HINT: &str = "give a host or a URL like https://host:port";
        if s.is_empty() {
            return Err(format!("is empty; {HINT}"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{s:?} contains spaces or control characters; {HINT}"
            ));
        }
        let (scheme_tls, rest) = match s.find("://") {
            Some(i) => match s[..i].to_ascii_lowercase().as_str() {
                "https" => (Some(true), &s[i + 3..]),
                "http" => (Some(false), &s[i + 3..]),
                other => {
                    return Err(format!(
                        "'{s}' has scheme '{other}'; only http:// and https:// are supported"
                    ))
                }
            },
            None => (None, s),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        // Check user info first, and never echo it: it may hold a password.
        if authority.contains('@') {
            return Err(
                "contains user credentials (user@host); put them in access_key_id/secret_access_key instead"
                    .to_string(),
            );
        }
        if tail.contains('?') {
            return Err(format!("'{s}' has a query string; {HINT}"));
        }
        if tail.contains('#') {
            return Err(format!("'{s}' has a fragment; {HINT}"));
        }
        if !tail.is_empty() && tail != "/" {
            return Err(format!("'{s}' has a path; {HINT}"));
        }
        if authority.is_empty() {
            return Err(format!("'{s}' has no host; {HINT}"));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let close = r
                .find(']')
                .ok_or_else(|| format!("'{s}' has an unclosed '['; write IPv6 like [::1]:9000"))?;
            let addr = &r[..close];
            if addr.parse::<Ipv6Addr>().is_err() {
                return Err(format!("'{s}': '{addr}' is not a valid IPv6 address"));
            }
            let after = &r[close + 1..];
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    format!("'{s}' has junk after the IPv6 address; write it like [::1]:9000")
                })?),
            };
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((_, p)) if p.contains(':') => {
                    return Err(format!(
                        "'{s}' has several ':'; write IPv6 addresses in brackets like [::1]:9000"
                    ))
                }
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if !valid_hostname(host) {
                return Err(format!(
                    "'{s}': '{host}' is not a valid host name (letters, digits, '-', '.'); {HINT}"
                ));
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                // `parse` accepts a leading '+', which is not a URL port.
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => {
                    return Err(format!(
                        "'{s}' has a bad port '{p}'; expected a number 1-65535"
                    ))
                }
            },
        };
        let tls = match (scheme_tls, tls) {
            (Some(scheme), Some(setting)) if scheme != setting => {
                return Err(format!(
                    "'{s}' uses {} but tls is {setting}; drop the scheme or make them agree",
                    if scheme { "https://" } else { "http://" }
                ))
            }
            (Some(scheme), _) => scheme,
            (None, setting) => setting.unwrap_or(true),
        };
        Ok(Endpoint { tls, host, port })
    }

    /// True for Amazon's own endpoints (`*.amazonaws.com`, `*.amazonaws.com.cn`).
    pub fn is_aws(&self) -> bool {
        self.aws_prefix().is_some()
    }

    /// The region encoded in an AWS endpoint name, e.g. `us-west-2` for
    /// `s3-us-west-2.amazonaws.com` or `s3.dualstack.ap-south-1.amazonaws.com`;
    /// `us-east-1` for the global `s3.amazonaws.com` / `s3-external-1`.
    /// `None` for other endpoints.
    pub fn region_hint(&self) -> Option<String> {
        let prefix = self.aws_prefix()?;
        let labels: Vec<&str> = prefix.split('.').collect();
        // Find the "s3" label; anything before it (a bucket name in a
        // virtual-hosted endpoint) is irrelevant.
        let i = labels.iter().position(|l| l.starts_with("s3"))?;
        let label = labels[i];
        if label == "s3-external-1" {
            return Some(DEFAULT_REGION.to_string());
        }
        // Legacy dash form: s3-us-west-2, s3-fips-us-gov-west-1 is not a thing,
        // so stripping "s3-" and checking the shape is enough.
        if let Some(r) = label.strip_prefix("s3-") {
            if looks_like_region(r) {
                return Some(r.to_string());
            }
        }
        // Dot form: s3[-fips].[dualstack.]REGION
        let next = labels[i + 1..].iter().find(|l| **l != "dualstack");
        match next {
            Some(r) if looks_like_region(r) => Some(r.to_string()),
            // Bare s3.amazonaws.com is the global endpoint in us-east-1; the
            // China partition has no such default.
            None if label == "s3" && !self.host.ends_with(".cn") => {
                Some(DEFAULT_REGION.to_string())
            }
            _ => None,
        }
    }

    /// True when the host is this machine's loopback interface (`localhost`, `127.0.0.0/8`,
    /// `[::1]`): no network lies between the client and the server.
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// `scheme://host[:port]`, the default port for the scheme omitted.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host_header())
    }

    /// `host[:port]` as sent in the `Host` header (default port omitted, as
    /// HTTP clients do, so the signed header matches what goes on the wire).
    pub fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        match self.port {
            Some(p) if p != default => format!("{}:{p}", self.host),
            _ => self.host.clone(),
        }
    }

    /// The part of the host before `.amazonaws.com[.cn]`, if it is AWS.
    fn aws_prefix(&self) -> Option<&str> {
        self.host
            .strip_suffix(".amazonaws.com")
            .or_else(|| self.host.strip_suffix(".amazonaws.com.cn"))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url())
    }
}

/// DNS-style host name check (underscores tolerated for container names).
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Shape of an AWS region name: `xx-word-N` (`us-gov-west-1`, `eu-west-1`).
fn looks_like_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn endpoint_parse_forms() {
        let ep = Endpoint::parse("[::1]:9000", Some(false)).unwrap();
        assert_eq!(
            (ep.host.as_str(), ep.port, ep.tls),
            ("[::1]", Some(9000), false)
        );
        assert_eq!(ep.base_url(), "http://[::1]:9000");
        let ep = Endpoint::parse("https://S3.Example.com/", None).unwrap();
        assert_eq!(ep.base_url(), "https://s3.example.com");
        let ep = Endpoint::parse("https://host:443", None).unwrap();
        assert_eq!(ep.host_header(), "host");
        let ep = Endpoint::parse("http://host:443", None).unwrap();
        assert_eq!(ep.host_header(), "host:443");
        assert!(Endpoint::parse("host", Some(false)).is_ok_and(|e| !e.tls));
        for bad in [
            "",
            "ftp://host",
            "https://host?x=1",
            "https://host#frag",
            "host:",
            "host:0",
            "host:+80",
            "::1",
            "[::zz]:80",
            "http://",
            "bad_host-.com",
            "http://host:9000:9",
            "http://a..b",
        ] {
            assert!(Endpoint::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Endpoint::parse("http://host", Some(true)).is_err());
        let e = Endpoint::parse("https://user:pw@host", None).unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn region_hints() {
        let hint = |s: &str| Endpoint::parse(s, None).unwrap().region_hint();
        assert_eq!(
            hint("s3-us-west-2.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            hint("s3.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            hint("s3.dualstack.ap-south-1.amazonaws.com").as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(hint("s3.amazonaws.com").as_deref(), Some("us-east-1"));
        assert_eq!(
            hint("s3-external-1.amazonaws.com").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            hint("s3.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(hint("localhost:9000"), None);
        assert_eq!(hint("storage.googleapis.com"), None);
        assert!(Endpoint::parse("s3.amazonaws.com", None).unwrap().is_aws());
        assert!(!Endpoint::parse("minio.local", None).unwrap().is_aws());
    }

    #[test]
    fn endpoint_not_a_host_or_url() {
        let e = err_of(&full("  endpoint: http://x/y\n"));
        assert!(e.ends_with("field `s3.endpoint`: 'http://x/y' has a path; give a host or a URL like https://host:port"), "{e}");
        let e = err_of(&full("  endpoint: \"my host\"\n"));
        assert!(
            e.contains("field `s3.endpoint`: \"my host\" contains spaces"),
            "{e}"
        );
        let e = err_of(&full("  endpoint: \"localhost:99999\"\n"));
        assert!(
            e.contains("field `s3.endpoint`: 'localhost:99999' has a bad port '99999'"),
            "{e}"
        );
        let e = err_of(&full("  endpoint: \"localhost:abc\"\n"));
        assert!(e.contains("bad port 'abc'"), "{e}");
    }

    #[test]
    fn tls_conflicts_with_scheme() {
        let e = err_of(&full("  endpoint: https://s3.example.com\n  tls: false\n"));
        assert!(
            e.contains(
                "field `s3.endpoint`: 'https://s3.example.com' uses https:// but tls is false"
            ),
            "{e}"
        );
        let c = load_file(&full("  endpoint: \"127.0.0.1:9000\"\n  tls: false\n")).unwrap();
        assert_eq!(c.endpoint.base_url(), "http://127.0.0.1:9000");
    }
}
