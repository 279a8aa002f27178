//! The reference model ([`super::reference_model`], shared with tests/model.rs) driving
//! [`S3Fs`] directly: every operation's outcome (Ok or errno) is compared with the model's
//! prediction; after each sequence the whole tree is compared with the model through the file
//! system (walk, bytes, permission bits, `user.x-amz-meta-*` xattrs; again through a new
//! mount) and in the store (every key, its bytes, mode and metadata, a marker or prefix for
//! every directory).
//!
//! Each sequence runs with attributes trusted either not at all or for the whole sequence, so
//! both the server's answers and the mount's own bookkeeping of its changes are checked.
//! Without a server or a kernel a case takes a few milliseconds, so the default is a thousand
//! cases (`MODEL_CASES=100000 cargo test --lib model` for a longer hunt); tests/model.rs runs
//! the same model against a real mount.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;

use super::reference_model::{self as spec, Model, Op};
use super::*;

/// Cases per run by default.
const DEFAULT_CASES: u32 = 1000;
/// Longer than any case: what is trusted stays trusted.
const TRUSTED: Duration = Duration::from_secs(3600);

fn xattr_name(k: &str) -> String {
    format!("user.x-amz-meta-{k}")
}

/// Open an existing file for writing, write `data` at `off`, then `between` with the handle
/// while it is open, and close it.
fn write_open(
    fx: &Fx,
    p: &str,
    off: u64,
    data: &[u8],
    between: impl FnOnce(u64) -> FsResult<()>,
) -> FsResult<()> {
    let fh = fx.open(p, libc::O_WRONLY)?;
    let r = fx.write(fh, off, data).and_then(|()| between(fh));
    let closed = fx.close(fh);
    r.and(closed)
}

/// Apply `op` to the file system, as the program of tests/model.rs does through a mount
/// ([`Op::Remount`] is `run`'s, which owns the mount).
fn apply_fs(fx: &Fx, op: &Op) -> Result<(), i32> {
    let r = match op {
        Op::Put(p, data) => fx.put(p, data),
        Op::WriteAt(p, off, data) => write_open(fx, p, *off, data, |fh| fx.fs.fsync(fh)),
        Op::WriteXattrWhileOpen(p, off, data, k, v) => {
            write_open(fx, p, *off, data, |_| fx.setxattr(p, &xattr_name(k), v, 0))
        }
        Op::Truncate(p, len) => fx.truncate(p, *len),
        Op::Rename(from, to) | Op::RenameDir(from, to) => fx.rename(from, to),
        Op::Unlink(p) => fx.unlink(p),
        Op::Mkdir(p) => fx.mkdir(p),
        Op::Rmdir(p) => fx.rmdir(p),
        Op::SetXattr(p, k, v) => fx.setxattr(p, &xattr_name(k), v, 0),
        Op::RemoveXattr(p, k) => fx.removexattr(p, &xattr_name(k)),
        Op::Chmod(p, mode) => {
            let change = AttrChange {
                mode: Some(*mode),
                ..AttrChange::default()
            };
            fx.setattr(p, change).map(|_| ())
        }
        Op::Remount => Ok(()),
    };
    r.map_err(|e| e.errno)
}

/// The tree as the file system shows it.
impl spec::Tree for Fx {
    fn names(&self, dir: &str) -> Vec<String> {
        self.ls(dir)
            .unwrap_or_else(|e| panic!("readdir {dir:?}: {e}"))
    }

    fn stat(&self, path: &str) -> (bool, u64, u32) {
        let a = self
            .getattr(path)
            .unwrap_or_else(|e| panic!("stat {path}: {e}"));
        (a.kind == NodeKind::Dir, a.size, u32::from(a.perm))
    }

    fn xattrs(&self, path: &str) -> BTreeMap<String, String> {
        self.user_xattrs(path)
            .unwrap_or_else(|e| panic!("xattrs {path}: {e}"))
    }

    fn read(&self, path: &str) -> Vec<u8> {
        self.cat(path)
            .unwrap_or_else(|e| panic!("read {path}: {e}"))
    }
}

/// Compare the store with the model.
fn check_store(fx: &Fx, model: &Model) {
    let keys: BTreeSet<String> = fx.keys().into_iter().collect();
    let objects = keys
        .iter()
        .map(|k| {
            let o = fx.object(k).expect("listed");
            let metadata = o
                .metadata
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            (k.clone(), o.data, metadata)
        })
        .collect();
    assert_eq!(
        Model::from_server(objects),
        model.on_server(&keys),
        "objects in the store vs the model"
    );
}

/// Run `ops` on a fresh bucket and on the model, attributes trusted for `ttl`; panic on the
/// first difference.
fn run(ops: &[Op], ttl: Duration) {
    let mut fx = setup().ttl(ttl).mount();
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Remount = op {
            fx = setup_over(fx.store.clone()).ttl(ttl).mount();
        }
        let want = model.apply(op);
        let got = apply_fs(&fx, op);
        assert_eq!(
            got,
            want,
            "op #{i} {op:?}: file system vs model (errnos); ops so far: {:?}",
            &ops[..=i]
        );
    }
    assert_eq!(
        spec::walk(&fx),
        model,
        "tree through the file system vs the model"
    );
    check_store(&fx, &model);
    assert_eq!(fx.unsaved(), vec![], "nothing failed, nothing kept");
    // A new mount knows nothing but what it reads; trusting its listings for the whole walk
    // costs a request per directory instead of two per path.
    let fresh = setup_over(fx.store.clone()).ttl(TRUSTED).mount();
    assert_eq!(
        spec::walk(&fresh),
        model,
        "tree through a new mount vs the model"
    );
}

/// Attributes trusted not at all (every call asks the store) or for the whole case (the
/// mount's own bookkeeping answers).
fn ttl() -> impl Strategy<Value = Duration> {
    prop_oneof![Just(Duration::ZERO), Just(TRUSTED)]
}

/// Random sequences (proptest, shrinking).
#[test]
fn file_system_matches_model() {
    let config = ProptestConfig {
        cases: spec::cases(DEFAULT_CASES),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in spec::ops(), ttl in ttl())| {
        run(&ops, ttl);
    });
}

/// With both TTLs.
fn run_both(ops: &[Op]) {
    run(ops, Duration::ZERO);
    run(ops, TRUSTED);
}

#[test]
fn every_op_kind() {
    run_both(&spec::every_op_kind());
}

#[test]
fn regression_empty_write_past_eof() {
    run_both(&spec::empty_write_past_eof());
}

#[test]
fn regression_rename_onto_ancestor() {
    run_both(&spec::rename_onto_ancestor());
}

#[test]
fn regression_xattr_on_renamed_dir() {
    run_both(&spec::xattr_on_renamed_dir());
}

#[test]
fn regression_rename_into_file_parent() {
    run_both(&spec::rename_into_file_parent());
}

#[test]
fn regression_truncate_right_after_close() {
    run_both(&spec::truncate_right_after_close());
}
