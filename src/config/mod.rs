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
//!
//! Each source or concern has its own module: this one merges; `endpoint` parses where requests go,
//! `names` checks regions, buckets and prefixes, `seed_file` reads the YAML, `aws_files` the
//! AWS shared files, and `credentials` holds the [`Secret`] and the pair rule.

mod aws_files;
mod credentials;
mod endpoint;
mod error;
mod names;
mod seed_file;
#[cfg(test)]
mod test_support;

pub use credentials::Secret;
pub use endpoint::{AddressingStyle, Endpoint};
pub use error::ConfigError;
pub use names::is_dns_compatible_bucket;

use aws_files::{SharedFile, SharedProfile};
use credentials::{first_creds, CredSource};
use endpoint::DEFAULT_REGION;
use names::{normalize_prefix, validate_bucket, validate_region};
use seed_file::{read_seed, S3Section};
use std::path::Path;

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
        let shared = SharedProfile::load(&env, nonempty(req.profile.clone()))?;

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
                shared.origin(SharedFile::Config),
                "region",
                shared.get(SharedFile::Config, "region"),
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
                shared.origin(SharedFile::Config),
                "endpoint_url",
                shared.get(SharedFile::Config, "endpoint_url"),
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
            CredSource {
                origin: "command line".to_string(),
                fields: ("--access-key-id", "--secret-access-key"),
                key: nonempty(ov.access_key_id.clone()),
                secret: ov
                    .secret_access_key
                    .clone()
                    .filter(|s| !s.expose().is_empty()),
                token: None,
            },
            CredSource {
                origin: "environment".to_string(),
                fields: ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                key: env("AWS_ACCESS_KEY_ID"),
                secret: env("AWS_SECRET_ACCESS_KEY").map(Secret::new),
                token: env("AWS_SESSION_TOKEN").map(Secret::new),
            },
            CredSource {
                origin: forigin.to_string(),
                fields: ("s3.access_key_id", "s3.secret_access_key"),
                key: fget(|s| &s.access_key_id),
                secret: fget(|s| &s.secret_access_key).map(Secret::new),
                token: fget(|s| &s.session_token).map(Secret::new),
            },
            shared.creds(SharedFile::Credentials),
            shared.creds(SharedFile::Config),
        ])?;

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

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

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
}
