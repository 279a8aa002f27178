//! Helpers shared by the config tests: seed files on disk, a fake environment, loading.

use super::{Config, ConfigError, LoadRequest, Overrides};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub(super) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// Seed-style file with the given body, mode 0600, in a fresh tempdir.
pub(super) fn seed(body: &str) -> (tempfile::TempDir, PathBuf) {
    seed_mode(body, 0o600)
}

/// Like [`seed`], with the given mode.
pub(super) fn seed_mode(body: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s3.yaml");
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    (dir, path)
}

pub(super) fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

pub(super) fn load_with(
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

pub(super) fn load_file(body: &str) -> Result<Config, ConfigError> {
    let (_d, p) = seed(body);
    load_with(Some(&p), &[], Overrides::default(), None)
}

pub(super) fn err_of(body: &str) -> String {
    match load_file(body) {
        Ok(_) => panic!("expected an error for {body:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn full(extra: &str) -> String {
    format!(
        "s3:\n  access_key_id: AKIAFILE\n  secret_access_key: \"{SECRET}\"\n  default_bucket: com.prometheus.cgtest-1\n{extra}"
    )
}
