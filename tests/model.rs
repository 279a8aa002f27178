//! Reference-model test: random sequences of file-system operations over a tiny namespace
//! (files `a`, `b`, `c` at the root or in the directories `d`, `e`), applied both to a real
//! mount and to an in-memory model. Every operation's outcome (Ok or errno) is compared with
//! the model's prediction; after each sequence the whole tree is compared with the model twice:
//! through the mount (walk, bytes, `user.x-amz-meta-*` xattrs; again after a remount) and through
//! the S3 API (every key, its exact bytes and `x-amz-meta-*` metadata, and a marker or prefix
//! for every dir).
//!
//! proptest shrinks a failing sequence; failing sequences found so far are kept below as plain
//! `#[test]`s with the explicit op list.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{server, skip_on, Mount, ServerLimit};
use proptest::prelude::*;
use s3mount::s3::ObjectRef;
use s3mount::s3::ObjectStore;
use s3mount::Storage;

/// Metadata keys s3mount adds by itself (not user xattrs).
const OWN_KEYS: &[&str] = &["mode", "mtime", "uid", "gid"];

const FILES: &[&str] = &["a", "b", "c"];
const DIRS: &[&str] = &["d", "e"];
const XKEYS: &[&str] = &["k", "l"];
const XVALS: &[&str] = &["1", "two", "v-3"];

