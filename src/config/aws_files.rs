//! The AWS shared files, `~/.aws/credentials` and `~/.aws/config` (or the files that
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name): the selected profile's settings,
//! read the way the AWS CLI reads them.

use super::credentials::{CredSource, Secret};
use super::error::ConfigError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One of the two shared files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SharedFile {
    /// `~/.aws/credentials`: sections named `[NAME]`.
    Credentials,
    /// `~/.aws/config`: sections named `[profile NAME]`, and `[default]`.
    Config,
}

impl SharedFile {
    /// How messages name the file.
    fn kind(self) -> &'static str {
        match self {
            SharedFile::Credentials => "shared credentials file",
            SharedFile::Config => "shared config file",
        }
    }
}

/// Keys → values of one section.
type Section = HashMap<String, String>;

/// Sections → keys → values of one file.
type Ini = HashMap<String, Section>;

/// The selected profile's sections from `~/.aws/credentials` and
/// `~/.aws/config`. No `Debug`: values include secrets.
pub(super) struct SharedProfile {
    profile: String,
    /// (origin text, keys) per file, when the profile exists there.
    credentials: Option<(String, Section)>,
    config: Option<(String, Section)>,
}

impl SharedProfile {
    /// Reads both files for `profile` (`--profile`, else `AWS_PROFILE`, else
    /// `default`). Missing files are fine; a profile named explicitly but
    /// found in neither file is an error (it is almost always a typo).
    ///
    /// `env` must already treat empty variables as unset.
    pub(super) fn load(
        env: &dyn Fn(&str) -> Option<String>,
        profile: Option<String>,
    ) -> Result<Self, ConfigError> {
        let (profile, explicit) = match profile.or_else(|| env("AWS_PROFILE")) {
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

        let mut cred_ini = read_ini(cred_path.as_deref(), SharedFile::Credentials)?;
        let mut conf_ini = read_ini(conf_path.as_deref(), SharedFile::Config)?;
        // The config file spells non-default profiles "[profile NAME]".
        let conf_section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        let pick = |ini: &mut Option<Ini>, p: &Option<PathBuf>, file: SharedFile, section: &str| {
            let keys = ini.as_mut()?.remove(section)?;
            let path = p.as_ref()?.display().to_string();
            Some((format!("{} {path} [profile {profile}]", file.kind()), keys))
        };
        let credentials = pick(&mut cred_ini, &cred_path, SharedFile::Credentials, &profile);
        let config = pick(&mut conf_ini, &conf_path, SharedFile::Config, &conf_section)
            // "[profile default]" is accepted by the AWS CLI too.
            .or_else(|| match profile.as_str() {
                "default" => pick(
                    &mut conf_ini,
                    &conf_path,
                    SharedFile::Config,
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

    fn part(&self, file: SharedFile) -> Option<&(String, Section)> {
        match file {
            SharedFile::Credentials => self.credentials.as_ref(),
            SharedFile::Config => self.config.as_ref(),
        }
    }

    /// The profile's value of `key` in `file`; an empty value means "not set".
    pub(super) fn get(&self, file: SharedFile, key: &str) -> Option<String> {
        let value = self.part(file)?.1.get(key)?;
        (!value.trim().is_empty()).then(|| value.clone())
    }

    /// Where the profile's section of `file` is, for messages; `""` when it has none.
    pub(super) fn origin(&self, file: SharedFile) -> &str {
        self.part(file).map_or("", |(o, _)| o.as_str())
    }

    /// Credentials from one of the files (botocore also reads keys from the
    /// config file, so we do too, after the credentials file).
    pub(super) fn creds(&self, file: SharedFile) -> CredSource {
        let origin = self
            .part(file)
            .map_or_else(|| format!("profile {}", self.profile), |(o, _)| o.clone());
        CredSource {
            origin,
            fields: ("aws_access_key_id", "aws_secret_access_key"),
            key: self.get(file, "aws_access_key_id"),
            secret: self.get(file, "aws_secret_access_key").map(Secret::new),
            token: self.get(file, "aws_session_token").map(Secret::new),
        }
    }
}

/// Reads and parses one shared file; `Ok(None)` if there is no path or no file.
fn read_ini(path: Option<&Path>, file: SharedFile) -> Result<Option<Ini>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let fail = |m: String| {
        ConfigError::new(
            Some(&format!("{} {}", file.kind(), path.display())),
            None,
            m,
        )
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(parse_ini(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(format!("cannot read: {e}"))),
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
    use super::super::test_support::*;
    use super::super::Overrides;
    use super::*;
    use std::fs;

    #[test]
    fn ini_parser_tolerates_junk() {
        let ini = parse_ini("junk\n[ profile   x ]\nk = v = w\n  nested = 1\n#c\n[y\n");
        assert_eq!(ini["profile x"]["k"], "v = w");
        assert!(!ini["profile x"].contains_key("nested"));
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
}
