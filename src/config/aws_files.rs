//! The AWS shared files, `~/.aws/credentials` and `~/.aws/config` (or the files that
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name): the selected profile's settings,
//! read the way the AWS CLI reads them.

use super::credentials::{CredSource, Secret};
use super::error::ConfigError;
use configparser::ini::{Ini as IniParser, IniDefault};
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

/// Where the INI parser puts lines that come before any `[section]`: a name that no section
/// header can produce (a header is one line), so such lines belong to no profile and are
/// ignored, as the AWS tools do not own these files alone.
const NO_SECTION: &str = "\n";

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
        Ok(text) => parse_ini(text)
            .map(Some)
            .map_err(|e| fail(format!("cannot parse: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(format!("cannot read: {e}"))),
    }
}

/// Parses a shared file as the AWS CLI does. botocore reads these files with Python's
/// configparser, and the `configparser` crate follows that module (and has no dependencies of
/// its own), so the two agree on what AWS files contain: `[section]` headers, `key = value`
/// with spaces around `=` and values that contain `=`, `#` and `;` comment lines, the later of
/// two duplicate keys winning, and indented lines continuing the value above them. AWS writes
/// nested blocks that way (`s3 =` then `  addressing_style = path`); s3mount reads none of
/// them, so only the first line of a value is kept. Lines without `=` are ignored (other tools
/// share these files); a `[` without its `]` or a line starting with `=` makes the file
/// unreadable, as it does for the AWS CLI.
/// Section names have their inner spaces collapsed (`[profile   x]` is profile `x`, as botocore
/// splits them); key names are lower-cased.
fn parse_ini(text: String) -> Result<Ini, String> {
    let mut options = IniDefault::default();
    options.default_section = NO_SECTION.to_string();
    // Profile names are case-sensitive; only key names are folded, below.
    options.case_sensitive = true;
    // `=` alone separates key and value, and `#`/`;` start a comment only at the start of a
    // line, so secrets and URLs holding `:`, `#` or `;` stay whole.
    options.delimiters = vec!['='];
    options.enable_inline_comments = false;
    options.multiline = true;
    let parsed = IniParser::new_from_defaults(options).read(text)?;

    let mut ini = Ini::new();
    for (name, keys) in parsed {
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        let section = ini.entry(name).or_default();
        for (key, value) in keys {
            if let Some(value) = value {
                let first_line = value.lines().next().unwrap_or_default();
                section.insert(key.to_ascii_lowercase(), first_line.to_string());
            }
        }
    }
    ini.remove(NO_SECTION);
    Ok(ini)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Overrides;
    use super::*;
    use std::fs;

    #[test]
    fn ini_parser_reads_what_aws_files_hold() {
        let ini = parse_ini(
            "junk\n[ profile   x ]\nk = v = w\n  nested = 1\n#c\n; c\nK2=first\nurl = http://h:9000/#a;b\nk2 = later\n\
             s3 =\n  addressing_style = path\n\n  max_concurrent_requests = 4\nregion = r\n\
             [Work]\nregion=\n"
                .to_string(),
        )
        .unwrap();
        let x = &ini["profile x"];
        assert_eq!(x["k"], "v = w");
        assert!(!x.contains_key("nested") && !x.contains_key("addressing_style"));
        assert_eq!(x["k2"], "later");
        assert_eq!(x["url"], "http://h:9000/#a;b");
        assert_eq!(x["s3"], "");
        assert_eq!(x["region"], "r");
        assert!(!x.contains_key("junk"));
        assert_eq!(ini["Work"]["region"], "");
        assert!(!ini.contains_key("work") && !ini.contains_key(NO_SECTION));
        // Lines before the first section belong to no profile.
        let ini = parse_ini("aws_access_key_id = A\n[default]\n".to_string()).unwrap();
        assert!(ini["default"].is_empty());
    }

    #[test]
    fn ini_parser_never_panics() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config as RunnerConfig, TestRunner};
        let line = prop_oneof![
            any::<String>(),
            "[ \t]{0,3}[\\[\\]=#; a-zA-Z0-9_:/\t-]{0,20}",
            Just("[profile x]".to_string()),
            Just("s3 =".to_string()),
        ];
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 2000,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let count = std::cell::Cell::new((0u32, 0u32));
        runner
            .run(&proptest::collection::vec(line, 0..12), |lines| {
                let (n, ok) = count.get();
                let parsed = parse_ini(lines.join("\n")).is_ok();
                count.set((n + 1, ok + u32::from(parsed)));
                Ok(())
            })
            .unwrap();
        let (files, parsed) = count.get();
        eprintln!("shared files: {files} inputs fuzzed ({parsed} parsed, the rest errors)");
    }

    #[test]
    fn broken_section_header_is_named() {
        let home = tempfile::tempdir().unwrap();
        let conf = home.path().join("config");
        fs::write(&conf, "[default]\nregion = eu-west-1\n[profile x\n").unwrap();
        let e = load_with(
            None,
            &[("AWS_CONFIG_FILE", conf.to_str().unwrap())],
            Overrides::default(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(&format!(
                "shared config file {}: cannot parse: line 3",
                conf.display()
            )),
            "{e}"
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
}
