//! Files and directories only the mounting user can reach: the rule for everything s3mount keeps
//! under its cache directory, in one place.
//!
//! The cache directory holds the bytes of objects (data blocks, staging files of files being
//! written, `unsaved/` copies of failed uploads), the upload journal (bucket, key, upload id)
//! and the log (object names). A private mount refuses other users; its cache must not hand
//! them the same bytes. So every directory s3mount creates there is [`DIR_MODE`] and every file
//! [`FILE_MODE`], given at creation (`mkdir(2)`/`open(2)` mode argument) — never a `chmod` after
//! the bytes are in, which would leave a window — and whatever the process umask (a umask only
//! ever removes bits, so it cannot open these up).
//!
//! A directory that already exists is not changed by creating things in it; [`secure_dir`] is
//! the start-up check of the cache directory and the mount's subdirectory: it tightens one that
//! belongs to the mounting user and refuses one that belongs to someone else.
//!
//! It lives in `s3/` because the upload journal ([`super::journal`]) is the lowest layer that
//! writes under the cache directory; the data cache and the file system call it from above.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory created under the cache directory: the owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file created under the cache directory: the owner only.
pub const FILE_MODE: u32 = 0o600;
/// Bits that let group or others read, write or enter.
const GROUP_OTHER: u32 = 0o077;

/// `mkdir -p` with [`DIR_MODE`] for every directory it creates (existing ones are left as they
/// are).
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Create something in `dir` with `create`; if `dir` is gone — removed while mounted, by a
/// cache cleaner or an `rm -rf` of the cache dir — make it again (private, as at the mount's
/// start) and create once more, with a warning. Otherwise every later create there would fail
/// until a remount.
pub fn create_in<T>(dir: &Path, create: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    match create() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            log::warn!("{} was removed while mounted: made again", dir.display());
            create_dir_all(dir)?;
            create()
        }
        other => other,
    }
}

/// `OpenOptions` whose files are created with [`FILE_MODE`] (set read/write/create as usual).
pub fn open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// [`FILE_MODE`] as `Permissions`, for `tempfile::Builder::permissions`.
pub fn file_permissions() -> Permissions {
    Permissions::from_mode(FILE_MODE)
}

/// `std::fs::write` creating the file with [`FILE_MODE`].
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    open_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?
        .write_all(contents)
}

/// Copy `from` to the new file `to` (which must not exist), created with [`FILE_MODE`]
/// (`std::fs::copy` would give it `from`'s mode).
pub fn copy_new(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut src = File::open(from)?;
    let mut dst = open_options().write(true).create_new(true).open(to)?;
    std::io::copy(&mut src, &mut dst)
}

/// What [`secure_dir`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// It did not exist and was created with [`DIR_MODE`].
    Created,
    /// It exists, belongs to the mounting user and group and others cannot get in.
    Private,
    /// It belonged to the mounting user but group or others could get in (mode `was`): it is
    /// now [`DIR_MODE`].
    Tightened {
        /// The mode it had.
        was: u32,
    },
    /// Not checked: the operator wants a shared cache.
    Shared,
}

