//! The reference model of the file system, shared by two drivers: `src/fs/tests/model.rs`
//! (the `S3Fs` core over the in-memory store, thousands of cases per run) and
//! `tests/model.rs` (a real mount on a real server, a dozen). This file depends on nothing
//! of the crate, so the integration test includes it as it is (`#[path]`).
//!
//! Random sequences of operations over a tiny namespace: files `a`, `b`, `c` at the root or in
//! the directories `d`, `e`. The model says what each operation must do (Ok, or the errno of
//! POSIX as Linux and the kernel's checks give it); a driver applies it to the file system,
//! compares each outcome, then compares the whole tree with the model through the file system
//! and on the server ([`Model::from_server`], [`Model::on_server`]).

#![allow(dead_code)] // each driver uses its part

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

/// Metadata keys s3mount adds by itself (not user xattrs).
pub const OWN_KEYS: &[&str] = &["mode", "mtime", "ctime", "atime", "uid", "gid", "rdev"];
/// Permission bits of a new file and a new directory (under umask 022).
pub const FILE_PERM: u32 = 0o644;
pub const DIR_PERM: u32 = 0o755;
const FILES: &[&str] = &["a", "b", "c"];
const DIRS: &[&str] = &["d", "e"];
const XKEYS: &[&str] = &["k", "l"];
const XVALS: &[&str] = &["1", "two", "v-3"];
const MODES: &[u32] = &[0o600, 0o640, 0o700, 0o755];
/// The `x-amz-meta-` prefix of user metadata names.
const META_PREFIX: &str = "x-amz-meta-";

/// One operation. Files live at `PARENT/NAME` (depth ≤ 2), directories at the root.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create or overwrite (`O_CREAT|O_TRUNC`) with these bytes.
    Put(String, Vec<u8>),
    /// Open an existing file and write at an offset (extending with zeros), fsync, close.
    WriteAt(String, u64, Vec<u8>),
    /// `truncate(2)` an existing file.
    Truncate(String, u64),
    /// Rename a path (usually a file) onto a file-ish path.
    Rename(String, String),
    /// Rename a path (usually a directory) onto `d` or `e`.
    RenameDir(String, String),
    /// Open an existing file, write at an offset, set an xattr while it is open with unsaved
    /// changes (folded into the upload at close), close.
    WriteXattrWhileOpen(String, u64, Vec<u8>, String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    /// `setxattr user.x-amz-meta-KEY VALUE`.
    SetXattr(String, String, String),
    /// `removexattr user.x-amz-meta-KEY`.
    RemoveXattr(String, String),
    /// `chmod` a file or directory.
    Chmod(String, u32),
    /// Unmount and mount again: nothing but what is on the server survives.
    Remount,
}

/// A file or directory of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File {
        bytes: Vec<u8>,
        xattrs: BTreeMap<String, String>,
        perm: u32,
    },
    Dir {
        xattrs: BTreeMap<String, String>,
        perm: u32,
    },
}

/// An object as a driver read it from the server: key, bytes, user metadata (name, value).
pub type ServerObject = (String, Vec<u8>, Vec<(String, String)>);

/// What a driver reads of a path, for [`walk`].
pub trait Tree {
    /// The names in the directory `dir` ("" is the root).
    fn names(&self, dir: &str) -> Vec<String>;
    /// Whether `path` is a directory, and its size and permission bits, as `stat` says.
    fn stat(&self, path: &str) -> (bool, u64, u32);
    /// Its `user.x-amz-meta-*` attributes, s3mount's own keys left out.
    fn xattrs(&self, path: &str) -> BTreeMap<String, String>;
    /// The content of the file `path`.
    fn read(&self, path: &str) -> Vec<u8>;
}

/// The tree a file system shows, as a model (every size checked against the bytes read).
pub fn walk(tree: &impl Tree) -> Model {
    fn walk_dir(tree: &impl Tree, rel: &str, out: &mut Model) {
        for name in tree.names(rel) {
            let p = join(rel, &name);
            let (is_dir, size, perm) = tree.stat(&p);
            let xattrs = tree.xattrs(&p);
            if is_dir {
                out.0.insert(p.clone(), Node::Dir { xattrs, perm });
                walk_dir(tree, &p, out);
            } else {
                let bytes = tree.read(&p);
                assert_eq!(size, bytes.len() as u64, "{p}: st_size vs bytes read");
                out.0.insert(
                    p,
                    Node::File {
                        bytes,
                        xattrs,
                        perm,
                    },
                );
            }
        }
    }
    let mut out = Model::default();
    walk_dir(tree, "", &mut out);
    out
}

/// The model: path → node (the root is implicit).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Model(pub BTreeMap<String, Node>);

