//! Metadata: chmod/chown/utimes and extended attributes, in place (a self-copy) or folded into
//! the upload of an open file.

use super::*;
use crate::fs::attr::S_IFREG;
use crate::s3::meta::MAX_USER_METADATA_BYTES;

fn mode(m: u32) -> AttrChange {
    AttrChange {
        mode: Some(m),
        ..AttrChange::default()
    }
}

// ---- setattr --------------------------------------------------------------------------------

#[test]
fn chmod_chown_and_utimes_are_metadata_changed_by_a_self_copy() {
    let fx = fx();
    fx.store.put_behind_with(
        BUCKET,
        "f",
        b"data".to_vec(),
        &meta(&[("color", "red")]),
        &[("content-type".into(), "text/x-mine".into())],
    );
    let etag = fx.object("f").unwrap().etag;
    fx.store.reset_counts();
    let a = fx.setattr("f", mode(0o600)).unwrap();
    assert_eq!(a.perm, 0o600);
    let change = AttrChange {
        uid: Some(1001),
        gid: Some(1002),
        mtime: Some(at(1_700_000_000)),
        ..AttrChange::default()
    };
    let a = fx.setattr("f", change).unwrap();
    assert_eq!((a.uid, a.gid, a.mtime), (1001, 1002, at(1_700_000_000)));
    assert_eq!(fx.count(Operation::CopyObject), 2);
    assert_eq!(fx.count(Operation::PutObject), 0, "content untouched");
    let o = fx.object("f").unwrap();
    assert_eq!(o.data, b"data");
    assert_eq!(o.etag, etag, "same bytes");
    assert_eq!(
        o.metadata.get("mode"),
        Some((S_IFREG | 0o600).to_string().as_str())
    );
    assert_eq!(o.metadata.get("uid"), Some("1001"));
    assert_eq!(o.metadata.get("gid"), Some("1002"));
    assert_eq!(o.metadata.get("mtime"), Some("1700000000.000000000"));
    assert_eq!(o.metadata.get("color"), Some("red"), "other metadata kept");
    assert!(o
        .content_headers
        .contains(&("content-type".into(), "text/x-mine".into())));
    let fresh = fx.remount();
    let a = fresh.stat("f").unwrap();
    assert_eq!(
        (a.perm, a.uid, a.gid, a.mtime),
        (0o600, 1001, 1002, at(1_700_000_000))
    );
}

#[test]
fn attributes_of_other_tools_are_read_and_defaults_fill_the_rest() {
    let fx = fx();
    // Octal mode with a leading 0, float seconds (rclone's mtime).
    fx.store.put_behind_with(
        BUCKET,
        "rclone",
        Vec::new(),
        &meta(&[("mode", "0100640"), ("mtime", "1700000000.25")]),
        &[],
    );
    fx.put_behind("bare", b"");
    let a = fx.stat("rclone").unwrap();
    assert_eq!(a.perm, 0o640);
    assert_eq!(a.mtime, at(1_700_000_000) + Duration::from_millis(250));
    let o = fx.fs.options();
    let a = fx.stat("bare").unwrap();
    assert_eq!((a.perm, a.uid, a.gid), (0o644, o.uid, o.gid));
    fx.put_behind("dir/k", b"");
    assert_eq!(fx.stat("dir").unwrap().perm, 0o755);
}

