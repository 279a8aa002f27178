//! Credentials: the [`Secret`] that never prints itself, and the rule that a key id and its
//! secret come as a pair from one source.

use super::error::ConfigError;
use std::fmt;

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

/// Resolved credentials plus a description of their source.
pub(super) struct Creds {
    pub key: String,
    pub secret: Secret,
    pub token: Option<Secret>,
    /// Where they came from, for messages; never the secret.
    pub source: String,
}

/// What one source says about credentials, each part possibly absent.
pub(super) struct CredSource {
    /// Where the source is, e.g. `environment` or `config /etc/s3mount.yaml`.
    pub origin: String,
    /// The names of the key-id and secret fields there, for messages.
    pub fields: (&'static str, &'static str),
    pub key: Option<String>,
    pub secret: Option<Secret>,
    pub token: Option<Secret>,
}

/// Takes the first source that mentions credentials; a half pair there is an
/// error rather than being completed from another source (mixing a key id
/// and a secret from different places gives baffling signature errors).
pub(super) fn first_creds(sources: Vec<CredSource>) -> Result<Creds, ConfigError> {
    for source in sources {
        let (id_field, secret_field) = source.fields;
        let missing = |field, other| {
            ConfigError::new(
                Some(&source.origin),
                Some(field),
                format!("is missing while {other} is set; credentials must come as a pair from one place"),
            )
        };
        match (source.key, source.secret) {
            (Some(key), Some(secret)) => {
                return Ok(Creds {
                    key,
                    secret,
                    token: source.token,
                    source: source.origin,
                })
            }
            (None, None) => continue,
            (Some(_), None) => return Err(missing(secret_field, id_field)),
            (None, Some(_)) => return Err(missing(id_field, secret_field)),
        }
    }
    Err(ConfigError::new(
        None,
        None,
        "no credentials: set access_key_id/secret_access_key in the config, \
         AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials",
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Overrides;
    use super::*;

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
}
