//! Name rules: which kernel names can be keys, and which key components can be file names.
//!
//! A file name is one key component: UTF-8 (keys are UTF-8), not empty, not `.` or `..`,
//! without NUL or `/`, and at most [`LONGEST_NAME`] bytes (the most a FUSE request carries). A
//! key whose component breaks a rule is hidden from listings (and logged once) rather than shown
//! under a name that would map to another key.
//!
//! Names the mount makes (create, mkdir, symlink, mknod, a rename's target) are at most
//! [`NAME_MAX`] bytes, as on a disk, and `statfs` says so; an object another client named with
//! a longer component is still shown, read, renamed and removed — hidden, a `cp -r` of the
//! tree would silently leave it behind. A lookup of a longer name that finds nothing is
//! ENAMETOOLONG, as on a disk, not ENOENT.

use super::error::{FsError, FsResult};
use super::S3Fs;
pub use crate::s3::name::MAX_KEY_BYTES;

/// Longest name the mount gives a new entry, in bytes (Linux's `NAME_MAX`; `statfs` says it).
pub const NAME_MAX: usize = 255;

/// Longest name shown at all, in bytes: the most the kernel's FUSE client passes
/// (`FUSE_NAME_MAX`); an existing object's longer component stays hidden.
pub const LONGEST_NAME: usize = 1024;

impl S3Fs {
    /// ENAMETOOLONG, as a path over `PATH_MAX` is on a disk, if `key` (the mount's prefix
    /// included) is longer than the server keeps: over [`MAX_KEY_BYTES`] on a server known to
    /// refuse such keys — Amazon S3 from the start, another once it refused one
    /// ([`crate::s3::Capabilities::limits_keys`]). Until then the server decides: moto and
    /// Garage keep longer keys, and a lookup of one asks with a HEAD, whose refusal teaches.
    pub(crate) fn check_key_len(&self, key: &str) -> FsResult<()> {
        check_key_len(key, self.bucket.capabilities().limits_keys())
    }
}

/// ENAMETOOLONG if `key` is longer than [`MAX_KEY_BYTES`] and the server is `limited` to it.
pub fn check_key_len(key: &str, limited: bool) -> FsResult<()> {
    if limited && key.len() > MAX_KEY_BYTES {
        return Err(FsError::new(
            libc::ENAMETOOLONG,
            format!(
                "{}...: a key of {} bytes, over S3's {MAX_KEY_BYTES}",
                key.chars().take(64).collect::<String>(),
                key.len()
            ),
        ));
    }
    Ok(())
}

/// Validate the name of an existing entry coming from the kernel (a lookup, an unlink, a
/// rename's source).
pub fn name_str(name: &std::ffi::OsStr) -> FsResult<&str> {
    let s = name.to_str().ok_or_else(|| {
        FsError::new(
            libc::EINVAL,
            format!("{name:?}: file names must be UTF-8 to be S3 keys"),
        )
    })?;
    if s.len() > LONGEST_NAME {
        return Err(too_long(s, LONGEST_NAME));
    }
    Ok(s)
}

/// Validate the name of an entry the mount is to make: at most [`NAME_MAX`] bytes.
pub fn new_name_str(name: &std::ffi::OsStr) -> FsResult<&str> {
    let s = name_str(name)?;
    if s.len() > NAME_MAX {
        return Err(too_long(s, NAME_MAX));
    }
    Ok(s)
}

/// ENAMETOOLONG for the name `s`, over `limit` bytes.
pub fn too_long(s: &str, limit: usize) -> FsError {
    FsError::new(
        libc::ENAMETOOLONG,
        format!(
            "{}...: longer than {limit} bytes",
            s.chars().take(64).collect::<String>()
        ),
    )
}

/// True if a key component can be shown as a file name.
pub fn valid_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= LONGEST_NAME
        && !name.contains('\0')
}