/// What `rclone copy --metadata` (1.60) writes from a local disk: `st_mode` in octal without a
/// leading 0, the owner, the mtime in float seconds, the atime and btime in RFC 3339 in the
/// local time zone. Read as decimal, `100600` was a set-uid 0o4370 file, and the atime was lost.
#[test]
fn what_rclone_copy_metadata_writes_is_read() {
    let fx = fx();
    fx.store.put_behind_with(
        BUCKET,
        "f",
        b"a\n".to_vec(),
        &meta(&[
            ("mode", "100600"),
            ("uid", "1234"),
            ("gid", "5678"),
            ("mtime", "1700000000.69915086"),
            ("atime", "2023-11-14T23:13:20.5+01:00"),
            ("btime", "2023-11-14T23:13:20.5+01:00"),
        ]),
        &[],
    );
    fx.store.put_behind_with(
        BUCKET,
        "x",
        b"b\n".to_vec(),
        &meta(&[("mode", "104755"), ("atime", "2023-11-14T22:13:20Z")]),
        &[],
    );
    let a = fx.stat("f").unwrap();
    assert_eq!(a.kind, NodeKind::File);
    assert_eq!((a.perm, a.uid, a.gid), (0o600, 1234, 5678));
    assert_eq!(
        a.mtime,
        at(1_700_000_000) + Duration::from_nanos(699_150_860)
    );
    assert_eq!(a.atime, at(1_700_000_000) + Duration::from_millis(500));
    let a = fx.stat("x").unwrap();
    assert_eq!(a.perm, 0o4755);
    assert_eq!(a.atime, at(1_700_000_000));
    // A chmod writes the mode back as s3fs writes it (decimal, with the type bits).
    fx.setattr("f", mode(0o640)).unwrap();
    assert_eq!(
        fx.object("f").unwrap().metadata.get("mode"),
        Some((S_IFREG | 0o640).to_string().as_str())
    );
}

#[test]
fn a_change_to_a_file_open_with_unsaved_changes_goes_with_its_upload() {
    let fx = fx();
    let fh = fx.open("f", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, b"new").unwrap();
    fx.setattr("f", mode(0o640)).unwrap();
    fx.setxattr("f", "user.x-amz-meta-k", "v", 0).unwrap();
    assert_eq!(fx.getxattr("f", "user.x-amz-meta-k").unwrap(), "v");
    assert_eq!(fx.stat("f").unwrap().perm, 0o640);
    fx.close(fh).unwrap();
    assert_eq!(fx.count(Operation::CopyObject), 0);
    assert_eq!(fx.count(Operation::PutObject), 1);
    let o = fx.object("f").unwrap();
    assert_eq!(o.metadata.get("k"), Some("v"));
    assert_eq!(
        o.metadata.get("mode"),
        Some((S_IFREG | 0o640).to_string().as_str())
    );
}

/// A file open for writing and uploaded already (an `fsync`, or the `close` of a duplicate: each
/// `echo >&3` of a shell) is changed in place by a self-copy; the next write's upload at close
/// carried the metadata of the upload before, so the `chmod` and the xattrs were lost.
#[test]
fn a_change_between_two_uploads_of_an_open_file_is_kept_by_the_second() {
    let fx = fx();
    let fh = fx.open("f", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, b"a").unwrap();
    fx.fs.fsync(fh).unwrap();
    fx.setattr("f", mode(0o600)).unwrap();
    fx.setxattr("f", "user.x-amz-meta-k", "v", 0).unwrap();
    fx.setxattr("f", "user.other", "o", 0).unwrap();
    assert_eq!(fx.object("f").unwrap().metadata.get("k"), Some("v"));
    fx.write(fh, 1, b"b").unwrap();
    fx.close(fh).unwrap();
    let o = fx.object("f").unwrap();
    assert_eq!(o.data, b"ab");
    assert_eq!(o.metadata.get("k"), Some("v"));
    assert_eq!(
        o.metadata.get("mode"),
        Some((S_IFREG | 0o600).to_string().as_str())
    );
    let fresh = fx.remount();
    assert_eq!(fresh.stat("f").unwrap().perm, 0o600);
    assert_eq!(fresh.getxattr("f", "user.other").unwrap(), "o");
}

