//! POSIX ACLs: kept in `x-amz-meta-xattr` as s3fs keeps them, with what the kernel leaves to a
//! FUSE file system (the mode from an access ACL, the mask on `chmod`, the default ACL or the
//! umask on create).

use super::*;
use crate::fs::acl::{
    CreateMode, ACCESS, DEFAULT, GROUP_OBJ, MASK, OTHER, UNDEFINED_ID as NONE, USER, USER_OBJ,
};
use crate::fs::attr::S_IFREG;
use crate::fs::xattr_json;

/// The `posix_acl_xattr` bytes the kernel sends for these entries (in its order).
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut out = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// `u::rwx,u:1000:rwx,g::r-x,m::rwx,o::r-x`
fn alice_rwx() -> Vec<u8> {
    acl(&[
        (USER_OBJ, 7, NONE),
        (USER, 7, 1000),
        (GROUP_OBJ, 5, NONE),
        (MASK, 7, NONE),
        (OTHER, 5, NONE),
    ])
}

/// A mount with `--acl`.
fn acl_fx() -> Fx {
    setup().opts(|o| o.acl = true).mount()
}

/// `fx`'s bucket mounted again, with `--acl`.
fn remount(fx: &Fx) -> Fx {
    setup_over(fx.store.clone()).opts(|o| o.acl = true).mount()
}

fn set(fx: &Fx, path: &str, name: &str, value: &[u8]) -> FsResult<()> {
    fx.fs.setxattr(fx.ino(path)?, os(name), value, 0)
}

fn get(fx: &Fx, path: &str, name: &str) -> FsResult<Vec<u8>> {
    fx.fs.getxattr(fx.ino(path)?, os(name))
}

/// What the object's `x-amz-meta-xattr` holds under `name`, read as s3fs reads it.
fn in_object(fx: &Fx, key: &str, name: &str) -> Option<Vec<u8>> {
    let o = fx.object(key)?;
    xattr_json::parse(o.metadata.get(xattr_json::ENTRY)?).remove(name)
}

#[test]
fn an_access_acl_is_set_read_kept_as_s3fs_keeps_it_and_removed() {
    let fx = acl_fx();
    fx.put("f", b"x").unwrap();
    set(&fx, "f", ACCESS, &alice_rwx()).unwrap();
    assert_eq!(get(&fx, "f", ACCESS).unwrap(), alice_rwx());
    // The mode's group bits are the mask's, as `ls -l` shows them.
    assert_eq!(fx.stat("f").unwrap().perm, 0o775);
    assert_eq!(in_object(&fx, "f", ACCESS), Some(alice_rwx()));
    assert_eq!(
        fx.object("f").unwrap().metadata.get("mode"),
        Some((S_IFREG | 0o775).to_string().as_str())
    );
    assert_eq!(fx.listxattr("f").unwrap(), vec![ACCESS.to_string()]);
    // A remount reads it back.
    assert_eq!(get(&remount(&fx), "f", ACCESS).unwrap(), alice_rwx());
    fx.removexattr("f", ACCESS).unwrap();
    assert_eq!(errno(get(&fx, "f", ACCESS)), libc::ENODATA);
    assert_eq!(in_object(&fx, "f", ACCESS), None);
    // Removing what is not there is done, as on a disk, without a request.
    let ino = fx.ino("f").unwrap();
    fx.store.reset_counts();
    fx.fs.removexattr(ino, os(ACCESS)).unwrap();
    assert_eq!(fx.store.total_requests(), 0);
}

#[test]
fn an_access_acl_the_mode_says_all_of_only_sets_the_mode() {
    let fx = acl_fx();
    fx.put("f", b"x").unwrap();
    set(&fx, "f", ACCESS, &alice_rwx()).unwrap();
    // `setfacl -b`, `chmod`-like ACLs: three entries.
    let minimal = acl(&[(USER_OBJ, 6, NONE), (GROUP_OBJ, 0, NONE), (OTHER, 0, NONE)]);
    set(&fx, "f", ACCESS, &minimal).unwrap();
    assert_eq!(fx.stat("f").unwrap().perm, 0o600);
    assert_eq!(errno(get(&fx, "f", ACCESS)), libc::ENODATA);
    assert_eq!(in_object(&fx, "f", ACCESS), None);
}