fn parent_of(p: &str) -> &str {
    p.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// `d/f`, or `f` at the root.
pub fn join(d: &str, f: &str) -> String {
    if d.is_empty() {
        f.to_string()
    } else {
        format!("{d}/{f}")
    }
}

impl Model {
    fn file_bytes(&mut self, p: &str) -> Result<&mut Vec<u8>, i32> {
        match self.0.get_mut(p) {
            Some(Node::File { bytes, .. }) => Ok(bytes),
            Some(Node::Dir { .. }) => Err(libc::EISDIR),
            None => Err(libc::ENOENT),
        }
    }

    /// The xattrs of a file or directory.
    fn xattrs_mut(&mut self, p: &str) -> Result<&mut BTreeMap<String, String>, i32> {
        match self.0.get_mut(p) {
            Some(Node::File { xattrs, .. } | Node::Dir { xattrs, .. }) => Ok(xattrs),
            None => Err(libc::ENOENT),
        }
    }

    fn has_children(&self, d: &str) -> bool {
        self.0.keys().any(|k| parent_of(k) == d && k != d)
    }

    /// ENOENT / ENOTDIR if the parent of `p` is missing / a file.
    fn check_parent(&self, p: &str) -> Result<(), i32> {
        match parent_of(p) {
            "" => Ok(()),
            d => match self.0.get(d) {
                Some(Node::Dir { .. }) => Ok(()),
                Some(_) => Err(libc::ENOTDIR),
                None => Err(libc::ENOENT),
            },
        }
    }

    /// Apply `op`; the errno it must fail with, if any.
    pub fn apply(&mut self, op: &Op) -> Result<(), i32> {
        match op {
            Op::Put(p, data) => {
                self.check_parent(p)?;
                match self.0.get_mut(p) {
                    Some(Node::File { bytes, .. }) => *bytes = data.clone(),
                    Some(Node::Dir { .. }) => return Err(libc::EISDIR),
                    None => {
                        let (bytes, xattrs, perm) = (data.clone(), BTreeMap::new(), FILE_PERM);
                        self.0.insert(
                            p.clone(),
                            Node::File {
                                bytes,
                                xattrs,
                                perm,
                            },
                        );
                    }
                }
                Ok(())
            }
            Op::WriteAt(p, off, data) => {
                self.check_parent(p)?;
                let bytes = self.file_bytes(p)?;
                // A write of nothing does not extend the file.
                if !data.is_empty() {
                    let end = *off as usize + data.len();
                    if bytes.len() < end {
                        bytes.resize(end, 0);
                    }
                    bytes[*off as usize..end].copy_from_slice(data);
                }
                Ok(())
            }
            Op::WriteXattrWhileOpen(p, off, data, k, v) => {
                self.apply(&Op::WriteAt(p.clone(), *off, data.clone()))?;
                self.apply(&Op::SetXattr(p.clone(), k.clone(), v.clone()))
            }
            Op::Truncate(p, len) => {
                self.check_parent(p)?;
                self.file_bytes(p)?.resize(*len as usize, 0);
                Ok(())
            }
            Op::Rename(from, to) | Op::RenameDir(from, to) => self.rename(from, to),
            Op::Unlink(p) => {
                self.check_parent(p)?;
                match self.0.get(p) {
                    Some(Node::File { .. }) => {
                        self.0.remove(p);
                        Ok(())
                    }
                    Some(Node::Dir { .. }) => Err(libc::EISDIR),
                    None => Err(libc::ENOENT),
                }
            }
            Op::Mkdir(p) => {
                self.check_parent(p)?;
                if self.0.contains_key(p) {
                    return Err(libc::EEXIST);
                }
                let (xattrs, perm) = (BTreeMap::new(), DIR_PERM);
                self.0.insert(p.clone(), Node::Dir { xattrs, perm });
                Ok(())
            }
            Op::Rmdir(p) => {
                self.check_parent(p)?;
                match self.0.get(p) {
                    Some(Node::Dir { .. }) if self.has_children(p) => Err(libc::ENOTEMPTY),
                    Some(Node::Dir { .. }) => {
                        self.0.remove(p);
                        Ok(())
                    }
                    Some(_) => Err(libc::ENOTDIR),
                    None => Err(libc::ENOENT),
                }
            }
            Op::SetXattr(p, k, v) => {
                self.check_parent(p)?;
                self.xattrs_mut(p)?.insert(k.clone(), v.clone());
                Ok(())
            }
            Op::RemoveXattr(p, k) => {
                self.check_parent(p)?;
                self.xattrs_mut(p)?
                    .remove(k)
                    .map(|_| ())
                    .ok_or(libc::ENODATA)
            }
            Op::Chmod(p, mode) => {
                self.check_parent(p)?;
                match self.0.get_mut(p) {
                    Some(Node::File { perm, .. } | Node::Dir { perm, .. }) => *perm = *mode,
                    None => return Err(libc::ENOENT),
                }
                Ok(())
            }
            Op::Remount => Ok(()),
        }
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), i32> {
        // The kernel resolves both parents before it looks the source up.
        self.check_parent(from)?;
        self.check_parent(to)?;
        let Some(src) = self.0.get(from) else {
            return Err(libc::ENOENT);
        };
        let src_is_dir = matches!(src, Node::Dir { .. });
        if from == to {
            return Ok(());
        }
        if src_is_dir && to.starts_with(&format!("{from}/")) {
            return Err(libc::EINVAL);
        }
        // The target is an ancestor of the source (the kernel's "trap" check).
        if from.starts_with(&format!("{to}/")) {
            return Err(libc::ENOTEMPTY);
        }
        match (src_is_dir, self.0.get(to)) {
            (_, None) => {}
            (false, Some(Node::Dir { .. })) => return Err(libc::EISDIR),
            (false, Some(_)) => {}
            (true, Some(Node::Dir { .. })) if self.has_children(to) => return Err(libc::ENOTEMPTY),
            (true, Some(Node::Dir { .. })) => {}
            (true, Some(_)) => return Err(libc::ENOTDIR),
        }
        self.0.remove(to);
        let moved: Vec<String> = self
            .0
            .keys()
            .filter(|k| *k == from || k.starts_with(&format!("{from}/")))
            .cloned()
            .collect();
        for k in moved {
            let n = self.0.remove(&k).expect("listed just now");
            self.0.insert(format!("{to}{}", &k[from.len()..]), n);
        }
        Ok(())
    }

    /// What the server holds, as a model: every key with its bytes (directories: markers
    /// `dir/`), user metadata (s3mount's own keys left out) and the permission bits of its
    /// `x-amz-meta-mode`, which s3mount writes on everything it makes. Metadata names with or
    /// without their `x-amz-meta-` prefix.
    pub fn from_server(objects: Vec<ServerObject>) -> Model {
        let mut seen = Model::default();
        for (key, bytes, metadata) in objects {
            let mut xattrs = BTreeMap::new();
            let mut perm = None;
            for (name, value) in metadata {
                let name = name.strip_prefix(META_PREFIX).unwrap_or(&name);
                if name == "mode" {
                    perm = value.trim().parse::<u32>().ok().map(|m| m & 0o7777);
                } else if !OWN_KEYS.contains(&name) {
                    xattrs.insert(name.to_string(), value);
                }
            }
            let perm = perm.unwrap_or_else(|| panic!("{key}: no mode in its metadata"));
            match key.strip_suffix('/') {
                Some(dir) => seen.0.insert(dir.to_string(), Node::Dir { xattrs, perm }),
                None => seen.0.insert(
                    key,
                    Node::File {
                        bytes,
                        xattrs,
                        perm,
                    },
                ),
            };
        }
        seen
    }

    /// The model as the server must hold it, given its `keys`: a directory without a marker
    /// must be a prefix of some key, and then has no metadata, so it is left out.
    pub fn on_server(&self, keys: &BTreeSet<String>) -> Model {
        let mut want = self.clone();
        for (p, n) in &self.0 {
            if let Node::Dir { xattrs, .. } = n {
                let prefix = format!("{p}/");
                if !keys.contains(&prefix) {
                    assert!(
                        keys.iter().any(|k| k.starts_with(&prefix)),
                        "dir {p} of the model is neither a marker nor a prefix: {keys:?}"
                    );
                    assert!(xattrs.is_empty(), "dir {p}: xattrs but no marker");
                    want.0.remove(p);
                }
            }
        }
        want
    }
}

// ---- random sequences -------------------------------------------------------------------

/// A parent, the root twice as likely as `d` or `e`.
fn parent() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["", "", "d", "e"][..])
}