/// Another client's metadata change (a `setfattr` or `chmod` on a second mount) between two
/// uploads of a file open here for writing is kept by the second upload once the attributes
/// are stale, as it is by the first: the second upload used to carry the metadata of the
/// first, whatever its age, and undid the change without a word (a shell's `echo >&3`, a
/// program's `fsync` or a fork's inherited descriptor closing all upload before the last close).
#[test]
fn another_clients_metadata_change_between_two_uploads_is_kept_after_the_ttl() {
    let fx = fx();
    fx.store.put_behind(BUCKET, "f", b"a".to_vec());
    let fh = fx.open("f", libc::O_WRONLY).unwrap();
    fx.write(fh, 1, b"b").unwrap();
    fx.fs.fsync(fh).unwrap();
    let theirs = meta(&[("mode", &(S_IFREG | 0o600).to_string()), ("tag", "blue")]);
    fx.store
        .put_behind_with(BUCKET, "f", b"ab".to_vec(), &theirs, &[]);
    fx.write(fh, 2, b"c").unwrap();
    fx.close(fh).unwrap();
    let o = fx.object("f").unwrap();
    assert_eq!(o.data, b"abc");
    assert_eq!(o.metadata.get("tag"), Some("blue"));
    assert_eq!(
        o.metadata.get("mode"),
        Some((S_IFREG | 0o600).to_string().as_str())
    );
}

/// An upload brings the object's times up to date (`mtime`, and a `ctime`): s3fs writes them in
/// whole seconds, rclone writes no ctime, so the upload's took more room than the metadata a
/// `setfattr` had been let fill to 2 KB — and `close` failed with EIO, the bytes left under
/// `unsaved/` for a retry that could only fail again. The times give way, as in a self-copy.
#[test]
fn the_times_an_upload_brings_up_to_date_never_cost_the_metadata_its_room() {
    let fx = fx();
    let s3fs_times = [("mode", "33188"), ("mtime", "1000000000")];
    fx.store
        .put_behind_with(BUCKET, "f", b"a".to_vec(), &meta(&s3fs_times), &[]);
    let fh = fx.open("f", libc::O_WRONLY).unwrap();
    fx.write(fh, 1, b"b").unwrap();
    let room = MAX_USER_METADATA_BYTES - meta(&s3fs_times).encoded_size() - "k".len();
    let value = "v".repeat(room);
    fx.setxattr("f", "user.x-amz-meta-k", &value, 0).unwrap();
    assert_eq!(
        errno(fx.setxattr("f", "user.x-amz-meta-l", "w", 0)),
        libc::E2BIG
    );
    fx.close(fh).unwrap();
    let o = fx.object("f").unwrap();
    assert_eq!(o.data, b"ab");
    assert_eq!(o.metadata.get("k"), Some(value.as_str()));
    assert_eq!(o.metadata.get("mode"), Some("33188"));
    assert!(fx.unsaved().is_empty());
    // Without the times, the file shows the upload's Last-Modified, not the old mtime.
    let fresh = fx.remount();
    assert!(fresh.stat("f").unwrap().mtime > at(1_000_000_000));
}

#[test]
fn a_directory_keeps_attributes_on_its_marker_and_an_implicit_one_gets_a_marker() {
    let fx = fx();
    fx.put_behind("implicit/k", b"");
    fx.setattr("implicit", mode(0o700)).unwrap();
    assert!(fx.object("implicit/").is_some(), "a marker now");
    fx.setxattr("implicit", "user.x-amz-meta-k", "v", 0)
        .unwrap();
    let fresh = fx.remount();
    assert_eq!(fresh.stat("implicit").unwrap().perm, 0o700);
    assert_eq!(
        fresh.getxattr("implicit", "user.x-amz-meta-k").unwrap(),
        "v"
    );
}

// ---- extended attributes --------------------------------------------------------------------