#[test]
fn what_the_kernel_would_refuse_is_refused() {
    let fx = acl_fx();
    fx.put("f", b"x").unwrap();
    assert_eq!(errno(set(&fx, "f", ACCESS, b"junk")), libc::EINVAL);
    let no_mask = acl(&[
        (USER_OBJ, 7, NONE),
        (USER, 7, 1000),
        (GROUP_OBJ, 5, NONE),
        (OTHER, 5, NONE),
    ]);
    assert_eq!(errno(set(&fx, "f", ACCESS, &no_mask)), libc::EINVAL);
    assert_eq!(errno(set(&fx, "f", DEFAULT, &alice_rwx())), libc::EACCES);
    // Another tool's value that does not parse is no ACL, not an unusable file.
    fx.store.put_behind_with(
        BUCKET,
        "g",
        b"x".to_vec(),
        &meta(&[(
            "xattr",
            &xattr_json::render(&[(ACCESS.to_string(), b"junk".to_vec())].into()).unwrap(),
        )]),
        &[],
    );
    assert_eq!(errno(get(&fx, "g", ACCESS)), libc::ENODATA);
    // The rest of the namespaces stay unsupported.
    for name in ["security.selinux", "system.nfs4_acl"] {
        assert_eq!(errno(get(&fx, "f", name)), libc::ENOTSUP, "{name}");
    }
}

/// Without `--acl`, as before: the ACL names are not supported (so GNU `ls -l` stops asking),
/// nothing is inherited, the umask applies.
#[test]
fn without_acl_the_names_are_not_supported_and_the_umask_applies() {
    let fx = fx();
    fx.mkdir("d").unwrap();
    for name in [ACCESS, DEFAULT] {
        assert_eq!(errno(set(&fx, "d", name, &alice_rwx())), libc::ENOTSUP);
        assert_eq!(errno(get(&fx, "d", name)), libc::ENOTSUP);
    }
    let d = fx.ino("d").unwrap();
    let asked = CreateMode {
        mode: 0o777,
        umask: 0o022,
    };
    assert_eq!(fx.fs.mkdir(d, os("e"), asked, None).unwrap().perm, 0o755);
}

