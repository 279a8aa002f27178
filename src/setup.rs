//! What a mount and the recovery commands both need: the configuration from the flags, a
//! client for it, the bucket check before mounting, and the cache directory and its rules.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use s3mount::config::{Endpoint, LoadRequest, Overrides};
use s3mount::s3::private::{self, DirState};
use s3mount::s3::{
    ClientConfig, ListRequest, ObjectStore, S3Client, S3Metrics, Storage, StorageError,
};

use crate::cli::Cli;
use crate::opts::MountOptions;

/// The configuration, as the mount loads it (flags over environment over file).
pub fn load_config(
    o: &MountOptions,
    bucket: Option<String>,
    prefix: Option<String>,
) -> Result<s3mount::Config, String> {
    let mut overrides = Overrides {
        endpoint: o.endpoint.clone(),
        region: o.region.clone(),
        bucket,
        prefix,
        ..Overrides::default()
    };
    if o.force_path_style {
        overrides.addressing_style = Some(s3mount::config::AddressingStyle::Path);
    }
    let mut req = LoadRequest::from_process_env(o.config.as_deref());
    req.allow_insecure = o.allow_insecure_config;
    req.overrides = overrides;
    req.profile = o.profile.clone();
    s3mount::Config::load(&req).map_err(|e| e.to_string())
}

/// A client for `config` (with `--ca-file` and `--retry-timeout`), counting its requests and
/// uploads in `metrics` if given.
pub fn make_storage(
    cli: &Cli,
    o: &MountOptions,
    config: &s3mount::Config,
    bucket: Option<String>,
    metrics: Option<Arc<S3Metrics>>,
) -> Result<Storage, String> {
    let mut client_cfg = ClientConfig::from_config(config);
    client_cfg.ca_file = cli.ca_file.clone();
    if let Some(budget) = o.retry_timeout {
        client_cfg = client_cfg.with_retry_budget(budget);
    }
    let mut client = S3Client::new(client_cfg).map_err(|e| e.to_string())?;
    if let Some(m) = metrics {
        client = client.with_metrics(m);
    }
    Ok(Storage::with_client(client, bucket))
}

/// How long the start-up check of the bucket retries a request that failed, at most (a
/// shorter `--retry-timeout` wins): a refused connection or a 503 while a server starts, none
/// after a read timeout. Within systemd's default 90 s for a mount at boot.
const STARTUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Fail early and clearly: bucket exists, credentials work, listing is allowed. The error is
/// the one line of [`bucket_check_error`].
pub fn preflight(
    storage: &Storage,
    endpoint: &Endpoint,
    bucket: &str,
    prefix: &str,
    virtual_hosted: bool,
) -> Result<(), String> {
    // The failure is said once, here: the client does not log it at WARN first. Retries stop
    // after STARTUP_PATIENCE: a server that never replies then fails the mount after one read
    // timeout, not six (three minutes of silence, which a boot waits through).
    let client = storage.client().quiet_failures();
    let storage = Storage::with_client(client.giving_up_after(STARTUP_PATIENCE), None);
    // LIST first: its error reply has a body naming the S3 error code (NoSuchBucket,
    // SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied); a HEAD's has none, so a wrong
    // secret would be reported as a missing s3:ListBucket permission.
    storage
        .list_objects_v2(
            bucket,
            &ListRequest {
                prefix: prefix.to_string(),
                delimiter: Some("/".into()),
                max_keys: Some(1),
                ..Default::default()
            },
        )
        .and_then(|_| storage.head_bucket(bucket))
        .map_err(|e| bucket_check_error(endpoint, bucket, virtual_hosted, &e))
}