#[test]
fn xattrs_are_user_metadata_by_a_guarded_self_copy() {
    let fx = fx();
    fx.store.put_behind_with(
        BUCKET,
        "f",
        b"bytes".to_vec(),
        &meta(&[("Color", "red")]),
        &[("content-type".into(), "image/x-test".into())],
    );
    assert_eq!(fx.getxattr("f", "user.x-amz-meta-color").unwrap(), "red");
    assert_eq!(fx.getxattr("f", "user.X-Amz-Meta-COLOR").unwrap(), "red");
    assert_eq!(fx.listxattr("f").unwrap(), ["user.x-amz-meta-color"]);
    assert_eq!(
        errno(fx.getxattr("f", "user.x-amz-meta-none")),
        libc::ENODATA
    );

    fx.store.reset_counts();
    fx.setxattr("f", "user.x-amz-meta-state", "done", 0)
        .unwrap();
    assert_eq!(fx.count(Operation::CopyObject), 1);
    let o = fx.object("f").unwrap();
    assert_eq!(o.data, b"bytes");
    assert_eq!(o.metadata.get("state"), Some("done"));
    assert_eq!(o.metadata.get("color"), Some("red"));
    assert!(o
        .content_headers
        .contains(&("content-type".into(), "image/x-test".into())));
    fx.removexattr("f", "user.x-amz-meta-color").unwrap();
    assert_eq!(fx.object("f").unwrap().metadata.get("color"), None);
    assert_eq!(
        errno(fx.removexattr("f", "user.x-amz-meta-color")),
        libc::ENODATA
    );
    assert_eq!(
        fx.remount().user_xattrs("f").unwrap(),
        [("state".to_string(), "done".to_string())].into()
    );
}

#[test]
fn the_size_protocol_and_the_create_replace_flags() {
    let fx = fx();
    fx.put("f", b"").unwrap();
    let name = "user.x-amz-meta-k";
    assert_eq!(
        errno(fx.setxattr("f", name, "v", libc::XATTR_REPLACE)),
        libc::ENODATA
    );
    fx.setxattr("f", name, "value", libc::XATTR_CREATE).unwrap();
    assert_eq!(
        errno(fx.setxattr("f", name, "w", libc::XATTR_CREATE)),
        libc::EEXIST
    );
    fx.setxattr("f", name, "other", libc::XATTR_REPLACE)
        .unwrap();
    assert_eq!(
        fx.getxattr_sized("f", name, 0).unwrap(),
        XattrReply::Size(5)
    );
    assert_eq!(errno(fx.getxattr_sized("f", name, 4)), libc::ERANGE);
    assert_eq!(
        fx.getxattr_sized("f", name, 5).unwrap(),
        XattrReply::Data(b"other".to_vec())
    );
    assert_eq!(fx.object("f").unwrap().metadata.get("k"), Some("other"));
}

#[test]
fn values_that_are_not_ascii_round_trip_and_limits_are_errors() {
    let fx = fx();
    fx.put("f", b"").unwrap();
    fx.setxattr("f", "user.x-amz-meta-title", "Grüße, 日本", 0)
        .unwrap();
    assert_eq!(
        fx.remount().getxattr("f", "user.x-amz-meta-title").unwrap(),
        "Grüße, 日本"
    );
    let big = "x".repeat(2100);
    assert_eq!(
        errno(fx.setxattr("f", "user.x-amz-meta-big", &big, 0)),
        libc::E2BIG
    );
    assert_eq!(
        errno(fx.setxattr("f", "user.x-amz-meta-a!b", "v", 0)),
        libc::EINVAL
    );
    for unsupported in ["security.selinux", "system.posix_acl_access"] {
        assert_eq!(
            errno(fx.setxattr("f", unsupported, "v", 0)),
            libc::ENOTSUP,
            "{unsupported}"
        );
    }
    // A name s3fs could not read back from its `x-amz-meta-xattr`: not stored.
    assert_eq!(errno(fx.setxattr("f", "user.a,b", "v", 0)), libc::ENOTSUP);
    for other in ["user.other", "trusted.x"] {
        assert_eq!(errno(fx.getxattr("f", other)), libc::ENODATA, "{other}");
    }
    // What GNU ls -l asks of every entry: not supported, so it stops asking (no request).
    let ino = fx.ino("f").unwrap();
    fx.store.reset_counts();
    for unsupported in ["security.selinux", "system.posix_acl_access"] {
        assert_eq!(
            errno(fx.fs.getxattr(ino, os(unsupported))),
            libc::ENOTSUP,
            "{unsupported}"
        );
    }
    assert_eq!(fx.store.total_requests(), 0);
    let no_xattr = setup().opts(|o| o.xattr = false).mount();
    no_xattr.put("f", b"").unwrap();
    assert_eq!(errno(no_xattr.listxattr("f")), libc::ENOSYS);
}

