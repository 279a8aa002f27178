//! Extended attributes = S3 user metadata.
//!
//! `user.x-amz-meta-NAME` is the object's `x-amz-meta-NAME` (names matched case-insensitively,
//! as S3 lower-cases them). Setting or removing one changes the object in place — a self-copy
//! with `REPLACE` that re-sends the content headers and is guarded by the ETag — or, when the
//! file is open with unsaved changes, is folded into the upload at close. Every other name
//! (`user.mime_type`, `trusted.*`, the bare names FUSE lets through) is kept as s3fs keeps it,
//! in the one entry `x-amz-meta-xattr` (see [`super::xattr_json`]), changed the same way: so
//! `cp --preserve=xattr`, `rsync -X` and s3fs read and write each other's attributes. With
//! `--acl`, the POSIX ACLs, `system.posix_acl_access` and `system.posix_acl_default`, are kept
//! there too, with what the kernel leaves a file system to do about them (see [`super::acl`]).
//! The rest of the `security.` and `system.` namespaces (SELinux labels, capabilities; the ACLs
//! without `--acl`) the mount does not support at all: ENOTSUP there tells GNU `ls -l` so, and
//! it stops asking for the rest of the file system (it asks `security.selinux` and
//! `system.posix_acl_access` of every entry otherwise, round trips that FUSE does not cache);
//! `getfacl` then shows the ACL the mode makes, as on any file system without ACLs.

use super::acl::acl_name;
use super::attr::{FileAttrs, STAT_METADATA};
use super::error::{FsError, FsResult};
use super::xattr_json::{self, storable_name, Xattrs};
use super::S3Fs;
use crate::cache::inode::{AttrUpdate, NodeKind};
use crate::s3::meta::{validate_name, MAX_USER_METADATA_BYTES};
use crate::s3::Metadata;

/// The xattr namespace that maps to user metadata.
pub const XATTR_PREFIX: &str = "user.x-amz-meta-";

/// The namespace the kernel allows on regular files and directories only.
const USER_NAMESPACE: &str = "user.";

/// Namespaces the mount does not support (see the module documentation; the ACL names with
/// `--acl` are answered before): ENOTSUP on get as on set.
const UNSUPPORTED_NAMESPACES: [&str; 2] = ["security.", "system."];

/// True if `name` is in a namespace the mount does not support.
fn unsupported_namespace(name: &std::ffi::OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    UNSUPPORTED_NAMESPACES
        .iter()
        .any(|ns| bytes.starts_with(ns.as_bytes()))
}

fn metadata_name(xattr: &std::ffi::OsStr) -> Option<String> {
    let s = xattr.to_str()?;
    let short = s
        .get(..XATTR_PREFIX.len())?
        .eq_ignore_ascii_case(XATTR_PREFIX)
        .then(|| &s[XATTR_PREFIX.len()..])?;
    if short.is_empty() {
        return None;
    }
    Some(short.to_ascii_lowercase())
}