/// One operation. Files live at `PARENT/NAME` (depth ≤ 2), directories at the root.
#[derive(Debug, Clone)]
enum Op {
    /// Create or overwrite (`O_CREAT|O_TRUNC`) with these bytes.
    Put(String, Vec<u8>),
    /// Open an existing file and write at an offset (extending with zeros).
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
    SetXattr(String, String, String),
    RemoveXattr(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File {
        bytes: Vec<u8>,
        xattrs: BTreeMap<String, String>,
    },
    Dir {
        xattrs: BTreeMap<String, String>,
    },
}

/// The model: path → node (the root is implicit).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Model(BTreeMap<String, Node>);

fn parent_of(p: &str) -> &str {
    p.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

impl Model {
    fn file_mut(&mut self, p: &str) -> Result<&mut Node, i32> {
        match self.0.get_mut(p) {
            Some(n @ Node::File { .. }) => Ok(n),
            Some(Node::Dir { .. }) => Err(libc::EISDIR),
            None => Err(libc::ENOENT),
        }
    }

    /// The xattrs of a file or directory.
    fn xattrs_mut(&mut self, p: &str) -> Result<&mut BTreeMap<String, String>, i32> {
        match self.0.get_mut(p) {
            Some(Node::File { xattrs, .. } | Node::Dir { xattrs }) => Ok(xattrs),
            None => Err(libc::ENOENT),
        }
    }

    fn children(&self, d: &str) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| parent_of(k) == d && k.as_str() != d)
            .cloned()
            .collect()
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
    fn apply(&mut self, op: &Op) -> Result<(), i32> {
        match op {
            Op::Put(p, data) => {
                self.check_parent(p)?;
                match self.0.get_mut(p) {
                    Some(Node::File { bytes, .. }) => *bytes = data.clone(),
                    Some(Node::Dir { .. }) => return Err(libc::EISDIR),
                    None => {
                        self.0.insert(
                            p.clone(),
                            Node::File {
                                bytes: data.clone(),
                                xattrs: BTreeMap::new(),
                            },
                        );
                    }
                }
                Ok(())
            }
            Op::WriteAt(p, off, data) => {
                self.check_parent(p)?;
                let Node::File { bytes, .. } = self.file_mut(p)? else {
                    unreachable!()
                };
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
                let Node::File { bytes, .. } = self.file_mut(p)? else {
                    unreachable!()
                };
                bytes.resize(*len as usize, 0);
                Ok(())
            }
            Op::Rename(from, to) | Op::RenameDir(from, to) => {
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
                    (true, Some(Node::Dir { .. })) if !self.children(to).is_empty() => {
                        return Err(libc::ENOTEMPTY)
                    }
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
                    let n = self.0.remove(&k).unwrap();
                    self.0.insert(format!("{to}{}", &k[from.len()..]), n);
                }
                Ok(())
            }
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
                self.0.insert(
                    p.clone(),
                    Node::Dir {
                        xattrs: BTreeMap::new(),
                    },
                );
                Ok(())
            }
            Op::Rmdir(p) => {
                self.check_parent(p)?;
                match self.0.get(p) {
                    Some(Node::Dir { .. }) if !self.children(p).is_empty() => Err(libc::ENOTEMPTY),
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
        }
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn io(r: std::io::Result<()>) -> Result<(), i32> {
    r.map_err(|e| {
        e.raw_os_error()
            .unwrap_or_else(|| panic!("no errno in {e}"))
    })
}

fn libc_rc(rc: libc::c_int) -> Result<(), i32> {
    if rc == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Apply `op` to the mount.
fn apply_real(m: &Mount, op: &Op) -> Result<(), i32> {
    match op {
        Op::Put(p, data) => io(std::fs::write(m.join(p), data)),
        Op::WriteAt(p, off, data) => io((|| {
            let mut f = std::fs::OpenOptions::new().write(true).open(m.join(p))?;
            f.seek(SeekFrom::Start(*off))?;
            f.write_all(data)?;
            f.sync_all()
        })()),
        Op::WriteXattrWhileOpen(p, off, data, k, v) => {
            let mut f = match std::fs::OpenOptions::new().write(true).open(m.join(p)) {
                Ok(f) => f,
                Err(e) => return Err(e.raw_os_error().unwrap()),
            };
            io(f.seek(SeekFrom::Start(*off)).map(|_| ()))?;
            io(f.write_all(data))?;
            apply_real(m, &Op::SetXattr(p.clone(), k.clone(), v.clone()))?;
            drop(f);
            Ok(())
        }
        Op::Truncate(p, len) => {
            let c = cstr(&m.join(p));
            libc_rc(unsafe { libc::truncate(c.as_ptr(), *len as libc::off_t) })
        }
        Op::Rename(from, to) | Op::RenameDir(from, to) => {
            io(std::fs::rename(m.join(from), m.join(to)))
        }
        Op::Unlink(p) => io(std::fs::remove_file(m.join(p))),
        Op::Mkdir(p) => io(std::fs::create_dir(m.join(p))),
        Op::Rmdir(p) => io(std::fs::remove_dir(m.join(p))),
        Op::SetXattr(p, k, v) => {
            let c = cstr(&m.join(p));
            let name = CString::new(format!("user.x-amz-meta-{k}")).unwrap();
            libc_rc(unsafe {
                libc::setxattr(c.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0)
            })
        }
        Op::RemoveXattr(p, k) => {
            let c = cstr(&m.join(p));
            let name = CString::new(format!("user.x-amz-meta-{k}")).unwrap();
            libc_rc(unsafe { libc::removexattr(c.as_ptr(), name.as_ptr()) })
        }
    }
}

/// The `user.x-amz-meta-*` xattrs of a path of the mount, s3mount's own keys left out.
fn real_xattrs(path: &Path) -> BTreeMap<String, String> {
    let c = cstr(path);
    let mut buf = vec![0u8; 4096];
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr {}: errno {}", path.display(), errno());
    buf.truncate(n as usize);
    let mut out = BTreeMap::new();
    for name in buf.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let Some(short) = name.strip_prefix("user.x-amz-meta-") else {
            continue;
        };
        if OWN_KEYS.contains(&short) {
            continue;
        }
        let cname = CString::new(name).unwrap();
        let mut val = vec![0u8; 4096];
        let n = unsafe {
            libc::getxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        assert!(
            n >= 0,
            "getxattr {} {name}: errno {}",
            path.display(),
            errno()
        );
        val.truncate(n as usize);
        out.insert(short.to_string(), String::from_utf8(val).unwrap());
    }
    out
}

/// The tree as the mount shows it.
fn walk_mount(m: &Mount) -> Model {
    fn walk(m: &Mount, rel: &str, out: &mut Model) {
        let dir = if rel.is_empty() {
            m.path().to_path_buf()
        } else {
            m.join(rel)
        };
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("readdir {rel:?}: {e}")) {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let p = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let full = m.join(&p);
            let meta = std::fs::symlink_metadata(&full).unwrap();
            if meta.is_dir() {
                let xattrs = real_xattrs(&full);
                out.0.insert(p.clone(), Node::Dir { xattrs });
                walk(m, &p, out);
            } else {
                let bytes = std::fs::read(&full).unwrap_or_else(|e| panic!("read {p}: {e}"));
                assert_eq!(meta.len(), bytes.len() as u64, "{p}: st_size vs bytes read");
                let xattrs = real_xattrs(&full);
                out.0.insert(p, Node::File { bytes, xattrs });
            }
        }
    }
    let mut out = Model::default();
    walk(m, "", &mut out);
    out
}

/// Compare the bucket with the model through the S3 API.
fn check_s3(storage: &Storage, bucket: &str, model: &Model) {
    let (objects, _) = storage
        .bucket(bucket)
        .list_all("", None)
        .unwrap_or_else(|e| panic!("LIST: {e}"));
    let keys: BTreeSet<String> = objects.into_iter().map(|o| o.key).collect();
    let user_meta = |key: &str| -> BTreeMap<String, String> {
        let obj = ObjectRef {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        let info = storage
            .head_object(&obj)
            .unwrap_or_else(|e| panic!("HEAD {key}: {e}"));
        info.metadata
            .iter()
            .map(|(k, v)| (k.strip_prefix("x-amz-meta-").unwrap_or(k), v))
            .filter(|(k, _)| !OWN_KEYS.contains(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // Every key: a file with its bytes and metadata, or a dir marker with its metadata.
    let mut seen = Model::default();
    for key in &keys {
        if let Some(dir) = key.strip_suffix('/') {
            let xattrs = user_meta(key);
            seen.0.insert(dir.to_string(), Node::Dir { xattrs });
            continue;
        }
        let obj = ObjectRef {
            bucket: bucket.to_string(),
            key: key.clone(),
        };
        let mut g = storage
            .get_object(&obj, None, None)
            .unwrap_or_else(|e| panic!("GET {key}: {e}"));
        let mut bytes = Vec::new();
        g.body.read_to_end(&mut bytes).unwrap();
        let xattrs = user_meta(key);
        seen.0.insert(key.clone(), Node::File { bytes, xattrs });
    }
    // A model dir without a marker must be an implicit prefix (and then has no metadata).
    let mut want = model.clone();
    for (p, n) in &model.0 {
        if let Node::Dir { xattrs } = n {
            let prefix = format!("{p}/");
            if !keys.contains(&prefix) {
                assert!(
                    keys.iter().any(|k| k.starts_with(&prefix)),
                    "dir {p} of the model is neither a marker nor a prefix on the server: {keys:?}"
                );
                assert!(xattrs.is_empty(), "dir {p}: xattrs but no marker");
                want.0.remove(p);
            }
        }
    }
    assert_eq!(seen, want, "objects on the server vs the model");
}

/// Run `ops` on a fresh bucket + mount and on the model; panic on the first difference.
fn run(ops: &[Op]) {
    let server = server();
    let bucket = server.fresh_bucket("model");
    let storage = server.storage_in(&bucket);
    let m = Mount::new(server, &bucket);
    let mut model = Model::default();
    let mut outcomes = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let want = model.apply(op);
        outcomes.push(want);
        let got = apply_real(&m, op);
        assert_eq!(
            got,
            want,
            "op #{i} {op:?}: mount vs model (errnos); ops so far: {:?}",
            &ops[..=i]
        );
    }
    let seen = walk_mount(&m);
    assert_eq!(seen, model, "tree through the mount vs the model");
    check_s3(&storage, &bucket, &model);
    // A new mount (no cache, no inode table) sees the same tree.
    assert!(m.unmount().success(), "s3mount exit status");
    let m = Mount::new(server, &bucket);
    assert_eq!(
        walk_mount(&m),
        model,
        "tree through a new mount vs the model"
    );
    let failed = ops
        .iter()
        .zip(&outcomes)
        .filter(|(_, r)| r.is_err())
        .count();
    eprintln!(
        "model: {} ops ({failed} expected errors), {} paths at the end",
        ops.len(),
        model.0.len()
    );
}

fn join(d: &str, f: &str) -> String {
    if d.is_empty() {
        f.to_string()
    } else {
        format!("{d}/{f}")
    }
}

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
    ]
}

/// Random sequences (proptest, shrinking). Every sequence makes directories, which s3s-fs
/// cannot keep empty: skipped there once, not once per case.
#[test]
fn mount_matches_model() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let config = ProptestConfig {
        // `MODEL_CASES=200 cargo test --test model` for a longer hunt.
        cases: std::env::var("MODEL_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(12),
        max_shrink_iters: 50,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op(), 5..=25))| {
        run(&ops);
    });
}

fn s(x: &str) -> String {
    x.to_string()
}

/// A hand-written sequence touching every op kind (also a smoke test of the harness).
#[test]
fn every_op_kind() {
    run(&[
        Op::Mkdir(s("d")),
        Op::Put(s("d/a"), b"hello".to_vec()),
        Op::WriteAt(s("d/a"), 8, b"xy".to_vec()),
        Op::Truncate(s("d/a"), 3),
        Op::SetXattr(s("d/a"), s("k"), s("two")),
        Op::Rename(s("d/a"), s("b")),
        Op::RemoveXattr(s("b"), s("l")),
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
    ]);
}

// Sequences proptest found. The first four were bugs of the model, not of s3mount (the mount
// agreed with Linux), kept so the model stays right; the last one was a bug of s3mount.

/// A write of zero bytes past the end does not extend the file.
#[test]
fn regression_empty_write_past_eof() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    run(&[
        Op::Mkdir(s("d")),
        Op::Put(s("d/b"), vec![]),
        Op::WriteAt(s("d/b"), 1, vec![]),
        Op::Truncate(s("a"), 1),
        Op::Mkdir(s("e")),
    ]);
}

/// Renaming `e/d` onto its own ancestor `e`: the kernel answers ENOTEMPTY before s3mount sees
/// the call.
#[test]
fn regression_rename_onto_ancestor() {
    run(&[
        Op::Mkdir(s("e")),
        Op::Put(s("e/d"), vec![]),
        Op::Truncate(s("a"), 8),
        Op::Unlink(s("d")),
        Op::Rename(s("e/d"), s("e")),
    ]);
}

/// A directory renamed to a "file" name, then given an xattr (stored on its marker).
#[test]
fn regression_xattr_on_renamed_dir() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    run(&[
        Op::Mkdir(s("e")),
        Op::Rename(s("e"), s("c")),
        Op::SetXattr(s("c"), s("k"), s("1")),
        Op::Put(s("a"), vec![137]),
        Op::Rename(s("d"), s("e/a")),
    ]);
}

/// A missing source renamed into a "directory" that is a file: the kernel resolves the
/// target's parent first (ENOTDIR, not ENOENT).
#[test]
fn regression_rename_into_file_parent() {
    run(&[
        Op::Put(s("d"), vec![163, 153, 216]),
        Op::Rename(s("a"), s("d/a")),
    ]);
}

/// s3mount bug (fixed in `S3Fs::truncate`): `truncate(2)` right after `close` found the open
/// file whose last `release` (asynchronous after `close`) was running; it changed the staging
/// copy after that release and nobody uploaded it, so the size change was lost (the mount and
/// the server kept 1 byte). Failed about 14 times in 15 before the fix.
#[test]
fn regression_truncate_right_after_close() {
    run(&[
        Op::Put(s("c"), vec![]),
        Op::Put(s("c"), vec![164]),
        Op::Truncate(s("c"), 33),
        Op::Rename(s("c"), s("b")),
    ]);
}