#[test]
fn an_acl_s3fs_wrote_is_read() {
    let fx = acl_fx();
    // s3fs's entry: the percent-encoded JSON, the kernel's bytes in base64.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(alice_rwx());
    let json = format!("{{\"{ACCESS}\":\"{b64}\"}}");
    let value: String =
        percent_encoding::utf8_percent_encode(&json, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    fx.store.put_behind_with(
        BUCKET,
        "f",
        b"x".to_vec(),
        &meta(&[("xattr", &value), ("mode", "33277")]),
        &[],
    );
    assert_eq!(get(&fx, "f", ACCESS).unwrap(), alice_rwx());
}

#[test]
fn new_entries_take_the_default_acl_masked_by_their_mode_and_not_the_umask() {
    let fx = acl_fx();
    fx.mkdir("d").unwrap();
    set(&fx, "d", DEFAULT, &alice_rwx()).unwrap();
    assert_eq!(get(&fx, "d", DEFAULT).unwrap(), alice_rwx());
    assert_eq!(errno(get(&fx, "d", ACCESS)), libc::ENODATA);
    let d = fx.ino("d").unwrap();
    let asked = |mode| CreateMode { mode, umask: 0o077 };
    let (a, fh) = fx
        .fs
        .create(d, os("f"), asked(0o666), libc::O_WRONLY, None)
        .unwrap();
    fx.close(fh).unwrap();
    // 0666 masked by the default ACL (u::rwx, m::rwx, o::r-x), the umask not applied.
    assert_eq!(a.perm, 0o664);
    let file_acl = acl(&[
        (USER_OBJ, 6, NONE),
        (USER, 7, 1000),
        (GROUP_OBJ, 5, NONE),
        (MASK, 6, NONE),
        (OTHER, 4, NONE),
    ]);
    assert_eq!(get(&fx, "d/f", ACCESS).unwrap(), file_acl);
    assert_eq!(in_object(&fx, "d/f", ACCESS), Some(file_acl));
    assert_eq!(errno(get(&fx, "d/f", DEFAULT)), libc::ENODATA);
    // A directory inherits the default ACL too, as its default and (masked) access ACL.
    let sub = fx.fs.mkdir(d, os("e"), asked(0o777), None).unwrap();
    assert_eq!(sub.perm, 0o775);
    assert_eq!(get(&fx, "d/e", DEFAULT).unwrap(), alice_rwx());
    assert_eq!(get(&fx, "d/e", ACCESS).unwrap(), alice_rwx());
    let remounted = remount(&fx);
    assert_eq!(remounted.stat("d/e").unwrap().perm, 0o775);
    assert_eq!(get(&remounted, "d/e", DEFAULT).unwrap(), alice_rwx());
    let fifo = fx
        .fs
        .mknod(d, os("p"), asked(libc::S_IFIFO | 0o640), 0, None)
        .unwrap();
    assert_eq!(fifo.perm, 0o640);
    assert!(get(&fx, "d/p", ACCESS).is_ok());
    // A symlink takes nothing.
    fx.symlink("f", "d/l").unwrap();
    assert_eq!(in_object(&fx, "d/l", ACCESS), None);
}

#[test]
fn without_a_default_acl_the_umask_applies() {
    let fx = acl_fx();
    fx.mkdir("d").unwrap();
    let d = fx.ino("d").unwrap();
    let asked = |mode| CreateMode { mode, umask: 0o022 };
    let (a, fh) = fx
        .fs
        .create(d, os("f"), asked(0o666), libc::O_WRONLY, None)
        .unwrap();
    fx.close(fh).unwrap();
    assert_eq!(a.perm, 0o644);
    assert_eq!(
        fx.fs.mkdir(d, os("e"), asked(0o777), None).unwrap().perm,
        0o755
    );
    let node = fx
        .fs
        .mknod(d, os("p"), asked(libc::S_IFIFO | 0o666), 0, None)
        .unwrap();
    assert_eq!(node.perm, 0o644);
    for name in ["d/f", "d/e", "d/p"] {
        assert_eq!(errno(get(&fx, name, ACCESS)), libc::ENODATA, "{name}");
        assert_eq!(in_object(&fx, name, ACCESS), None, "{name}");
    }
    // A default ACL removed: the umask again.
    set(&fx, "d", DEFAULT, &alice_rwx()).unwrap();
    fx.removexattr("d", DEFAULT).unwrap();
    let (a, fh) = fx
        .fs
        .create(d, os("g"), asked(0o666), libc::O_WRONLY, None)
        .unwrap();
    fx.close(fh).unwrap();
    assert_eq!(a.perm, 0o644);
}

#[test]
fn chmod_sets_the_mask_of_the_access_acl_in_the_same_change() {
    let fx = acl_fx();
    fx.put("f", b"x").unwrap();
    set(&fx, "f", ACCESS, &alice_rwx()).unwrap();
    fx.store.reset_counts();
    let a = fx
        .setattr(
            "f",
            AttrChange {
                mode: Some(0o640),
                ..AttrChange::default()
            },
        )
        .unwrap();
    assert_eq!(a.perm, 0o640);
    assert_eq!(fx.store.count(Operation::CopyObject), 1);
    let after = acl(&[
        (USER_OBJ, 6, NONE),
        (USER, 7, 1000),
        (GROUP_OBJ, 5, NONE),
        (MASK, 4, NONE),
        (OTHER, 0, NONE),
    ]);
    assert_eq!(get(&fx, "f", ACCESS).unwrap(), after);
    assert_eq!(in_object(&fx, "f", ACCESS), Some(after));
}

#[test]
fn a_rename_keeps_the_acls_of_files_and_directories() {
    let fx = acl_fx();
    fx.mkdir("d").unwrap();
    set(&fx, "d", DEFAULT, &alice_rwx()).unwrap();
    set(&fx, "d", ACCESS, &alice_rwx()).unwrap();
    fx.put("d/f", b"x").unwrap();
    set(&fx, "d/f", ACCESS, &alice_rwx()).unwrap();
    fx.rename("d/f", "d/g").unwrap();
    assert_eq!(get(&fx, "d/g", ACCESS).unwrap(), alice_rwx());
    fx.rename("d", "e").unwrap();
    let fx = remount(&fx);
    assert_eq!(get(&fx, "e", ACCESS).unwrap(), alice_rwx());
    assert_eq!(get(&fx, "e", DEFAULT).unwrap(), alice_rwx());
    assert_eq!(get(&fx, "e/g", ACCESS).unwrap(), alice_rwx());
}

/// GNU `ls -l` asks every entry's access ACL: answered from the metadata the mount holds, even
/// past its TTL (as the mode is), without a request; of a file whose metadata it does not hold
/// (in a directory too large for a listing's HEADs), none, without a request either.
#[test]
fn an_acl_is_answered_from_the_metadata_the_mount_holds() {
    let fx = acl_fx();
    fx.put("f", b"x").unwrap();
    fx.mkdir("d").unwrap();
    set(&fx, "f", ACCESS, &alice_rwx()).unwrap();
    let (f, d) = (fx.ino("f").unwrap(), fx.ino("d").unwrap());
    fx.store.reset_counts();
    // The fixture trusts nothing (TTL 0): still no request.
    assert_eq!(fx.fs.getxattr(f, os(ACCESS)).unwrap(), alice_rwx());
    assert_eq!(errno(fx.fs.getxattr(d, os(ACCESS))), libc::ENODATA);
    assert_eq!(errno(fx.fs.getxattr(d, os(DEFAULT))), libc::ENODATA);
    assert_eq!(fx.store.total_requests(), 0);
    let big = setup().opts(|o| {
        o.acl = true;
        o.listing_head_limit = 0;
    });
    let fx = big.mount();
    fx.store
        .put_behind_with(BUCKET, "l/f", b"x".to_vec(), &Metadata::new(), &[]);
    let entries = fx.ls_entries("l").unwrap();
    let f = entries.iter().find(|e| e.name == "f").unwrap().ino;
    fx.store.reset_counts();
    assert_eq!(errno(fx.fs.getxattr(f, os(ACCESS))), libc::ENODATA);
    assert_eq!(fx.store.total_requests(), 0);
}