/// A path whose name is always a file (`a`, `b`, `c`) or missing.
fn file_path() -> impl Strategy<Value = String> {
    (parent(), prop::sample::select(FILES)).prop_map(|(d, f)| join(d, f))
}

/// A file path that may also name a directory (`d`, `e`), or a file inside a file.
fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => file_path(),
        1 => (parent(), prop::sample::select(DIRS)).prop_map(|(d, f)| join(d, f)),
    ]
}

fn dir_path() -> impl Strategy<Value = String> {
    prop::sample::select(DIRS).prop_map(str::to_string)
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..20)
}

fn op() -> impl Strategy<Value = Op> {
    let key = || prop::sample::select(XKEYS).prop_map(str::to_string);
    let val = || prop::sample::select(XVALS).prop_map(str::to_string);
    prop_oneof![
        5 => (any_path(), bytes()).prop_map(|(p, b)| Op::Put(p, b)),
        2 => (file_path(), 0u64..30, bytes()).prop_map(|(p, o, b)| Op::WriteAt(p, o, b)),
        1 => (file_path(), 0u64..30, bytes(), key(), val())
            .prop_map(|(p, o, b, k, v)| Op::WriteXattrWhileOpen(p, o, b, k, v)),
        2 => (file_path(), 0u64..40).prop_map(|(p, l)| Op::Truncate(p, l)),
        3 => (any_path(), any_path()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (dir_path(), dir_path()).prop_map(|(a, b)| Op::RenameDir(a, b)),
        2 => any_path().prop_map(Op::Unlink),
        4 => dir_path().prop_map(Op::Mkdir),
        1 => any_path().prop_map(Op::Rmdir),
        2 => (file_path(), key(), val()).prop_map(|(p, k, v)| Op::SetXattr(p, k, v)),
        1 => (file_path(), key()).prop_map(|(p, k)| Op::RemoveXattr(p, k)),
        1 => (any_path(), prop::sample::select(MODES)).prop_map(|(p, m)| Op::Chmod(p, m)),
        1 => Just(Op::Remount),
    ]
}

/// A sequence of 5 to 25 operations.
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 5..=25)
}

