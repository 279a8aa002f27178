//! Configuration for s3mount: the seed-compatible YAML file, the AWS
//! environment variables, the AWS shared files (`~/.aws/credentials`,
//! `~/.aws/config`) and command-line overrides, merged into one [`Config`].
//!
//! Precedence, highest first: command line ([`Overrides`]) > environment >
//! YAML file > AWS shared files > built-in defaults. Credentials are always
//! taken as a pair from a single source.
//!
//! Every problem becomes one [`ConfigError`] whose `Display` is a single line
//! naming the file, the field and what is wrong. Secrets never appear in
//! errors or `Debug` output: they live in [`Secret`], which redacts itself.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Largest config file we accept; anything bigger is surely not a config and
/// reading it whole could exhaust memory.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Region used when nothing names one (the AWS default as well).
const DEFAULT_REGION: &str = "us-east-1";

// ---------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------

/// A secret string: `Debug`/`Display` print `<redacted>`, never the value.
///
/// Use [`Secret::expose`] only at the point where the value is really needed
/// (request signing).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// Returns the secret value. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

// ---------------------------------------------------------------------------
// Addressing style
// ---------------------------------------------------------------------------

/// How the bucket is put into request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressingStyle {
    /// Decide per bucket, see [`Config::addressing_for`].
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

// ---------------------------------------------------------------------------
// Endpoint
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A configuration problem. `Display` is one line, "ORIGIN: field `FIELD`:
/// WHAT IS WRONG", with the origin and field parts present when known.
#[derive(Debug, Clone)]
pub struct ConfigError {
    origin: Option<String>,
    field: Option<String>,
    message: String,
}

