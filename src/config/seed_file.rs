//! The seed's YAML file: its `s3:` section read with a permission check, parsed, and every
//! problem told in one line that names the field and where it is.

use super::error::ConfigError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_path_to_error::Segment;
use std::io::Read;
use std::path::Path;

/// Largest config file we accept; anything bigger is surely not a config and
/// reading it whole could exhaust memory.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The `s3:` section. No `Debug`: it holds the secret in plain text.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct S3Section {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub default_bucket: Option<String>,
    pub endpoint: Option<String>,
    pub tls: Option<bool>,
    pub region: Option<String>,
    pub addressing_style: Option<String>,
    pub prefix: Option<String>,
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
pub(super) fn read_seed(path: &Path, allow_insecure: bool) -> Result<S3Section, ConfigError> {
    let origin = format!("config {}", path.display());
    let fail = |m: String| ConfigError::new(Some(&origin), None, m);
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if meta.is_dir() {
        // Before the mode check, whose `chmod 600` would be no fix for it.
        return Err(fail("is a directory, not a config file".to_string()));
    }
    #[cfg(unix)]
    if !allow_insecure {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
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

/// A YAML error together with the path of the field it is about.
type YamlError = serde_path_to_error::Error<serde_yaml_ng::Error>;

/// Deserializes `text`, keeping track of the field being read.
fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
}

/// Parses the YAML text; `origin` prefixes every error.
fn parse_seed(origin: &str, text: &str) -> Result<S3Section, ConfigError> {
    // First as an untyped value: gives syntax errors with a location and lets
    // us tell "empty" and "no s3: section" apart, which serde would merge.
    let value: serde_yaml_ng::Value = from_yaml(text).map_err(|e| yaml_error(origin, &e))?;
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
    let seed: SeedFile = from_yaml(text)
        .map_err(|e| unknown_field(origin, &e).unwrap_or_else(|| yaml_error(origin, &e)))?;
    seed.s3.ok_or_else(|| fail("has no `s3:` section"))
}

/// `line L column C` of an error, when the YAML crate knows it.
fn location(e: &YamlError) -> Option<String> {
    e.inner()
        .location()
        .map(|l| format!("line {} column {}", l.line(), l.column()))
}

/// The dotted path of the field an error is about (`s3.tls`), `""` for the whole document. A
/// key that is not a string ends it: such a key belongs to the mapping that holds it.
fn field_path(e: &YamlError) -> String {
    let mut path = String::new();
    for segment in e.path() {
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    path
}

/// An error about a key of `s3:` that is none of its fields: with `deny_unknown_fields`
/// nothing deeper is read, so the path ends at that key.
fn unknown_field(origin: &str, e: &YamlError) -> Option<ConfigError> {
    let segments: Vec<&Segment> = e.path().iter().collect();
    let [Segment::Map { key: section }, Segment::Map { key: name }] = segments[..] else {
        return None;
    };
    if section != "s3" || S3_FIELDS.contains(&name.as_str()) {
        return None;
    }
    let at = location(e)
        .map(|l| format!(" (at {l})"))
        .unwrap_or_default();
    Some(ConfigError::new(
        Some(origin),
        None,
        format!(
            "unknown field `s3.{name}` (expected one of {}){at}",
            S3_FIELDS.join(", ")
        ),
    ))
}

/// Turns a YAML error into our one-line form, from the facts the crates give: the field path
/// (serde_path_to_error) and the location (serde_yaml_ng). Values of secret fields are never
/// echoed.
fn yaml_error(origin: &str, e: &YamlError) -> ConfigError {
    let loc = location(e);
    let at = loc
        .as_ref()
        .map(|l| format!(" (at {l})"))
        .unwrap_or_default();
    let path = field_path(e);
    let (path, message) = match split_message(e, &path, loc.as_deref()) {
        (Some(path), message) => (path, message),
        (None, message) => {
            let loc = loc.map(|l| format!("{l}: ")).unwrap_or_default();
            return ConfigError::new(Some(origin), None, format!("{loc}invalid YAML: {message}"));
        }
    };
    // serde words a type mismatch `invalid type: FOUND, expected WHAT` (the default
    // `de::Error::invalid_type`), and that text is all serde_yaml_ng keeps of it; FOUND, serde's
    // own description of the value, is the one fact read from it.
    let found = message
        .strip_prefix("invalid type: ")
        .and_then(|r| r.rsplit_once(", expected "))
        .map(|(found, _)| found);
    let Some(found) = found else {
        return ConfigError::new(Some(origin), Some(path), format!("{message}{at}"));
    };
    // `string "hunter2"` → `string` for secrets.
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

/// The message of a YAML error without its location, and the field it is about, if any.
///
/// serde_yaml_ng shows an error only as text, with no accessor for the message alone:
/// `PATH: MESSAGE at LOCATION` for what serde found wrong with a value, `PROBLEM at LOCATION,
/// CONTEXT at ...` for libyaml's syntax errors, which have a location but no field even when
/// they happen inside one. The location and path are known already and taken off; whether
/// the crate put a path in front is what tells the two kinds apart. (For an error in a key the
/// crate's PATH names the mapping, the start of `path`.)
fn split_message<'p>(e: &YamlError, path: &'p str, loc: Option<&str>) -> (Option<&'p str>, String) {
    let text = e.inner().to_string();
    let text = match loc {
        Some(l) => text.replacen(&format!(" at {l}"), "", 1),
        None => text,
    };
    match text.split_once(": ") {
        Some((prefix, message)) if !path.is_empty() && path.starts_with(prefix) => {
            (Some(path), message.to_string())
        }
        _ => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{Config, LoadRequest, Overrides};
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_is_not_taken_for_a_config_with_wrong_modes() {
        // `--config /etc/s3mount` (the directory, not the file in it): a 0755 directory was
        // refused as "readable by group or others", with a `chmod 600` of the directory as the
        // fix, which only gave "Is a directory" next.
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for allow_insecure in [false, true] {
            let e = read_seed(dir.path(), allow_insecure)
                .err()
                .expect("a directory is refused")
                .to_string();
            assert_eq!(
                e,
                format!(
                    "config {}: is a directory, not a config file",
                    dir.path().display()
                )
            );
        }
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