/// The name under which a listing entry of the directory `prefix` appears: `key` is an
/// object's key (`common_prefix` false) or a common prefix ending in `/`. `None` when it cannot
/// be a name there — not under `prefix` (a server that answers something else), the marker
/// itself, more than one component, or an invalid component — so a listing can never show
/// `.`, `..`, an empty name or a name with a `/`, whatever keys the bucket holds.
pub fn listed_name<'a>(prefix: &str, key: &'a str, common_prefix: bool) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?;
    let name = if common_prefix {
        rest.strip_suffix('/')?
    } else {
        rest
    };
    (valid_component(name) && !name.contains('/')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Components a bucket may hold: good names and every kind of bad one.
    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-zA-Z0-9 ._~+-]{1,12}",
            1 => Just(String::new()),
            1 => Just(".".to_string()),
            1 => Just("..".to_string()),
            1 => Just("x".repeat(255)),
            1 => Just("y".repeat(256)),
            1 => Just("é".repeat(128)), // 256 bytes
            1 => Just("nul\0byte".to_string()),
            1 => any::<String>(),
        ]
    }

    fn path_of(parts: Vec<String>, lead: bool, trail: bool) -> String {
        let mut s = parts.join("/");
        if lead {
            s.insert(0, '/');
        }
        if trail {
            s.push('/');
        }
        s
    }

    fn key() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(component(), 1..5),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(p, l, t)| path_of(p, l, t))
    }

    /// A directory's prefix: "" (the root) or components ending in `/`.
    fn prefix() -> impl Strategy<Value = String> {
        proptest::collection::vec("[a-zA-Z0-9é._-]{1,6}", 0..3).prop_map(|p| {
            if p.is_empty() {
                String::new()
            } else {
                format!("{}/", p.join("/"))
            }
        })
    }

    fn runner(cases: u32) -> TestRunner {
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        })
    }

    #[test]
    fn listed_names_are_single_valid_components_that_map_back_to_their_key() {
        let count = std::cell::Cell::new(0u64);
        let strategy = (prefix(), key(), any::<bool>(), any::<bool>());
        runner(3000)
            .run(&strategy, |(prefix, key, common, under)| {
                count.set(count.get() + 1);
                // Half the keys under the prefix (what a server answers), half anything.
                let key = if under { format!("{prefix}{key}") } else { key };
                let common = common && key.ends_with('/');
                if let Some(name) = listed_name(&prefix, &key, common) {
                    prop_assert!(valid_component(name), "{name:?}");
                    prop_assert!(!name.contains('/') && name != "." && name != "..");
                    let back = format!("{prefix}{name}{}", if common { "/" } else { "" });
                    prop_assert_eq!(back, key.clone(), "name {:?} does not map back", name);
                } else if let Some(rest) = key.strip_prefix(&prefix) {
                    let n = if common {
                        rest.strip_suffix('/').unwrap_or(rest)
                    } else {
                        rest
                    };
                    prop_assert!(
                        !valid_component(n) || n.contains('/'),
                        "{key:?} hidden although {n:?} is a good name"
                    );
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("listed_name: {} inputs fuzzed", count.get());
    }

    #[test]
    fn keys_up_to_s3s_limit() {
        assert!(check_key_len(&"k".repeat(MAX_KEY_BYTES), true).is_ok());
        assert!(check_key_len(&"k".repeat(4 * MAX_KEY_BYTES), false).is_ok());
        let e = check_key_len(&"k".repeat(MAX_KEY_BYTES + 1), true).unwrap_err();
        assert_eq!(e.errno, libc::ENAMETOOLONG);
        // Bytes, not characters.
        assert!(check_key_len(&"é".repeat(MAX_KEY_BYTES / 2 + 1), true).is_err());
        let long = std::ffi::OsString::from("n".repeat(NAME_MAX + 1));
        assert_eq!(new_name_str(&long).unwrap_err().errno, libc::ENAMETOOLONG);
        assert!(
            name_str(&long).is_ok(),
            "an existing object's may be longer"
        );
        let longest = std::ffi::OsString::from("n".repeat(LONGEST_NAME + 1));
        assert_eq!(name_str(&longest).unwrap_err().errno, libc::ENAMETOOLONG);
    }

    #[test]
    fn listed_name_examples() {
        assert_eq!(listed_name("d/", "d/f", false), Some("f"));
        assert_eq!(listed_name("d/", "d/s/", true), Some("s"));
        assert_eq!(listed_name("", "a", false), Some("a"));
        for (prefix, key, common) in [
            ("d/", "d/", false),     // the marker
            ("d/", "d//", true),     // empty component
            ("d/", "d/../", true),   // parent
            ("", "../x", false),     // would escape
            ("", "./", true),        // current
            ("", "/", true),         // leading slash
            ("d/", "d/a/b", false),  // not a direct child
            ("d/", "e/f", false),    // not under the prefix
            ("ab/", "éé/", true),    // not under it, and no char boundary at 3
            ("d/", "d/a\0b", false), // NUL
            ("d/", "d/x//", true),   // two slashes
        ] {
            assert_eq!(listed_name(prefix, key, common), None, "{prefix:?} {key:?}");
        }
        let long = format!("d/{}", "l".repeat(256));
        assert_eq!(listed_name("d/", &long, false), Some(&long[2..]));
        let longest = format!("d/{}", "l".repeat(LONGEST_NAME + 1));
        assert_eq!(listed_name("d/", &longest, false), None);
    }
}