impl ConfigError {
    fn new(origin: Option<&str>, field: Option<&str>, message: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.map(str::to_string),
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    /// Where the bad setting came from, e.g. `config /etc/s3mount.yaml`,
    /// `environment`, `command line`.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The offending field, e.g. `s3.endpoint` or `AWS_REGION`.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong, without origin and field.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------
// Public configuration
// ---------------------------------------------------------------------------

/// The merged configuration. `Debug` is safe to log: secrets are [`Secret`]s.
#[derive(Debug, Clone)]
pub struct Config {
    /// AWS access key id (not secret by itself, shown in Debug).
    pub access_key_id: String,
    /// AWS secret access key.
    pub secret_access_key: Secret,
    /// Temporary-credentials session token, if any.
    pub session_token: Option<Secret>,
    /// Bucket to mount when none is named elsewhere.
    pub default_bucket: Option<String>,
    /// Where to send requests.
    pub endpoint: Endpoint,
    /// Signing region.
    pub region: String,
    /// Requested addressing style; see [`Config::addressing_for`].
    pub addressing_style: AddressingStyle,
    /// `""` or a key prefix ending in `/`, without a leading `/`.
    pub prefix: String,
    /// Where the credentials came from, for messages; never the secret.
    pub credential_source: String,
}

/// Command-line overrides; each `Some` beats every other source.
#[derive(Default, Debug, Clone)]
pub struct Overrides {
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--bucket`.
    pub bucket: Option<String>,
    /// `--prefix`.
    pub prefix: Option<String>,
    /// `--tls` / `--no-tls`.
    pub tls: Option<bool>,
    /// `--addressing-style`.
    pub addressing_style: Option<AddressingStyle>,
    /// `--access-key-id`.
    pub access_key_id: Option<String>,
    /// `--secret-access-key`.
    pub secret_access_key: Option<Secret>,
}

/// Everything that feeds [`Config::load`], so tests don't touch the real
/// environment.
pub struct LoadRequest<'a> {
    /// Seed YAML file, optional.
    pub file: Option<&'a Path>,
    /// Allow a file readable by group/other (`--allow-insecure-config`).
    pub allow_insecure: bool,
    /// From CLI flags, highest precedence.
    pub overrides: Overrides,
    /// Environment lookup ([`process_env`] in production).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `--profile`; else env `AWS_PROFILE`; else `default`.
    pub profile: Option<String>,
}

impl<'a> LoadRequest<'a> {
    /// A request reading the real process environment, with no overrides.
    pub fn from_process_env(file: Option<&'a Path>) -> LoadRequest<'a> {
        LoadRequest {
            file,
            allow_insecure: false,
            overrides: Overrides::default(),
            env: &process_env,
            profile: None,
        }
    }

    /// The seed's way: read this YAML file, with the real process environment and no overrides.
    pub fn from_file<P: AsRef<Path> + ?Sized>(file: &'a P) -> LoadRequest<'a> {
        LoadRequest::from_process_env(Some(file.as_ref()))
    }
}

/// Reads an environment variable; unset, empty or non-UTF-8 is `None`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Effective addressing for one bucket: `Path`/`Virtual` if set
    /// explicitly; `Auto` → `Virtual` on AWS endpoints unless the bucket name
    /// contains '.' (dots break the TLS wildcard certificate) or is a legacy
    /// name that cannot be a host-name label (upper case, `_`), `Path`
    /// otherwise (most non-AWS servers only do path style).
    pub fn addressing_for(&self, bucket: &str) -> AddressingStyle {
        match self.addressing_style {
            AddressingStyle::Auto
                if self.endpoint.is_aws()
                    && !bucket.contains('.')
                    && is_dns_compatible_bucket(bucket) =>
            {
                AddressingStyle::Virtual
            }
            AddressingStyle::Auto => AddressingStyle::Path,
            explicit => explicit,
        }
    }

    /// Loads and merges all sources. Precedence, highest first: overrides >
    /// environment > YAML file > AWS shared files > defaults.
    pub fn load(req: &LoadRequest<'_>) -> Result<Config, ConfigError> {
        // Empty variables count as unset, like the AWS SDKs do.
        let env = |name: &str| nonempty((req.env)(name));
        let ov = &req.overrides;
        let file = match req.file {
            Some(p) => Some((
                format!("config {}", p.display()),
                read_seed(p, req.allow_insecure)?,
            )),
            None => None,
        };
        let (forigin, fs) = match &file {
            Some((o, s)) => (o.as_str(), Some(s)),
            None => ("", None),
        };
        let fget =
            |pick: fn(&S3Section) -> &Option<String>| fs.and_then(|s| nonempty(pick(s).clone()));
        let shared = SharedProfile::load(&env, req.profile.clone())?;

        // Region named explicitly somewhere (endpoint hint comes later).
        let region = first(vec![
            ("command line", "--region", nonempty(ov.region.clone())),
            ("environment", "AWS_REGION", env("AWS_REGION")),
            (
                "environment",
                "AWS_DEFAULT_REGION",
                env("AWS_DEFAULT_REGION"),
            ),
            (forigin, "s3.region", fget(|s| &s.region)),
            (
                shared.config_origin(),
                "region",
                shared.get("config", "region"),
            ),
        ]);
        if let Some((origin, field, r)) = &region {
            validate_region(r).map_err(|m| ConfigError::new(Some(origin), Some(field), m))?;
        }

        // tls from the file only binds an endpoint from the file or below;
        // a higher source's explicit scheme wins over it.
        let file_tls = fs.and_then(|s| s.tls);
        let endpoint = first(vec![
            ("command line", "--endpoint", nonempty(ov.endpoint.clone())),
            (
                "environment",
                "AWS_ENDPOINT_URL_S3",
                env("AWS_ENDPOINT_URL_S3"),
            ),
            ("environment", "AWS_ENDPOINT_URL", env("AWS_ENDPOINT_URL")),
            (forigin, "s3.endpoint", fget(|s| &s.endpoint)),
            (
                shared.config_origin(),
                "endpoint_url",
                shared.get("config", "endpoint_url"),
            ),
        ]);
        let endpoint = match endpoint {
            Some((origin, field, s)) => {
                let binding = field == "s3.endpoint" || field == "endpoint_url";
                let tls = match ov.tls {
                    Some(t) => Some(t),
                    None if binding || !s.contains("://") => file_tls,
                    None => None,
                };
                Endpoint::parse(&s, tls)
                    .map_err(|m| ConfigError::new(Some(origin), Some(field), m))?
            }
            None => {
                let r = region
                    .as_ref()
                    .map_or(DEFAULT_REGION, |(_, _, r)| r.as_str());
                // The China partition lives under its own domain.
                let domain = if r.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                Endpoint {
                    tls: ov.tls.or(file_tls).unwrap_or(true),
                    host: format!("s3.{r}.{domain}"),
                    port: None,
                }
            }
        };
        let region = region
            .map(|(_, _, r)| r)
            .or_else(|| endpoint.region_hint())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());

        let default_bucket = first(vec![
            ("command line", "--bucket", nonempty(ov.bucket.clone())),
            (forigin, "s3.default_bucket", fget(|s| &s.default_bucket)),
        ]);
        if let Some((origin, field, b)) = &default_bucket {
            validate_bucket(b).map_err(|m| ConfigError::new(Some(origin), Some(field), m))?;
        }

        let prefix = match first(vec![
            ("command line", "--prefix", nonempty(ov.prefix.clone())),
            (forigin, "s3.prefix", fget(|s| &s.prefix)),
        ]) {
            Some((origin, field, p)) => {
                normalize_prefix(&p).map_err(|m| ConfigError::new(Some(origin), Some(field), m))?
            }
            None => String::new(),
        };

        let addressing_style = match (ov.addressing_style, fget(|s| &s.addressing_style)) {
            (Some(a), _) => a,
            (None, Some(s)) => s.parse().map_err(|m: String| {
                ConfigError::new(Some(forigin), Some("s3.addressing_style"), m)
            })?,
            (None, None) => AddressingStyle::Auto,
        };

        // Credentials last, so a broken setting above is reported first.
        // Credentials: the first source that mentions any wins, as a pair.
        let creds = first_creds(vec![
            (
                "command line".to_string(),
                ("--access-key-id", "--secret-access-key"),
                nonempty(ov.access_key_id.clone()),
                ov.secret_access_key
                    .clone()
                    .filter(|s| !s.expose().is_empty()),
                None,
            ),
            (
                "environment".to_string(),
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                env("AWS_ACCESS_KEY_ID"),
                env("AWS_SECRET_ACCESS_KEY").map(Secret),
                env("AWS_SESSION_TOKEN").map(Secret),
            ),
            (
                forigin.to_string(),
                ("s3.access_key_id", "s3.secret_access_key"),
                fget(|s| &s.access_key_id),
                fget(|s| &s.secret_access_key).map(Secret),
                fget(|s| &s.session_token).map(Secret),
            ),
            shared.creds("credentials"),
            shared.creds("config"),
        ])?
        .ok_or_else(|| {
            ConfigError::new(
                None,
                None,
                "no credentials: set access_key_id/secret_access_key in the config, \
                 AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials",
            )
        })?;

        Ok(Config {
            access_key_id: creds.key,
            secret_access_key: creds.secret,
            session_token: creds.token,
            default_bucket: default_bucket.map(|(_, _, b)| b),
            endpoint,
            region,
            addressing_style,
            prefix,
            credential_source: creds.source,
        })
    }
}

/// `None` for absent or empty strings: an empty setting means "not set".
fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// The first `(origin, field, value)` with a value.
fn first<'o>(
    candidates: Vec<(&'o str, &'o str, Option<String>)>,
) -> Option<(&'o str, &'o str, String)> {
    candidates
        .into_iter()
        .find_map(|(o, f, v)| v.map(|v| (o, f, v)))
}

/// Resolved credentials plus a description of their source.
struct Creds {
    key: String,
    secret: Secret,
    token: Option<Secret>,
    source: String,
}

/// One credential source: origin, (key-id field, secret field), key id,
/// secret, session token.
type CredCandidate = (
    String,
    (&'static str, &'static str),
    Option<String>,
    Option<Secret>,
    Option<Secret>,
);

/// Takes the first source that mentions credentials; a half pair there is an
/// error rather than being completed from another source (mixing a key id
/// and a secret from different places gives baffling signature errors).
fn first_creds(candidates: Vec<CredCandidate>) -> Result<Option<Creds>, ConfigError> {
    for (origin, (id_field, secret_field), key, secret, token) in candidates {
        match (key, secret) {
            (Some(key), Some(secret)) => {
                return Ok(Some(Creds { key, secret, token, source: origin }))
            }
            (None, None) => continue,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    Some(&origin),
                    Some(secret_field),
                    format!("is missing while {id_field} is set; credentials must come as a pair from one place"),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    Some(&origin),
                    Some(id_field),
                    format!("is missing while {secret_field} is set; credentials must come as a pair from one place"),
                ))
            }
        }
    }
    Ok(None)
}

fn validate_region(r: &str) -> Result<(), String> {
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
fn validate_bucket(b: &str) -> Result<(), String> {
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
fn normalize_prefix(p: &str) -> Result<String, String> {
    if p.contains('\0') {
        return Err("contains a NUL character".to_string());
    }
    if p.contains("//") {
        return Err(format!("'{p}' contains '//' (an empty path segment)"));
    }
    let p = p.strip_prefix('/').unwrap_or(p);
    if p == ".." || p.starts_with("../") {
        return Err(format!("'{p}' starts with '../'"));
    }
    if p.is_empty() || p.ends_with('/') {
        Ok(p.to_string())
    } else {
        Ok(format!("{p}/"))
    }
}

// ---------------------------------------------------------------------------
// The YAML file
// ---------------------------------------------------------------------------

/// The `s3:` section. No `Debug`: it holds the secret in plain text.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct S3Section {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    default_bucket: Option<String>,
    endpoint: Option<String>,
    tls: Option<bool>,
    region: Option<String>,
    addressing_style: Option<String>,
    prefix: Option<String>,
}

/// Field list for the "unknown field" message (kept in struct order).
const S3_FIELDS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "session_token",
    "default_bucket",
    "endpoint",
    "tls",
    "region",
    "addressing_style",
    "prefix",
];

/// Top level: only `s3:` matters, other sections belong to other tools.
#[derive(Deserialize)]
struct SeedFile {
    s3: Option<S3Section>,
}

/// Opens, permission-checks (on the open handle, so no race with a rename)
/// and parses the seed file.
fn read_seed(path: &Path, allow_insecure: bool) -> Result<S3Section, ConfigError> {
    let origin = format!("config {}", path.display());
    let fail = |m: String| ConfigError::new(Some(&origin), None, m);
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    #[cfg(unix)]
    if !allow_insecure {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|e| fail(format!("cannot read: {e}")))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            let how = if mode & 0o044 != 0 {
                "readable"
            } else {
                "writable"
            };
            return Err(fail(format!(
                "is {how} by group or others (mode {mode:04o}); run `chmod 600 {}` or pass --allow-insecure-config",
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = allow_insecure;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(fail(
            "is larger than 1 MiB; is this really an s3mount config?".to_string(),
        ));
    }
    parse_seed(&origin, &text)
}

/// Parses the YAML text; `origin` prefixes every error.
fn parse_seed(origin: &str, text: &str) -> Result<S3Section, ConfigError> {
    // First as an untyped value: gives syntax errors with a location and lets
    // us tell "empty" and "no s3: section" apart, which serde would merge.
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(origin, &e))?;
    let fail = |m: &str| ConfigError::new(Some(origin), None, m);
    let map = match &value {
        serde_yaml_ng::Value::Null => return Err(fail("is empty; expected an `s3:` section")),
        serde_yaml_ng::Value::Mapping(m) => m,
        _ => return Err(fail("top level must be a mapping with an `s3:` section")),
    };
    match map.get("s3") {
        None => return Err(fail("has no `s3:` section")),
        Some(serde_yaml_ng::Value::Null) => return Err(fail("the `s3:` section is empty")),
        Some(_) => {}
    }
    // Then typed, from the text again so errors keep their line numbers.
    let seed: SeedFile = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(origin, &e))?;
    seed.s3.ok_or_else(|| fail("has no `s3:` section"))
}

/// Turns a serde_yaml_ng error ("s3.tls: invalid type: ... at line 2 column
/// 8") into our one-line form. Values of secret fields are never echoed.
fn yaml_error(origin: &str, e: &serde_yaml_ng::Error) -> ConfigError {
    let full = e.to_string();
    let loc = e
        .location()
        .map(|l| format!("line {} column {}", l.line(), l.column()));
    // Drop our own location from the text (libyaml may add a second one,
    // "while parsing ... at line N", which is kept as useful context).
    let msg = match &loc {
        Some(l) => full.replacen(&format!(" at {l}"), "", 1),
        None => full.clone(),
    };
    let msg = msg.as_str();
    // serde_yaml_ng prefixes typed errors with the dotted path of the field.
    let (path, rest) = match msg.split_once(": ") {
        Some((p, r))
            if !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.[]".contains(&b)) =>
        {
            (Some(p), r)
        }
        _ => (None, msg),
    };
    let at = loc
        .as_ref()
        .map(|l| format!(" (at {l})"))
        .unwrap_or_default();
    if let Some(name) = rest
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    {
        let section = path.unwrap_or("s3");
        return ConfigError::new(
            Some(origin),
            None,
            format!(
                "unknown field `{section}.{name}` (expected one of {}){at}",
                S3_FIELDS.join(", ")
            ),
        );
    }
    match (path, rest.strip_prefix("invalid type: ")) {
        (Some(path), Some(found)) => {
            let found = found.split(", expected").next().unwrap_or(found);
            // "string \"hunter2\"" → "string" for secrets.
            let found = if path.ends_with("secret_access_key") || path.ends_with("session_token") {
                found.split(' ').next().unwrap_or("a value")
            } else {
                found
            };
            let expected = match path {
                "s3" => "a mapping of settings",
                p if p.ends_with(".tls") => "a boolean (true/false)",
                _ => "a string",
            };
            ConfigError::new(
                Some(origin),
                Some(path),
                format!("expected {expected}, found {found}{at}"),
            )
        }
        (Some(path), None) => ConfigError::new(Some(origin), Some(path), format!("{rest}{at}")),
        (None, _) => {
            let loc = loc.map(|l| format!("{l}: ")).unwrap_or_default();
            ConfigError::new(Some(origin), None, format!("{loc}invalid YAML: {rest}"))
        }
    }
}

// ---------------------------------------------------------------------------
// AWS shared files
// ---------------------------------------------------------------------------

/// Sections → keys → values of an INI file.
type Ini = HashMap<String, HashMap<String, String>>;

/// The selected profile's sections from `~/.aws/credentials` and
/// `~/.aws/config`. No `Debug`: values include secrets.
struct SharedProfile {
    profile: String,
    /// (origin text, keys) per file kind, when the profile exists there.
    credentials: Option<(String, HashMap<String, String>)>,
    config: Option<(String, HashMap<String, String>)>,
}

impl SharedProfile {
    /// Reads both files for `profile` (`--profile`, else `AWS_PROFILE`, else
    /// `default`). Missing files are fine; a profile named explicitly but
    /// found in neither file is an error (it is almost always a typo).
    fn load(
        env: &dyn Fn(&str) -> Option<String>,
        profile: Option<String>,
    ) -> Result<Self, ConfigError> {
        let (profile, explicit) = match nonempty(profile).or_else(|| env("AWS_PROFILE")) {
            Some(p) => (p.trim().to_string(), true),
            None => ("default".to_string(), false),
        };
        let home = env("HOME").map(PathBuf::from);
        let path = |var: &str, rel: &str| {
            env(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(rel)))
        };
        let cred_path = path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        let conf_path = path("AWS_CONFIG_FILE", ".aws/config");

        let mut cred_ini = read_ini(cred_path.as_deref(), "shared credentials file")?;
        let mut conf_ini = read_ini(conf_path.as_deref(), "shared config file")?;
        // The config file spells non-default profiles "[profile NAME]".
        let conf_section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        let pick = |ini: &mut Option<Ini>, p: &Option<PathBuf>, kind: &str, section: &str| {
            let keys = ini.as_mut()?.remove(section)?;
            let path = p.as_ref()?.display().to_string();
            Some((format!("{kind} {path} [profile {profile}]"), keys))
        };
        let credentials = pick(
            &mut cred_ini,
            &cred_path,
            "shared credentials file",
            &profile,
        );
        let config = pick(
            &mut conf_ini,
            &conf_path,
            "shared config file",
            &conf_section,
        )
        // "[profile default]" is accepted by the AWS CLI too.
        .or_else(|| match profile.as_str() {
            "default" => pick(
                &mut conf_ini,
                &conf_path,
                "shared config file",
                "profile default",
            ),
            _ => None,
        });
        if explicit && credentials.is_none() && config.is_none() {
            let show = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map_or("(no HOME)".to_string(), |p| p.display().to_string())
            };
            return Err(ConfigError::new(
                None,
                None,
                format!(
                    "profile `{profile}` not found in {} or {}",
                    show(&cred_path),
                    show(&conf_path)
                ),
            ));
        }
        Ok(SharedProfile {
            profile,
            credentials,
            config,
        })
    }

    fn part(&self, kind: &str) -> Option<&(String, HashMap<String, String>)> {
        if kind == "credentials" {
            self.credentials.as_ref()
        } else {
            self.config.as_ref()
        }
    }

    fn get(&self, kind: &str, key: &str) -> Option<String> {
        nonempty(self.part(kind)?.1.get(key).cloned())
    }

    fn config_origin(&self) -> &str {
        self.config.as_ref().map_or("", |(o, _)| o.as_str())
    }

    /// Credential candidate from one of the files (botocore also reads keys
    /// from the config file, so we do too, after the credentials file).
    fn creds(&self, kind: &str) -> CredCandidate {
        let origin = self
            .part(kind)
            .map_or_else(|| format!("profile {}", self.profile), |(o, _)| o.clone());
        (
            origin,
            ("aws_access_key_id", "aws_secret_access_key"),
            self.get(kind, "aws_access_key_id"),
            self.get(kind, "aws_secret_access_key").map(Secret),
            self.get(kind, "aws_session_token").map(Secret),
        )
    }
}

/// Reads an INI file; `Ok(None)` if there is no path or no file.
fn read_ini(path: Option<&Path>, kind: &str) -> Result<Option<Ini>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(parse_ini(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::new(
            Some(&format!("{kind} {}", path.display())),
            None,
            format!("cannot read: {e}"),
        )),
    }
}

/// A tolerant INI parser: `[section]`, `key = value`, `#`/`;` comment lines.
/// Indented lines are continuations / nested blocks in the AWS format
/// (`s3 =\n  addressing_style = path`) and are skipped; junk lines are
/// ignored rather than fatal, as the AWS tools do not own this file alone.
fn parse_ini(text: &str) -> Ini {
    let mut ini = Ini::new();
    let mut section: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with(['#', ';']) {
            continue;
        }
        if let Some(r) = t.strip_prefix('[') {
            // "[profile   x]" → "profile x"
            section = r
                .split_once(']')
                .map(|(name, _)| name.split_whitespace().collect::<Vec<_>>().join(" "));
        } else if let (Some(sec), Some((k, v))) = (&section, t.split_once('=')) {
            ini.entry(sec.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    ini
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// Seed-style file with the given body, mode 0600, in a fresh tempdir.
    fn seed(body: &str) -> (tempfile::TempDir, PathBuf) {
        seed_mode(body, 0o600)
    }

    fn seed_mode(body: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s3.yaml");
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    fn load_with(
        file: Option<&Path>,
        vars: &[(&str, &str)],
        overrides: Overrides,
        profile: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let env = env_of(vars);
        Config::load(&LoadRequest {
            file,
            allow_insecure: false,
            overrides,
            env: &env,
            profile: profile.map(str::to_string),
        })
    }

    fn load_file(body: &str) -> Result<Config, ConfigError> {
        let (_d, p) = seed(body);
        load_with(Some(&p), &[], Overrides::default(), None)
    }

    fn err_of(body: &str) -> String {
        match load_file(body) {
            Ok(_) => panic!("expected an error for {body:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn full(extra: &str) -> String {
        format!(
            "s3:\n  access_key_id: AKIAFILE\n  secret_access_key: \"{SECRET}\"\n  default_bucket: com.prometheus.cgtest-1\n{extra}"
        )
    }

    #[test]
    fn seed_example_loads() {
        let c = load_file(&full("  endpoint: \"s3-us-west-2.amazonaws.com\"\n")).unwrap();
        assert_eq!(c.access_key_id, "AKIAFILE");
        assert_eq!(c.secret_access_key.expose(), SECRET);
        assert_eq!(c.region, "us-west-2");
        assert_eq!(c.endpoint.base_url(), "https://s3-us-west-2.amazonaws.com");
        assert_eq!(c.default_bucket.as_deref(), Some("com.prometheus.cgtest-1"));
        assert_eq!(c.addressing_style, AddressingStyle::Auto);
        assert_eq!(c.prefix, "");
        assert!(
            c.credential_source.starts_with("config "),
            "{}",
            c.credential_source
        );
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.yaml");
        let e = load_with(Some(&p), &[], Overrides::default(), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "config {}: cannot read: No such file or directory (os error 2)",
                p.display()
            )
        );
    }

    #[test]
    fn bad_yaml_has_location() {
        let e = err_of("s3:\n  endpoint: [unclosed\n  tls: true\n");
        assert!(e.contains("invalid YAML"), "{e}");
        assert!(e.contains("line "), "{e}");
        assert!(e.starts_with("config "), "{e}");
        assert_eq!(e.matches("line 3 column 6").count(), 1, "{e}");
        // a bad field is reported even when credentials are missing too
        let e = err_of("s3:\n  endpoint: http://x/y\n");
        assert!(e.contains("field `s3.endpoint`"), "{e}");
    }

    #[test]
    fn file_tls_does_not_fight_env_scheme() {
        let (_d, p) = seed(&full("  tls: false\n"));
        let vars = [("AWS_ENDPOINT_URL", "https://s3.example.com")];
        let c = load_with(Some(&p), &vars, Overrides::default(), None).unwrap();
        assert!(c.endpoint.tls);
        // a scheme-less env endpoint still follows the file's tls setting
        let vars = [("AWS_ENDPOINT_URL", "minio:9000")];
        let c = load_with(Some(&p), &vars, Overrides::default(), None).unwrap();
        assert_eq!(c.endpoint.base_url(), "http://minio:9000");
    }

    #[test]
    fn empty_file_and_missing_section() {
        assert!(err_of("").ends_with(": is empty; expected an `s3:` section"));
        assert!(err_of("# just a comment\n").contains("is empty"));
        assert!(err_of("other:\n  a: 1\n").ends_with(": has no `s3:` section"));
        assert!(err_of("s3:\n").ends_with("the `s3:` section is empty"));
        assert!(err_of("- a\n- b\n").contains("top level must be a mapping"));
    }

    #[test]
    fn other_top_level_sections_ignored() {
        let c = load_file(&format!("logging:\n  level: debug\n{}", full(""))).unwrap();
        assert_eq!(c.access_key_id, "AKIAFILE");
    }

    #[test]
    fn unknown_key_named() {
        let e = err_of("s3:\n  acess_key_id: x\n");
        assert!(
            e.contains(
                "unknown field `s3.acess_key_id` (expected one of access_key_id, secret_access_key"
            ),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn wrong_types_named() {
        let e = err_of("s3:\n  tls: \"yes please\"\n");
        assert!(
            e.contains(
                "field `s3.tls`: expected a boolean (true/false), found string \"yes please\""
            ),
            "{e}"
        );
        let e = err_of("s3:\n  endpoint: [1, 2]\n");
        assert!(
            e.contains("field `s3.endpoint`: expected a string, found sequence"),
            "{e}"
        );
        let e = err_of("s3: [1, 2]\n");
        assert!(
            e.contains("field `s3`: expected a mapping of settings"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_for_secret_does_not_echo_it() {
        let e = err_of("s3:\n  secret_access_key: {hunter2: 1}\n");
        assert!(
            e.contains("field `s3.secret_access_key`: expected a string, found map"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
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
    fn insecure_permissions() {
        let (_d, p) = seed_mode(&full(""), 0o644);
        let e = load_with(Some(&p), &[], Overrides::default(), None)
            .unwrap_err()
            .to_string();
        let shown = p.display();
        assert_eq!(
            e,
            format!("config {shown}: is readable by group or others (mode 0644); run `chmod 600 {shown}` or pass --allow-insecure-config")
        );
        let env = env_of(&[]);
        let req = LoadRequest {
            file: Some(&p),
            allow_insecure: true,
            overrides: Overrides::default(),
            env: &env,
            profile: None,
        };
        assert_eq!(Config::load(&req).unwrap().access_key_id, "AKIAFILE");
    }

    #[test]
    fn no_credentials() {
        let e = load_with(None, &[], Overrides::default(), None)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "no credentials: set access_key_id/secret_access_key in the config, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials");
        let e = err_of("s3:\n  default_bucket: abc\n");
        assert!(e.starts_with("no credentials"), "{e}");
    }

    #[test]
    fn half_pair_is_an_error_not_mixed() {
        let (_d, p) = seed(&full(""));
        let e = load_with(
            Some(&p),
            &[("AWS_ACCESS_KEY_ID", "AKIAENV")],
            Overrides::default(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("environment: field `AWS_SECRET_ACCESS_KEY`: is missing while AWS_ACCESS_KEY_ID is set"), "{e}");
        let e = err_of("s3:\n  secret_access_key: x\n");
        assert!(e.contains("field `s3.access_key_id`: is missing"), "{e}");
    }

    #[test]
    fn precedence_override_env_file() {
        let (_d, p) = seed(&full("  endpoint: s3-us-west-2.amazonaws.com\n  region: eu-west-3\n  session_token: filetok\n"));
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_SESSION_TOKEN", "envtok"),
            ("AWS_REGION", "ap-south-1"),
            ("AWS_DEFAULT_REGION", "ca-central-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ];
        // env beats file
        let c = load_with(Some(&p), &env, Overrides::default(), None).unwrap();
        assert_eq!(c.access_key_id, "AKIAENV");
        assert_eq!(c.secret_access_key.expose(), "envsecret");
        assert_eq!(c.session_token.as_ref().map(Secret::expose), Some("envtok"));
        assert_eq!(c.region, "ap-south-1");
        assert_eq!(c.endpoint.base_url(), "http://127.0.0.1:9000");
        assert_eq!(c.credential_source, "environment");
        // AWS_ENDPOINT_URL_S3 beats AWS_ENDPOINT_URL
        let mut env2 = env.to_vec();
        env2.push(("AWS_ENDPOINT_URL_S3", "http://minio:9001"));
        let c = load_with(Some(&p), &env2, Overrides::default(), None).unwrap();
        assert_eq!(c.endpoint.host_header(), "minio:9001");
        // overrides beat env
        let ov = Overrides {
            endpoint: Some("https://cli.example.com:8443".into()),
            region: Some("us-west-1".into()),
            bucket: Some("cli-bucket".into()),
            prefix: Some("/a/b".into()),
            tls: None,
            addressing_style: Some(AddressingStyle::Virtual),
            access_key_id: Some("AKIACLI".into()),
            secret_access_key: Some(Secret::new("clisecret")),
        };
        let c = load_with(Some(&p), &env, ov, None).unwrap();
        assert_eq!(c.access_key_id, "AKIACLI");
        assert_eq!(c.session_token, None);
        assert_eq!(c.region, "us-west-1");
        assert_eq!(c.endpoint.base_url(), "https://cli.example.com:8443");
        assert_eq!(c.default_bucket.as_deref(), Some("cli-bucket"));
        assert_eq!(c.prefix, "a/b/");
        assert_eq!(c.addressing_style, AddressingStyle::Virtual);
        assert_eq!(c.credential_source, "command line");
        // AWS_DEFAULT_REGION only when AWS_REGION absent; file session token with file keys
        let c = load_with(
            Some(&p),
            &[("AWS_DEFAULT_REGION", "ca-central-1")],
            Overrides::default(),
            None,
        )
        .unwrap();
        assert_eq!(c.region, "ca-central-1");
        assert_eq!(
            c.session_token.as_ref().map(Secret::expose),
            Some("filetok")
        );
    }

    /// Fake HOME with ~/.aws/credentials and ~/.aws/config.
    fn fake_home() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        fs::create_dir(&aws).unwrap();
        fs::write(
            aws.join("credentials"),
            "# comment\n[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = defsecret\n\n\
             [work]\n; another comment\naws_access_key_id=AKIAWORK\naws_secret_access_key = worksecret\naws_session_token = worktok\n\
             junk line without equals\n",
        )
        .unwrap();
        fs::write(
            aws.join("config"),
            "[default]\nregion = eu-central-1\n\n[profile work]\nregion = us-west-2\nendpoint_url = http://localhost:9000\ns3 =\n  addressing_style = path\n",
        )
        .unwrap();
        home
    }

    #[test]
    fn shared_files_default_and_named_profiles() {
        let home = fake_home();
        let h = home.path().to_str().unwrap();
        let c = load_with(None, &[("HOME", h)], Overrides::default(), None).unwrap();
        assert_eq!(c.access_key_id, "AKIADEF");
        assert_eq!(c.region, "eu-central-1");
        assert_eq!(
            c.endpoint.base_url(),
            "https://s3.eu-central-1.amazonaws.com"
        );
        assert!(
            c.credential_source
                .contains("credentials [profile default]"),
            "{}",
            c.credential_source
        );

        let c = load_with(None, &[("HOME", h)], Overrides::default(), Some("work")).unwrap();
        assert_eq!(c.access_key_id, "AKIAWORK");
        assert_eq!(
            c.session_token.as_ref().map(Secret::expose),
            Some("worktok")
        );
        assert_eq!(c.region, "us-west-2");
        assert_eq!(c.endpoint.base_url(), "http://localhost:9000");

        // AWS_PROFILE when --profile is absent
        let c = load_with(
            None,
            &[("HOME", h), ("AWS_PROFILE", "work")],
            Overrides::default(),
            None,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AKIAWORK");

        let e = load_with(None, &[("HOME", h)], Overrides::default(), Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("profile `nope` not found in "), "{e}");

        // no HOME / missing files: not an error by themselves
        let e = load_with(
            None,
            &[("HOME", "/nonexistent-home-dir")],
            Overrides::default(),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("no credentials"));
    }

    #[test]
    fn file_beats_shared_files() {
        let home = fake_home();
        let h = home.path().to_str().unwrap();
        let (_d, p) = seed(&full(""));
        let c = load_with(Some(&p), &[("HOME", h)], Overrides::default(), None).unwrap();
        assert_eq!(c.access_key_id, "AKIAFILE");
        // region still comes from the shared config when the file has none
        assert_eq!(c.region, "eu-central-1");
        // explicit shared-file paths
        let creds = home.path().join(".aws/credentials");
        let c = load_with(
            None,
            &[("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap())],
            Overrides::default(),
            Some("work"),
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AKIAWORK");
        assert_eq!(c.region, "us-east-1");
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
    fn default_endpoint_and_region() {
        let env = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")];
        let c = load_with(None, &env, Overrides::default(), None).unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.endpoint.base_url(), "https://s3.us-east-1.amazonaws.com");
        let ov = Overrides {
            region: Some("Bad Region".into()),
            ..Default::default()
        };
        let e = load_with(None, &env, ov, None).unwrap_err().to_string();
        assert!(e.starts_with("command line: field `--region`:"), "{e}");
    }

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
    fn addressing() {
        let base = load_file(&full("  endpoint: s3-us-west-2.amazonaws.com\n")).unwrap();
        assert_eq!(
            base.addressing_for("com.prometheus.cgtest-1"),
            AddressingStyle::Path
        );
        assert_eq!(
            base.addressing_for("plain-bucket"),
            AddressingStyle::Virtual
        );
        assert_eq!(base.addressing_for("ZZZZZZZ"), AddressingStyle::Path);
        let local = load_file(&full("  endpoint: http://127.0.0.1:9000\n  tls: false\n")).unwrap();
        assert_eq!(local.addressing_for("plain-bucket"), AddressingStyle::Path);
        let forced = load_file(&full(
            "  endpoint: http://127.0.0.1:9000\n  addressing_style: virtual\n",
        ))
        .unwrap();
        assert_eq!(forced.addressing_for("a.b.c"), AddressingStyle::Virtual);
        let e = err_of(&full("  addressing_style: sideways\n"));
        assert!(
            e.contains("field `s3.addressing_style`: 'sideways' is not one of path, virtual, auto"),
            "{e}"
        );
    }

    #[test]
    fn prefix_rules() {
        assert_eq!(normalize_prefix("/a/b").unwrap(), "a/b/");
        assert_eq!(normalize_prefix("a/").unwrap(), "a/");
        assert_eq!(normalize_prefix("/").unwrap(), "");
        for bad in ["a//b", "../x", "/../x", "..", "a\0b"] {
            assert!(normalize_prefix(bad).is_err(), "{bad:?}");
        }
        let e = err_of(&full("  prefix: \"a//b\"\n"));
        assert!(e.contains("field `s3.prefix`: 'a//b' contains '//'"), "{e}");
    }

    #[test]
    fn secrets_never_shown() {
        let s = Secret::new(SECRET);
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        let mut c = load_file(&full("")).unwrap();
        c.session_token = Some(Secret::new("tokentokentoken"));
        let dbg = format!("{c:?} {c:#?}");
        assert!(
            !dbg.contains(SECRET) && !dbg.contains("tokentokentoken"),
            "{dbg}"
        );
        assert!(dbg.contains("<redacted>"));
        let ov = Overrides {
            secret_access_key: Some(Secret::new(SECRET)),
            ..Default::default()
        };
        assert!(!format!("{ov:?}").contains(SECRET));
        // errors after the secret was read don't carry it either
        let e = err_of(&full("  endpoint: \"bad host\"\n"));
        assert!(!e.contains(SECRET), "{e}");
    }

    #[test]
    fn ini_parser_tolerates_junk() {
        let ini = parse_ini("junk\n[ profile   x ]\nk = v = w\n  nested = 1\n#c\n[y\n");
        assert_eq!(ini["profile x"]["k"], "v = w");
        assert!(!ini["profile x"].contains_key("nested"));
    }

    /// One input of the config fuzz: load it; Ok or a one-line error that does not show the
    /// secret. Returns true if it loaded.
    fn check_config_text(path: &Path, text: &str) -> bool {
        fs::write(path, text).unwrap();
        let result = load_with(Some(path), &[], Overrides::default(), None);
        // The secret as this document has it (mutations may have changed it, or moved it into
        // another field); when the text is not YAML, the original if it is still in its place.
        let secret = match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
            Ok(v) => v
                .get("s3")
                .and_then(|s| s.get("secret_access_key"))
                .and_then(|s| s.as_str())
                .map(str::to_string)
                .unwrap_or_default(),
            Err(_) if text.contains(&format!("secret_access_key: \"{SECRET}\"")) => {
                SECRET.to_string()
            }
            Err(_) => String::new(),
        };
        // Only meaningful when the text has it once, as the secret (a mutation may have copied
        // it into another field, whose value an error may rightly quote).
        let check_secret = secret.len() >= 8 && text.matches(secret.as_str()).count() == 1;
        match result {
            Ok(c) => {
                let dbg = format!("{c:?}");
                assert!(
                    !check_secret || !dbg.contains(&secret),
                    "Debug shows the secret for {text:?}"
                );
                true
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "not one line: {msg:?} for {text:?}");
                assert!(!msg.is_empty());
                assert!(
                    !check_secret || !msg.contains(&secret),
                    "the error shows the secret: {msg:?} for {text:?}"
                );
                false
            }
        }
    }

    #[test]
    fn fuzz_config_files() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config as RunnerConfig, TestRunner};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s3.yaml");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let (mut inputs, mut loaded) = (0u64, 0u64);

        // 1. Random mutations of a valid config (deterministic xorshift).
        let base = full(
            "  endpoint: \"s3-us-west-2.amazonaws.com\"\n  tls: true\n  region: us-west-2\n  addressing_style: auto\n  prefix: some/prefix/\n",
        );
        assert!(check_config_text(&path, &base));
        const PIECES: &[&str] = &[
            ":",
            ": ",
            "-",
            " ",
            "  ",
            "\n",
            "\t",
            "\"",
            "'",
            "[",
            "]",
            "{",
            "}",
            "&a",
            "*a",
            "!!str",
            "!!binary",
            "#",
            "|",
            ">",
            "%",
            "@",
            "`",
            "\0",
            "é",
            "\u{feff}",
            "~",
            "null",
            "true",
            "yes",
            "1e400",
            "-1",
            "0x1F",
            "<<: *a",
            "? ",
            "---",
            "...",
            "s3:",
            "tls:",
            "endpoint:",
            "secret_access_key:",
            "https://",
            "http://",
            "//",
            "\\",
            "\r\n",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..1500 {
            let mut t: Vec<char> = base.chars().collect();
            for _ in 0..=next() % 4 {
                let pos = (next() as usize) % (t.len() + 1);
                match next() % 6 {
                    0 => {
                        let end = (pos + (next() as usize) % 12).min(t.len());
                        t.drain(pos..end);
                    }
                    1 => {
                        let p = PIECES[(next() as usize) % PIECES.len()];
                        t.splice(pos..pos, p.chars());
                    }
                    2 if pos < t.len() => {
                        t[pos] = char::from_u32((next() % 0x250) as u32).unwrap_or('x')
                    }
                    3 => {
                        // Duplicate a slice (a repeated key, a nested block, ...).
                        let start = (next() as usize) % (t.len() + 1);
                        let end = (start + (next() as usize) % 40).min(t.len());
                        let chunk: Vec<char> = t[start..end].to_vec();
                        t.splice(pos..pos, chunk);
                    }
                    4 => t.truncate(pos),
                    _ => {
                        // Re-indent a line.
                        let line_start = t[..pos]
                            .iter()
                            .rposition(|c| *c == '\n')
                            .map_or(0, |i| i + 1);
                        t.splice(line_start..line_start, [' ']);
                    }
                }
            }
            let text: String = t.into_iter().collect();
            inputs += 1;
            loaded += u64::from(check_config_text(&path, &text));
        }

        // 2. Arbitrary YAML-ish documents.
        let count = std::cell::Cell::new((0u64, 0u64));
        let scalar = prop_oneof![
            any::<String>(),
            "[ -~]{0,30}",
            Just(SECRET.to_string()),
            Just("true".to_string()),
            Just("[1, 2]".to_string()),
            Just("{a: b}".to_string()),
        ];
        let field = prop_oneof![
            proptest::sample::select(S3_FIELDS.to_vec()).prop_map(str::to_string),
            "[a-z_]{1,12}",
        ];
        let doc = prop_oneof![
            any::<String>(),
            proptest::collection::vec((field, scalar), 0..8).prop_map(|fields| {
                let mut d = String::from("s3:\n");
                for (f, v) in fields {
                    d.push_str(&format!("  {f}: {v}\n"));
                }
                d
            }),
        ];
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 1000,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        runner
            .run(&doc, |text| {
                let ok = check_config_text(&path, &text);
                let (n, l) = count.get();
                count.set((n + 1, l + u64::from(ok)));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let (n, l) = count.get();
        inputs += n;
        loaded += l;
        eprintln!(
            "config files: {inputs} inputs fuzzed ({loaded} loaded, the rest one-line errors)"
        );
    }
}
