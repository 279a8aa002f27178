//! [`ConfigError`]: every configuration problem as one line naming where it came from, the
//! field and what is wrong.

use std::fmt;

/// A configuration problem. `Display` is one line, "ORIGIN: field `FIELD`:
/// WHAT IS WRONG", with the origin and field parts present when known.
#[derive(Debug, Clone)]
pub struct ConfigError {
    origin: Option<String>,
    field: Option<String>,
    message: String,
}

impl ConfigError {
    pub(super) fn new(
        origin: Option<&str>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
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