/// Why a mount cannot use its bucket, in one line: the endpoint URL, the bucket, the S3 error
/// code where the server sent one, and what to do about it. The same words in the foreground,
/// in the background and under mount(8): the check runs before any of them part ways.
/// `virtual_hosted`: the requests went to `BUCKET.HOST`, not to the endpoint's host.
pub fn bucket_check_error(
    endpoint: &Endpoint,
    bucket: &str,
    virtual_hosted: bool,
    e: &StorageError,
) -> String {
    const CHECK_SERVER: &str = "check the endpoint URL (--endpoint, or endpoint: in the config) and that the server is running";
    let why = match e {
        StorageError::NoSuchBucket { .. } => {
            "it does not exist (NoSuchBucket); check the bucket name and the endpoint, or create the bucket".to_string()
        }
        StorageError::NotFound { code, .. } => format!(
            "not found ({}); check the bucket name and the endpoint",
            code.as_deref().unwrap_or("HTTP 404")
        ),
        StorageError::AccessDenied {
            code,
            message,
            action,
            request_id,
            ..
        } => {
            let fix = match (code.as_str(), action) {
                ("SignatureDoesNotMatch", _) => "check the secret access key".to_string(),
                ("InvalidAccessKeyId", _) => {
                    "check the access key id (is it a key of this endpoint?)".to_string()
                }
                ("ExpiredToken" | "InvalidToken" | "TokenRefreshRequired", _) => {
                    "the session token is invalid or expired: get a new one".to_string()
                }
                (_, Some(a)) => format!(
                    "the credentials' policy must allow {a} on the bucket{}",
                    server_says(message, request_id)
                ),
                (_, None) => format!("check the bucket's policy{}", server_says(message, request_id)),
            };
            format!("access denied ({code}); {fix}")
        }
        StorageError::Http {
            status,
            code,
            message,
            request_id,
            ..
        } => {
            let fix = match code.as_deref() {
                Some(
                    "PermanentRedirect"
                    | "AuthorizationHeaderMalformed"
                    | "IllegalLocationConstraintException",
                ) => "the bucket is in another region: set --region (or region: in the config)",
                _ => CHECK_SERVER,
            };
            let code = code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
            format!("HTTP {status}{code}; {fix}{}", server_says(message, request_id))
        }
        // Virtual-hosted addressing asks the host `BUCKET.HOST`, which the endpoint URL does
        // not show: a server without a name per bucket (an IP address, most local servers)
        // fails the name lookup, and "check the endpoint URL" alone points at the wrong thing.
        StorageError::Network { detail, .. } if virtual_hosted => {
            let detail = detail.strip_prefix("io: ").unwrap_or(detail);
            format!(
                "cannot connect to {bucket}.{} ({detail}); that is virtual-hosted addressing: for a server without a host name per bucket set addressing_style: path in the config (or --force-path-style)",
                endpoint.host_header()
            )
        }
        StorageError::Network { detail, .. } => {
            let detail = detail.strip_prefix("io: ").unwrap_or(detail);
            format!("cannot connect ({detail}); {CHECK_SERVER}")
        }
        StorageError::Timeout { .. } => format!("no reply in time; {CHECK_SERVER}"),
        StorageError::BadReply { detail, .. } => {
            format!("the reply is not an S3 reply ({detail}); check that the endpoint URL is an S3 server's")
        }
        other => other.to_string(),
    };
    format!("cannot use bucket {bucket:?} at {endpoint}: {why}")
}

/// ` (the server says: "…" [request id …])`, for errors without a fix of their own.
fn server_says(message: &str, request_id: &Option<String>) -> String {
    let id = request_id
        .as_deref()
        .map(|i| format!(" [request id {i}]"))
        .unwrap_or_default();
    if message.is_empty() {
        id
    } else {
        format!(" (the server says: {message:?}{id})")
    }
}

/// The start-up check of a cache directory ([`private::secure_dir`]), saying when it tightened
/// one.
pub fn secure_cache_dir(dir: &Path, allow_shared: bool) -> Result<(), String> {
    if let DirState::Tightened { was } = private::secure_dir(dir, allow_shared)? {
        log::warn!(
            "cache dir {}: was mode {was:04o}, open to other users; now {:04o} (pass --allow-shared-cache to keep a shared cache as it is)",
            dir.display(),
            private::DIR_MODE
        );
    }
    Ok(())
}

pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("s3mount");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/s3mount");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/s3mount"),
        None => std::env::temp_dir().join("s3mount"),
    }
}

pub fn cache_subdir(bucket: &str, prefix: &str) -> String {
    let p: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if p.is_empty() {
        bucket.to_string()
    } else {
        format!("{bucket}-{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With virtual-hosted addressing the host that could not be reached is `BUCKET.HOST`, not
    /// the endpoint's: the line names it and the way to path-style, instead of sending the
    /// user to check an endpoint URL that is right (seen with `addressing_style: virtual` and
    /// `endpoint: http://127.0.0.1:9000`: "at http://127.0.0.1:9000: cannot connect (failed
    /// to lookup address information …)").
    #[test]
    fn a_virtual_host_that_cannot_be_reached_is_named() {
        let endpoint = Endpoint::parse("http://127.0.0.1:9000", None).unwrap();
        let e = StorageError::Network {
            what: "GET s3://bk/".into(),
            detail: "io: failed to lookup address information: Name or service not known".into(),
        };
        let line = bucket_check_error(&endpoint, "bk", true, &e);
        assert!(line.starts_with("cannot use bucket \"bk\" at http://127.0.0.1:9000: cannot connect to bk.127.0.0.1:9000 (failed to lookup"), "{line}");
        assert!(line.contains("addressing_style: path"), "{line}");
        let path_style = bucket_check_error(&endpoint, "bk", false, &e);
        assert!(!path_style.contains("bk.127.0.0.1"), "{path_style}");
        assert!(
            path_style.contains("check the endpoint URL"),
            "{path_style}"
        );
    }
}