/// The start-up check of a cache directory: create it ([`DIR_MODE`]) if missing; if group or
/// others can read, write or enter it, tighten it to [`DIR_MODE`] when it belongs to the
/// effective user, and refuse (one line naming the path, its mode and owner, and
/// `--allow-shared-cache`) when it belongs to someone else, or when it is a shared directory
/// such as `/tmp` (sticky bit). A directory of someone else's is refused even when closed to
/// others: its owner could read the file names (object keys) and replace what is kept there.
/// With `allow_shared` an existing directory is left as it is.
///
/// Only the directory itself changes: what an earlier version left inside (0644 blocks, 0755
/// subdirectories) is unreachable once it is [`DIR_MODE`].
pub fn secure_dir(path: &Path, allow_shared: bool) -> Result<DirState, String> {
    let fail = |e: std::io::Error| format!("cache dir {}: {e}", path.display());
    let dir = match File::open(path) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            create_dir_all(path).map_err(fail)?;
            return Ok(DirState::Created);
        }
        Err(e) => return Err(fail(e)),
    };
    // Checked and changed through the open descriptor, so a rename in between cannot make
    // the chmod land on another directory than the one checked.
    let meta = dir.metadata().map_err(fail)?;
    if !meta.is_dir() {
        return Err(format!("cache dir {}: not a directory", path.display()));
    }
    if allow_shared {
        return Ok(DirState::Shared);
    }
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let refuse = |why: String| {
        format!(
            "cache dir {} (mode {mode:04o}, owner uid {owner}) {why}; pass --allow-shared-cache to use it anyway",
            path.display()
        )
    };
    if owner != me {
        return Err(refuse(format!(
            "belongs to another user than the mounting one (uid {me}), who could read or replace what s3mount keeps there: choose another --cache-dir"
        )));
    }
    if mode & GROUP_OTHER == 0 {
        return Ok(DirState::Private);
    }
    if mode & libc::S_ISVTX != 0 {
        return Err(refuse(
            "is a shared directory (sticky bit): give s3mount a directory of its own, e.g. a subdirectory".into(),
        ));
    }
    dir.set_permissions(Permissions::from_mode(DIR_MODE))
        .map_err(fail)?;
    Ok(DirState::Tightened { was: mode })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_private() {
        // Under the usual umask 022 these would be 0755/0644 without the explicit modes; the
        // integration test `security.rs` runs the mount under umask 022 explicitly.
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&d.path().join(p)), DIR_MODE, "{p}");
        }
        let f = deep.join("f");
        write(&f, b"secret").unwrap();
        assert_eq!(mode(&f), FILE_MODE);
        let g = deep.join("g");
        assert_eq!(copy_new(&f, &g).unwrap(), 6);
        assert_eq!(mode(&g), FILE_MODE);
        assert_eq!(std::fs::read(&g).unwrap(), b"secret");
        assert_eq!(
            copy_new(&f, &g).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        let t = tempfile::Builder::new()
            .permissions(file_permissions())
            .tempfile_in(&deep)
            .unwrap();
        assert_eq!(mode(t.path()), FILE_MODE);
    }

    #[test]
    fn secure_dir_creates_keeps_and_tightens_our_own() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cache");
        assert_eq!(secure_dir(&p, false), Ok(DirState::Created));
        assert_eq!(mode(&p), DIR_MODE);
        assert_eq!(secure_dir(&p, false), Ok(DirState::Private));
        std::fs::set_permissions(&p, Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            secure_dir(&p, false),
            Ok(DirState::Tightened { was: 0o755 })
        );
        assert_eq!(mode(&p), DIR_MODE);
        // Writable but not readable by the group is open too (entries can be planted).
        std::fs::set_permissions(&p, Permissions::from_mode(0o720)).unwrap();
        assert_eq!(
            secure_dir(&p, false),
            Ok(DirState::Tightened { was: 0o720 })
        );
        // A shared cache is left as it is.
        std::fs::set_permissions(&p, Permissions::from_mode(0o750)).unwrap();
        assert_eq!(secure_dir(&p, true), Ok(DirState::Shared));
        assert_eq!(mode(&p), 0o750);
    }

    #[test]
    fn secure_dir_refuses_sticky_dirs_and_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tmp");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o1777)).unwrap();
        let e = secure_dir(&p, false).unwrap_err();
        assert!(e.contains("mode 1777") && e.contains("sticky"), "{e}");
        assert!(e.contains("--allow-shared-cache"), "{e}");
        assert_eq!(mode(&p), 0o1777, "a shared directory is never tightened");
        assert_eq!(secure_dir(&p, true), Ok(DirState::Shared));
        let f = d.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(secure_dir(&f, false)
            .unwrap_err()
            .contains("not a directory"));
    }

    #[test]
    fn secure_dir_refuses_someone_elses() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to give a directory away");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        for m in [0o755, 0o700] {
            let p = d.path().join(format!("theirs-{m:o}"));
            std::fs::create_dir(&p).unwrap();
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
            std::fs::set_permissions(&p, Permissions::from_mode(m)).unwrap();
            let e = secure_dir(&p, false).unwrap_err();
            assert!(
                e.contains(&p.display().to_string())
                    && e.contains(&format!("mode {m:04o}"))
                    && e.contains("owner uid 65534")
                    && e.contains("--allow-shared-cache")
                    && !e.contains('\n'),
                "{e}"
            );
            assert_eq!(mode(&p), m, "someone else's directory is never changed");
            assert_eq!(secure_dir(&p, true), Ok(DirState::Shared));
        }
    }
}