#[test]
fn other_names_are_kept_in_one_entry_as_s3fs_keeps_them() {
    let fx = fx();
    fx.put("f", b"content").unwrap();
    fx.setxattr("f", "user.mime_type", "text/x-c", 0).unwrap();
    fx.setxattr("f", "key1", "value1", 0).unwrap();
    fx.setxattr("f", "user.x-amz-meta-color", "red", 0).unwrap();
    // One entry, s3fs's encoding ({"key1":"dmFsdWUx","user.mime_type":"dGV4dC94LWM="}).
    let o = fx.object("f").unwrap();
    assert_eq!(
        o.metadata.get("xattr"),
        Some("%7B%22key1%22%3A%22dmFsdWUx%22%2C%22user.mime_type%22%3A%22dGV4dC94LWM%3D%22%7D")
    );
    assert_eq!(o.metadata.get("color"), Some("red"));
    assert_eq!(o.data, b"content");
    // Read back (after a remount too), listed by their own names, not as the entry.
    let again = fx.remount();
    assert_eq!(again.getxattr("f", "key1").unwrap(), "value1");
    assert_eq!(again.getxattr("f", "user.mime_type").unwrap(), "text/x-c");
    let names = again.listxattr("f").unwrap();
    for name in ["key1", "user.mime_type", "user.x-amz-meta-color"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "user.x-amz-meta-xattr"),
        "{names:?}"
    );
    // The flags, per name inside the entry.
    assert_eq!(
        errno(fx.setxattr("f", "key1", "v", libc::XATTR_CREATE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(fx.setxattr("f", "key2", "v", libc::XATTR_REPLACE)),
        libc::ENODATA
    );
    fx.setxattr("f", "key1", "changed", libc::XATTR_REPLACE)
        .unwrap();
    assert_eq!(fx.getxattr("f", "key1").unwrap(), "changed");
    // Removed one by one; the entry goes with the last.
    fx.removexattr("f", "key1").unwrap();
    assert_eq!(errno(fx.getxattr("f", "key1")), libc::ENODATA);
    assert_eq!(errno(fx.removexattr("f", "key1")), libc::ENODATA);
    assert!(fx.object("f").unwrap().metadata.get("xattr").is_some());
    fx.removexattr("f", "user.mime_type").unwrap();
    let o = fx.object("f").unwrap();
    assert_eq!(o.metadata.get("xattr"), None);
    assert_eq!(o.metadata.get("color"), Some("red"));
    // Past the 2 KB all metadata shares: E2BIG, nothing changed.
    let big = "x".repeat(1600);
    assert_eq!(errno(fx.setxattr("f", "user.big", &big, 0)), libc::E2BIG);
    assert_eq!(fx.object("f").unwrap().metadata.get("xattr"), None);
}

/// `x-amz-meta-xattr` holds the other names, and is not listed itself: `setfattr -n
/// user.x-amz-meta-xattr` replaced them all with its value (after which none was listed, not
/// even the one set), and `setfattr -x` of it removed them all, each with success.
#[test]
fn the_entry_that_holds_the_other_names_is_not_set_or_removed_by_name() {
    let fx = fx();
    fx.put("f", b"").unwrap();
    fx.setxattr("f", "user.other", "o", 0).unwrap();
    fx.store.reset_counts();
    let e = fx
        .setxattr("f", "user.x-amz-meta-xattr", "v", 0)
        .expect_err("the entry");
    assert_eq!(e.errno, libc::EINVAL);
    assert!(e.to_string().contains("holds the other"), "{e}");
    assert_eq!(
        errno(fx.removexattr("f", "user.x-amz-meta-xattr")),
        libc::EINVAL
    );
    assert_eq!(fx.count(Operation::CopyObject), 0, "nothing sent");
    assert_eq!(fx.remount().getxattr("f", "user.other").unwrap(), "o");
}

/// `rsync -X`, `tar --xattrs`, `cp -a` and `getfattr -d` copy or show what `listxattr` names:
/// not the metadata that holds what `stat` shows (mode, owner, times, device number), which
/// they copy as attributes (else `rsync -aX` finds them on every file it made, removes them
/// and copies the object again on every run, and a copy taken out and changed brings its old
/// mode back), still read and set by name; and on a symlink or special file, where the kernel
/// refuses every `user.` name, no `user.` name at all (else `rsync -X` fails on the one named).
#[test]
fn listxattr_names_only_what_programs_can_copy() {
    let fx = fx();
    fx.put("f", b"x").unwrap();
    fx.setattr(
        "f",
        AttrChange {
            mode: Some(0o600),
            uid: Some(7),
            gid: Some(8),
            mtime: Some(at(1_000_000_000)),
            atime: Some(at(1_000_000_000)),
            ..AttrChange::default()
        },
    )
    .unwrap();
    fx.setxattr("f", "user.x-amz-meta-color", "red", 0).unwrap();
    fx.setxattr("f", "user.mime_type", "text/x-c", 0).unwrap();
    let o = fx.object("f").unwrap();
    for own in ["mode", "uid", "gid", "mtime", "atime", "ctime"] {
        assert!(o.metadata.get(own).is_some(), "{own} on the object");
    }
    assert_eq!(
        fx.listxattr("f").unwrap(),
        ["user.x-amz-meta-color", "user.mime_type"]
    );
    assert_eq!(
        fx.getxattr("f", "user.x-amz-meta-mode").unwrap(),
        (S_IFREG | 0o600).to_string()
    );
    fx.setxattr(
        "f",
        "user.x-amz-meta-mode",
        &(S_IFREG | 0o640).to_string(),
        0,
    )
    .unwrap();
    assert_eq!(fx.stat("f").unwrap().perm, 0o640);

    fx.mkdir("d").unwrap();
    assert!(fx.object("d/").unwrap().metadata.get("mode").is_some());
    assert_eq!(fx.listxattr("d").unwrap(), Vec::<String>::new());
    fx.setxattr("d", "user.x-amz-meta-team", "core", 0).unwrap();
    assert_eq!(fx.listxattr("d").unwrap(), ["user.x-amz-meta-team"]);

    fx.symlink("f", "l").unwrap();
    fx.fs
        .mknod(ROOT_INO, os("p"), libc::S_IFIFO | 0o644, 0, None)
        .unwrap();
    for special in ["l", "p"] {
        let o = fx.object(special).unwrap();
        let mode = o.metadata.get("mode").unwrap();
        fx.store.put_behind_with(
            BUCKET,
            special,
            o.data.clone(),
            &meta(&[("mode", mode), ("color", "red")]),
            &[],
        );
        let again = fx.remount();
        assert_eq!(
            again.getxattr(special, "user.x-amz-meta-color").unwrap(),
            "red"
        );
        assert_eq!(
            again.listxattr(special).unwrap(),
            Vec::<String>::new(),
            "{special}"
        );
    }
}

#[test]
fn a_change_to_an_object_replaced_meanwhile_is_applied_to_the_new_one() {
    let fx = setup().ttl(Duration::from_secs(3600)).mount();
    fx.put("f", b"mine").unwrap();
    fx.setxattr("f", "user.x-amz-meta-a", "1", 0).unwrap();
    fx.store
        .put_behind_with(BUCKET, "f", b"theirs".to_vec(), &meta(&[("b", "2")]), &[]);
    fx.setxattr("f", "user.x-amz-meta-c", "3", 0).unwrap();
    let o = fx.object("f").unwrap();
    assert_eq!(o.data, b"theirs", "never the old content back");
    assert_eq!(o.metadata.get("b"), Some("2"));
    assert_eq!(o.metadata.get("c"), Some("3"));
    assert_eq!(o.metadata.get("a"), None, "their object had none");
}

#[test]
fn an_open_reader_follows_the_mounts_own_metadata_copy() {
    read_across(|fx| fx.setxattr("f", "user.x-amz-meta-k", "v", 0).unwrap());
}