/// Names every S3 server keeps. HTTP allows more (`!`, `~`, `#`, ...), but some servers (moto,
/// measured) accept such `x-amz-meta-*` headers and silently drop them: a change reported as
/// done would be lost, so the mount refuses them (EINVAL). Existing names are read as they are.
fn portable_name(short: &str) -> bool {
    short
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A name a new metadata entry may have: [`portable_name`] (checked first, so that the
/// message names what the mount allows, not the wider set HTTP allows), then the library's
/// own check (not empty).
fn check_new_name(short: &str) -> FsResult<()> {
    if !portable_name(short) {
        return Err(FsError::new(
            libc::EINVAL,
            format!("{short:?}: metadata names made here are letters, digits, '-', '_' and '.'"),
        ));
    }
    validate_name(short).map_err(|e| FsError::new(libc::EINVAL, e.to_string()))
}

/// Refuse `x-amz-meta-xattr` by name: it holds the other names (see [`super::xattr_json`])
/// and is listed as them, so setting it replaced them all and removing it removed them all,
/// each with success, while the name set was not listed.
fn not_the_entry(short: &str) -> FsResult<()> {
    if short == xattr_json::ENTRY {
        return Err(FsError::new(
            libc::EINVAL,
            format!(
                "{XATTR_PREFIX}{short} holds the other attributes (as s3fs keeps them): set and remove those by their own names"
            ),
        ));
    }
    Ok(())
}

/// What `getxattr` and `listxattr` answer a caller whose buffer holds `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrReply {
    /// The value's length (the caller asked with size 0).
    Size(u32),
    /// The value.
    Data(Vec<u8>),
}

/// The xattr size protocol: size 0 asks for the length; a buffer too small is ERANGE (the
/// caller asks again with a larger one).
pub fn sized(value: Vec<u8>, size: u32) -> FsResult<XattrReply> {
    let len = u32::try_from(value.len())
        .map_err(|_| FsError::new(libc::E2BIG, "attribute value over 4 GiB"))?;
    if size == 0 {
        Ok(XattrReply::Size(len))
    } else if len > size {
        Err(FsError::new(
            libc::ERANGE,
            format!("{len} bytes do not fit in {size}"),
        ))
    } else {
        Ok(XattrReply::Data(value))
    }
}

impl S3Fs {
    /// With `--no-xattr`: ENOSYS, after which the kernel stops asking (for the whole mount):
    /// `ls -l` then costs no `getxattr` round trip per entry.
    fn check_xattrs(&self) -> FsResult<()> {
        if self.opts.xattr {
            Ok(())
        } else {
            Err(FsError::new(
                libc::ENOSYS,
                "extended attributes are off (--no-xattr)",
            ))
        }
    }

    /// `getxattr`: the value, or ENODATA (ENOTSUP in a namespace the mount does not support).
    pub fn getxattr(&self, ino: u64, name: &std::ffi::OsStr) -> FsResult<Vec<u8>> {
        self.check_xattrs()?;
        if let Some(acl) = acl_name(name).filter(|_| self.acls_on()) {
            return self.get_acl(ino, acl);
        }
        unsupported(name)?;
        let meta = self.current_metadata(ino)?;
        if let Some(short) = metadata_name(name) {
            return meta
                .get(&short)
                .map(|v| v.as_bytes().to_vec())
                .ok_or_else(|| FsError::new(libc::ENODATA, format!("no x-amz-meta-{short}")));
        }
        name.to_str()
            .and_then(|n| stored(&meta).remove(n))
            .ok_or_else(|| FsError::new(libc::ENODATA, format!("no attribute {name:?}")))
    }

    /// `listxattr`: NUL-separated names — the metadata as `user.x-amz-meta-*`, then the names
    /// kept in `x-amz-meta-xattr` (instead of that entry itself). Left out, because programs
    /// copy what this names (`rsync -X`, `tar --xattrs`, `cp -a`):
    /// - the metadata that holds what `stat` shows ([`STAT_METADATA`]): they copy those as
    ///   attributes; as attributes too, `rsync -aX` would find them on every file it made and
    ///   remove them, copying every object again on every run, and a copy taken out of the
    ///   mount and changed would bring its old mode back. Still read and set by name.
    /// - every `user.` name of a symlink or special file: the kernel lets no program read or
    ///   set one there (ENODATA, EPERM), as on a disk, so `rsync -X` would fail on it.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        self.check_xattrs()?;
        let user_names = matches!(self.kind_of(ino)?, NodeKind::File | NodeKind::Dir);
        let meta = self.current_metadata(ino)?;
        let mut out = Vec::new();
        let entry = format!("x-amz-meta-{}", xattr_json::ENTRY);
        let listed = |name: &str| {
            name != entry
                && !name
                    .strip_prefix("x-amz-meta-")
                    .is_some_and(|short| STAT_METADATA.contains(&short))
        };
        for (name, _) in meta.iter().filter(|(n, _)| user_names && listed(n)) {
            out.extend_from_slice(b"user.");
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        for name in stored(&meta).keys() {
            let user = name
                .get(..USER_NAMESPACE.len())
                .is_some_and(|ns| ns.eq_ignore_ascii_case(USER_NAMESPACE));
            let acl = self.acls_on() && acl_name(std::ffi::OsStr::new(name)).is_some();
            if (acl || !unsupported_namespace(std::ffi::OsStr::new(name))) && (user_names || !user)
            {
                out.extend_from_slice(name.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    /// `setxattr`.
    pub fn setxattr(
        &self,
        ino: u64,
        name: &std::ffi::OsStr,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        self.check_xattrs()?;
        self.check_writable()?;
        if let Some(acl) = acl_name(name).filter(|_| self.acls_on()) {
            return self.set_acl(ino, acl, value);
        }
        unsupported(name)?;
        let Some(short) = metadata_name(name) else {
            return self.set_stored(ino, name, value, flags);
        };
        check_new_name(&short)?;
        not_the_entry(&short)?;
        let value = std::str::from_utf8(value)
            .map_err(|_| FsError::new(libc::EINVAL, "metadata values must be UTF-8 text"))?
            .to_string();
        if short.len() + value.len() > MAX_USER_METADATA_BYTES {
            return Err(FsError::new(libc::E2BIG, "user metadata over 2 KB"));
        }
        let edit = |meta: &mut Metadata, _cur: &FileAttrs| -> FsResult<()> {
            check_flags(
                flags,
                meta.get(&short).is_some(),
                &format!("x-amz-meta-{short}"),
            )?;
            meta.insert(&short, value.clone());
            Ok(())
        };
        self.update_metadata(ino, edit, &AttrUpdate::default())
    }

    /// `removexattr`.
    pub fn removexattr(&self, ino: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_xattrs()?;
        self.check_writable()?;
        if let Some(acl) = acl_name(name).filter(|_| self.acls_on()) {
            return self.remove_acl(ino, acl);
        }
        unsupported(name)?;
        let Some(short) = metadata_name(name) else {
            let Some(name) = name.to_str() else {
                return Err(FsError::new(
                    libc::ENODATA,
                    format!("no attribute {name:?}"),
                ));
            };
            let edit = |meta: &mut Metadata, _cur: &FileAttrs| -> FsResult<()> {
                let mut x = stored(meta);
                x.remove(name)
                    .ok_or_else(|| FsError::new(libc::ENODATA, format!("no attribute {name:?}")))?;
                keep(meta, &x);
                Ok(())
            };
            return self.update_metadata(ino, edit, &AttrUpdate::default());
        };
        not_the_entry(&short)?;
        let edit = |meta: &mut Metadata, _cur: &FileAttrs| -> FsResult<()> {
            meta.remove(&short)
                .map(|_| ())
                .ok_or_else(|| FsError::new(libc::ENODATA, format!("no x-amz-meta-{short}")))
        };
        self.update_metadata(ino, edit, &AttrUpdate::default())
    }

    /// `setxattr` of a name kept in `x-amz-meta-xattr`.
    fn set_stored(
        &self,
        ino: u64,
        name: &std::ffi::OsStr,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        let Some(name) = name.to_str().filter(|n| storable_name(n)) else {
            return Err(FsError::new(
                libc::ENOTSUP,
                format!("{name:?}: a name s3fs could not read back (',', '\"', '\\', control characters)"),
            ));
        };
        // A namespace alone is no name (as on a disk); `user.x-amz-meta-` alone names no
        // metadata and is not kept elsewhere either.
        let lower = name.to_ascii_lowercase();
        if matches!(lower.as_str(), "user." | "trusted.") {
            return Err(FsError::new(libc::EINVAL, format!("{name:?}: no name")));
        }
        if lower.starts_with(XATTR_PREFIX) {
            return Err(FsError::new(
                libc::ENOTSUP,
                format!("{name:?}: no metadata name"),
            ));
        }
        let edit = |meta: &mut Metadata, _cur: &FileAttrs| -> FsResult<()> {
            let mut x = stored(meta);
            check_flags(flags, x.contains_key(name), &format!("attribute {name:?}"))?;
            x.insert(name.to_string(), value.to_vec());
            keep(meta, &x);
            if meta.encoded_size() > MAX_USER_METADATA_BYTES {
                return Err(FsError::new(libc::E2BIG, "user metadata over 2 KB"));
            }
            Ok(())
        };
        self.update_metadata(ino, edit, &AttrUpdate::default())
    }
}

/// `XATTR_CREATE` of a name that `exists`: EEXIST; `XATTR_REPLACE` of one that does not:
/// ENODATA.
fn check_flags(flags: i32, exists: bool, what: &str) -> FsResult<()> {
    if flags & libc::XATTR_CREATE != 0 && exists {
        return Err(FsError::new(libc::EEXIST, format!("{what} exists")));
    }
    if flags & libc::XATTR_REPLACE != 0 && !exists {
        return Err(FsError::new(libc::ENODATA, format!("no {what}")));
    }
    Ok(())
}

/// ENOTSUP for a name in a namespace the mount does not support.
fn unsupported(name: &std::ffi::OsStr) -> FsResult<()> {
    if unsupported_namespace(name) {
        return Err(FsError::new(
            libc::ENOTSUP,
            format!("{name:?}: not supported on this file system"),
        ));
    }
    Ok(())
}

/// The attributes kept in `meta`'s `x-amz-meta-xattr`.
pub(super) fn stored(meta: &Metadata) -> Xattrs {
    meta.get(xattr_json::ENTRY)
        .map(xattr_json::parse)
        .unwrap_or_default()
}

/// Keep `x` in `meta`'s `x-amz-meta-xattr` (removed when `x` is empty).
pub(super) fn keep(meta: &mut Metadata, x: &Xattrs) {
    match xattr_json::render(x) {
        Some(v) => meta.insert(xattr_json::ENTRY, v),
        None => {
            meta.remove(xattr_json::ENTRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn new_names_refused_name_what_the_mount_allows() {
        assert!(check_new_name("color-2_b.c").is_ok());
        // HTTP allows `!` and `~` in a header name; `@` and space it does not: one message.
        for bad in ["a!b", "a~b", "a@b", "a b"] {
            let e = check_new_name(bad).expect_err(bad);
            assert_eq!(e.errno, libc::EINVAL);
            assert!(
                e.to_string()
                    .contains("metadata names made here are letters, digits, '-', '_' and '.'"),
                "{bad}: {e}"
            );
        }
        assert!(check_new_name("").is_err());
    }

    #[test]
    fn only_the_metadata_namespace_maps() {
        assert_eq!(
            metadata_name(OsStr::new("user.x-amz-meta-Color")).as_deref(),
            Some("color")
        );
        assert_eq!(
            metadata_name(OsStr::new("USER.X-AMZ-META-a")).as_deref(),
            Some("a")
        );
        assert_eq!(metadata_name(OsStr::new("user.x-amz-meta-")), None);
        assert_eq!(metadata_name(OsStr::new("user.other")), None);
        assert_eq!(metadata_name(OsStr::new("security.selinux")), None);
        assert_eq!(metadata_name(OsStr::new("trusted.x")), None);
        for ns in [
            "security.selinux",
            "system.posix_acl_access",
            "security.capability",
        ] {
            assert!(unsupported_namespace(OsStr::new(ns)), "{ns}");
        }
        for other in ["user.x-amz-meta-a", "user.other", "trusted.x", "securityx"] {
            assert!(!unsupported_namespace(OsStr::new(other)), "{other}");
        }
    }

    #[test]
    fn fuzz_xattr_names_map_only_into_the_metadata_namespace() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        use std::os::unix::ffi::OsStrExt;
        let count = std::cell::Cell::new(0u64);
        let name = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            "(user|USER|trusted|security|system)\\.(x-amz-meta-)?\\PC{0,12}"
                .prop_map(String::into_bytes),
            "[uU][sS][eE][rR]\\.[xX]-[aA][mM][zZ]-[mM][eE][tT][aA]-[ -~]{0,300}"
                .prop_map(String::into_bytes),
        ];
        let mut runner = TestRunner::new(Config {
            cases: 2000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&name, |raw| {
                count.set(count.get() + 1);
                let os = OsStr::from_bytes(&raw);
                if let Some(short) = metadata_name(os) {
                    let s = os.to_str().unwrap_or_default();
                    prop_assert!(s.len() > XATTR_PREFIX.len());
                    prop_assert!(s[..XATTR_PREFIX.len()].eq_ignore_ascii_case(XATTR_PREFIX));
                    prop_assert_eq!(short.clone(), s[XATTR_PREFIX.len()..].to_ascii_lowercase());
                } else if let Some(s) = os.to_str() {
                    prop_assert!(
                        s.len() <= XATTR_PREFIX.len()
                            || !s.is_char_boundary(XATTR_PREFIX.len())
                            || !s[..XATTR_PREFIX.len()].eq_ignore_ascii_case(XATTR_PREFIX),
                        "{s:?} not mapped"
                    );
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("xattr names: {} inputs fuzzed", count.get());
    }
}