/// The number of cases: `MODEL_CASES` from the environment, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- sequences both drivers run ---------------------------------------------------------

fn s(x: &str) -> String {
    x.to_string()
}

/// A hand-written sequence touching every op kind (also a smoke test of a driver).
pub fn every_op_kind() -> Vec<Op> {
    vec![
        Op::Mkdir(s("d")),
        Op::Put(s("d/a"), b"hello".to_vec()),
        Op::WriteAt(s("d/a"), 8, b"xy".to_vec()),
        Op::Truncate(s("d/a"), 3),
        Op::SetXattr(s("d/a"), s("k"), s("two")),
        Op::WriteXattrWhileOpen(s("d/a"), 1, b"zz".to_vec(), s("l"), s("1")),
        Op::Rename(s("d/a"), s("b")),
        Op::RemoveXattr(s("b"), s("l")),
        Op::Chmod(s("b"), 0o600),
        Op::Chmod(s("d"), 0o700),
        Op::Remount,
        Op::Rmdir(s("d")),
        Op::Mkdir(s("d")),
        Op::Mkdir(s("d")),
        Op::Put(s("d/c"), vec![]),
        Op::Rmdir(s("d")),
        Op::RenameDir(s("d"), s("e")),
        Op::Put(s("b"), b"new".to_vec()),
        Op::Unlink(s("e/c")),
        Op::Unlink(s("e/c")),
        Op::Rmdir(s("e")),
    ]
}

// Sequences proptest found against the real mount. The first four were bugs of the model, not
// of s3mount (the mount agreed with Linux), kept so the model stays right; the last one was a
// bug of s3mount.

/// A write of zero bytes past the end does not extend the file.
pub fn empty_write_past_eof() -> Vec<Op> {
    vec![
        Op::Mkdir(s("d")),
        Op::Put(s("d/b"), vec![]),
        Op::WriteAt(s("d/b"), 1, vec![]),
        Op::Truncate(s("a"), 1),
        Op::Mkdir(s("e")),
    ]
}

/// Renaming `e/d` onto its own ancestor `e`: the kernel answers ENOTEMPTY before s3mount sees
/// the call.
pub fn rename_onto_ancestor() -> Vec<Op> {
    vec![
        Op::Mkdir(s("e")),
        Op::Put(s("e/d"), vec![]),
        Op::Truncate(s("a"), 8),
        Op::Unlink(s("d")),
        Op::Rename(s("e/d"), s("e")),
    ]
}

/// A directory renamed to a "file" name, then given an xattr (stored on its marker).
pub fn xattr_on_renamed_dir() -> Vec<Op> {
    vec![
        Op::Mkdir(s("e")),
        Op::Rename(s("e"), s("c")),
        Op::SetXattr(s("c"), s("k"), s("1")),
        Op::Put(s("a"), vec![137]),
        Op::Rename(s("d"), s("e/a")),
    ]
}

/// A missing source renamed into a "directory" that is a file: the kernel resolves the
/// target's parent first (ENOTDIR, not ENOENT).
pub fn rename_into_file_parent() -> Vec<Op> {
    vec![
        Op::Put(s("d"), vec![163, 153, 216]),
        Op::Rename(s("a"), s("d/a")),
    ]
}

/// s3mount bug (fixed in `S3Fs::truncate`): `truncate(2)` right after `close` found the open
/// file whose last `release` (asynchronous after `close`) was running; it changed the staging
/// copy after that release and nobody uploaded it, so the size change was lost (the mount and
/// the server kept 1 byte). Failed about 14 times in 15 before the fix.
pub fn truncate_right_after_close() -> Vec<Op> {
    vec![
        Op::Put(s("c"), vec![]),
        Op::Put(s("c"), vec![164]),
        Op::Truncate(s("c"), 33),
        Op::Rename(s("c"), s("b")),
    ]
}
