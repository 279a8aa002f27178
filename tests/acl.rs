//! POSIX ACLs through a real mount (`--acl`): `setfacl`/`getfacl` (package `acl`) give what they give on
//! the local disk (ext4), default ACLs and the umask included, the kernel enforces them for
//! another user (uid 65534, `setpriv`, on an `--allow-other` mount), and they are kept in the
//! object's `x-amz-meta-xattr` as s3fs keeps them, so a remount finds them.

mod common;

use std::path::Path;
use std::process::Output;

use common::{as_nobody, obj, open_path_to, server, sh, skip_on, Mount, ServerLimit};
use s3mount::s3::ObjectStore;

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What `setfacl`, `getfacl`, `touch`, `mkdir`, `mkfifo`, `chmod` and `mv` do in `dir` under
/// umask 022, as text to compare between the disk and the mount.
fn acl_script(dir: &Path) -> String {
    let script = "umask 022
        touch plain && mkdir plaind && mkfifo plainp
        touch f && setfacl -m u:65534:rwx,g:65534:r f
        mkdir d && setfacl -d -m u:65534:rwx,g::rwx d && setfacl -m u:65534:rx d
        touch d/g && mkdir d/e && mkfifo d/p && touch d/e/h
        setfacl -m u:65534:rw- plain && setfacl -b plain
        chmod 640 f && mv f d/f2
        setfacl -k d/e
        stat -c '%n %A' plain plaind plainp d d/f2 d/g d/e d/p d/e/h
        getfacl -cn plain plaind d d/f2 d/g d/e d/p d/e/h";
    out(&sh(&format!("cd {} && {script}", q(dir))))
}

#[test]
fn setfacl_and_getfacl_give_what_they_give_on_a_disk() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("acl-disk");
    let m = Mount::with_args(srv, &bucket, &["--acl"]);
    let local = tempfile::tempdir().unwrap();
    let disk = acl_script(local.path());
    let ours = acl_script(m.path());
    assert_eq!(ours, disk, "the mount (left) and ext4 (right)");
    // What the mount answers: extended ACLs shown by `ls -l` with a `+`.
    assert!(ours.contains("d/f2 -rw-r-----"), "{ours}");
    assert!(ours.contains("d/g -rw-rw-r--"), "{ours}");
    assert!(ours.contains("plain -rw-r--r--"), "{ours}");
    assert!(ours.contains("plaind drwxr-xr-x"), "{ours}");
    let ls = out(&sh(&format!("ls -ld {}", q(&m.join("d/g")))));
    assert!(ls.starts_with("-rw-rw-r--+"), "{ls}");
}

#[test]
fn the_kernel_enforces_acls_for_another_user() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("acl-enforce");
    let m = Mount::with_args(srv, &bucket, &["--acl", "--allow-other"]);
    open_path_to(&m.join("x"));
    let (f, d) = (m.join("f"), m.join("d"));
    sh(&format!(
        "echo secret > {f} && chmod 600 {f} && mkdir -m 700 {d} && echo inner > {d}/g && chmod 600 {d}/g",
        f = q(&f),
        d = q(&d)
    ));
    let cat = |p: &Path| as_nobody(&format!("cat {}", q(p)));
    assert!(!cat(&f).status.success(), "0600 and no ACL");
    sh(&format!("setfacl -m u:65534:r {}", q(&f)));
    let read = cat(&f);
    assert!(read.status.success(), "{read:?}");
    assert_eq!(out(&read), "secret\n");
    let write = as_nobody(&format!("echo x >> {}", q(&f)));
    assert!(!write.status.success(), "read-only ACL entry");
    // The mask limits it: chmod 600 sets the mask to ---.
    sh(&format!("chmod 600 {}", q(&f)));
    assert!(!cat(&f).status.success(), "masked by chmod 600");
    sh(&format!("chmod 640 {}", q(&f)));
    assert!(cat(&f).status.success(), "mask r-- again");
    // A directory: entered and listed through its ACL, and a default ACL lets the user read
    // what root makes there.
    assert!(!as_nobody(&format!("ls {}", q(&d))).status.success());
    sh(&format!(
        "setfacl -m u:65534:rx {d} && setfacl -d -m u:65534:r {d} && echo new > {d}/h",
        d = q(&d)
    ));
    assert!(as_nobody(&format!("ls {}", q(&d))).status.success());
    assert!(
        !cat(&d.join("g")).status.success(),
        "made before the default"
    );
    assert_eq!(out(&cat(&d.join("h"))), "new\n");
    // Removed, the ACL no longer lets the user in (the kernel forgot what it had cached).
    sh(&format!("setfacl -b {}", q(&f)));
    assert!(!cat(&f).status.success(), "ACL removed");
}

#[test]
fn acls_survive_a_remount_kept_as_s3fs_keeps_them() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("acl-remount");
    let m = Mount::with_args(srv, &bucket, &["-o", "acl"]);
    sh(&format!(
        "cd {} && touch f && mkdir d && setfacl -m u:65534:rwx f && setfacl -d -m u:65534:rx d",
        q(m.path())
    ));
    let before = out(&sh(&format!("cd {} && getfacl -cn f d", q(m.path()))));
    drop(m);
    // s3fs's form: x-amz-meta-xattr = percent-encoded {"system.posix_acl_access":"BASE64"}.
    let st = srv.storage();
    for (key, name) in [
        ("f", "system.posix_acl_access"),
        ("d/", "system.posix_acl_default"),
    ] {
        let h = st.head_object(&obj(&bucket, key)).unwrap();
        let entry = h.metadata.get("xattr").unwrap_or_default();
        let json = percent_encoding::percent_decode_str(entry).decode_utf8_lossy();
        assert!(
            json.starts_with(&format!("{{\"{name}\":\"AgAAAA")),
            "{key}: {json}"
        );
    }
    let m = Mount::with_args(srv, &bucket, &["--acl"]);
    let after = out(&sh(&format!("cd {} && getfacl -cn f d", q(m.path()))));
    assert_eq!(after, before);
    assert!(after.contains("user:65534:rwx"), "{after}");
    assert!(after.contains("default:user:65534:r-x"), "{after}");
}

/// Without `--acl` there are no ACLs, as before: `setfacl` fails (ENOTSUP), and `touch`/`mkdir`
/// apply the umask.
#[test]
fn without_acl_there_are_none() {
    let srv = server();
    let bucket = srv.fresh_bucket("acl-off");
    let m = Mount::new(srv, &bucket);
    let o = std::process::Command::new("setfacl")
        .args(["-m", "u:65534:r"])
        .arg(m.path())
        .output()
        .unwrap();
    assert!(!o.status.success(), "{o:?}");
    let modes = out(&sh(&format!(
        "cd {} && umask 022 && touch f && mkdir d && stat -c '%a' f d",
        q(m.path())
    )));
    assert_eq!(modes, "644\n755\n");
}
