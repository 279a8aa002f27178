//! What a mount and the recovery commands both need: the configuration from the flags, a
//! client for it, the bucket check before mounting, and the cache directory and its rules.

use std::path::{Path, PathBuf};

use s3mount::config::{LoadRequest, Overrides};
use s3mount::s3::private::{self, DirState};
use s3mount::s3::{ClientConfig, ListRequest, S3Client, Storage};

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

/// A client for `config` (with `--ca-file`).
pub fn make_storage(
    cli: &Cli,
    config: &s3mount::Config,
    bucket: Option<String>,
) -> Result<Storage, String> {
    let mut client_cfg = ClientConfig::from_config(config);
    client_cfg.ca_file = cli.ca_file.clone();
    let client = S3Client::new(client_cfg).map_err(|e| e.to_string())?;
    Ok(Storage::with_client(client, bucket))
}

/// Fail early and clearly: bucket exists, credentials work, listing is allowed.
pub fn preflight(storage: &Storage, bucket: &str, prefix: &str) -> Result<(), String> {
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
        .map_err(|e| format!("cannot use bucket {bucket:?}: {e}"))?;
    storage
        .head_bucket(bucket)
        .map_err(|e| format!("cannot use bucket {bucket:?}: {e}"))?;
    Ok(())
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
