//! What programs expect of a file system (issue 12): special files, owners, times and link
//! counts, other tools' directories, long keys (files unlinked or replaced while open:
//! unlinked.rs). The same rows next to a local disk, through a real mount: tests/posix.rs.

use super::*;
use crate::fs::attr::Caller;
use crate::s3::{PutOptions, RequestBody};

// ---- special files --------------------------------------------------------------------------

#[test]
fn special_files_are_stored_as_s3fs_stores_them() {
    let fx = fx();
    let dev = libc::makedev(8, 1) as u32;
    for (name, mode, rdev) in [
        ("p", libc::S_IFIFO | 0o640, 0),
        ("s", libc::S_IFSOCK | 0o755, 0),
        ("c", libc::S_IFCHR | 0o600, dev),
        ("b", libc::S_IFBLK | 0o660, dev),
        ("r", libc::S_IFREG | 0o644, 0),
    ] {
        let a = fx.fs.mknod(ROOT_INO, os(name), mode, rdev, None).unwrap();
        assert_eq!(
            (a.kind.type_bits(), u32::from(a.perm)),
            (mode & libc::S_IFMT, mode & 0o7777)
        );
        let o = fx.object(name).unwrap();
        assert!(o.data.is_empty());
        assert_eq!(
            o.metadata.get("mode"),
            Some(mode.to_string().as_str()),
            "{name}"
        );
        let want_rdev = (rdev != 0).then(|| rdev.to_string());
        assert_eq!(o.metadata.get("rdev"), want_rdev.as_deref(), "{name}");
    }
    let fx = fx.remount();
    assert_eq!(
        fx.stat("c").unwrap().kind,
        NodeKind::CharDevice { rdev: dev }
    );
    assert_eq!(fx.stat("c").unwrap().rdev, dev);
    assert_eq!(fx.stat("p").unwrap().kind, NodeKind::Fifo);
    assert_eq!(fx.stat("r").unwrap().kind, NodeKind::File);
    // Renamable and removable like any file; a chmod keeps the type.
    fx.setattr(
        "p",
        AttrChange {
            mode: Some(0o600),
            ..AttrChange::default()
        },
    )
    .unwrap();
    fx.rename("p", "q").unwrap();
    assert_eq!(
        fx.remount().stat("q").unwrap().kind,
        NodeKind::Fifo,
        "the type survives a chmod and a rename"
    );
    fx.unlink("s").unwrap();
    assert_eq!(errno(fx.stat("s")), libc::ENOENT);
    assert_eq!(
        errno(
            fx.fs
                .mknod(ROOT_INO, os("d"), libc::S_IFDIR | 0o755, 0, None)
        ),
        libc::EINVAL
    );
}

// ---- owners ---------------------------------------------------------------------------------

#[test]
fn with_other_users_let_in_what_a_user_creates_is_theirs() {
    let fx = setup().opts(|o| o.owners_from_callers = true).mount();
    let them = Some(Caller { uid: 7, gid: 8 });
    let (a, fh) = fx
        .fs
        .create(ROOT_INO, os("f"), 0o644, libc::O_WRONLY, them)
        .unwrap();
    assert_eq!((a.uid, a.gid), (7, 8));
    fx.close(fh).unwrap();
    let o = fx.object("f").unwrap();
    assert_eq!(
        (o.metadata.get("uid"), o.metadata.get("gid")),
        (Some("7"), Some("8"))
    );
    // A set-gid directory gives its group, and its set-gid bit to a directory made in it.
    let d = fx.fs.mkdir(ROOT_INO, os("d"), 0o2777, them).unwrap();
    fx.setattr(
        "d",
        AttrChange {
            gid: Some(42),
            ..AttrChange::default()
        },
    )
    .unwrap();
    let sub = fx.fs.mkdir(d.ino, os("sub"), 0o755, them).unwrap();
    assert_eq!((sub.uid, sub.gid), (7, 42));
    assert_eq!(u32::from(sub.perm) & libc::S_ISGID, libc::S_ISGID);
    let l = fx
        .fs
        .symlink(
            d.ino,
            os("l"),
            Path::new("t"),
            Some(Caller { uid: 9, gid: 9 }),
        )
        .unwrap();
    assert_eq!((l.uid, l.gid), (9, 42));
    assert_eq!(fx.remount().stat("d/sub").unwrap().uid, 7);
}

#[test]
fn without_other_users_nothing_is_recorded() {
    let fx = fx();
    let a = fx
        .fs
        .mkdir(ROOT_INO, os("d"), 0o755, Some(Caller { uid: 7, gid: 8 }))
        .unwrap();
    assert_eq!((a.uid, a.gid), (fx.fs.options().uid, fx.fs.options().gid));
    assert_eq!(fx.object("d/").unwrap().metadata.get("uid"), None);
}

// ---- times and link counts ------------------------------------------------------------------

#[test]
fn a_metadata_change_carries_its_ctime_and_keeps_the_mtime_shown() {
    let fx = fx();
    fx.put_behind("f", b"x");
    let before = fx.stat("f").unwrap();
    fx.setattr(
        "f",
        AttrChange {
            mode: Some(0o600),
            ..AttrChange::default()
        },
    )
    .unwrap();
    let after = fx.stat("f").unwrap();
    assert_eq!(after.mtime, before.mtime, "a chmod does not move the mtime");
    assert!(after.ctime > before.ctime, "it moves the ctime");
    let o = fx.object("f").unwrap();
    assert!(o.metadata.get("ctime").is_some());
    let again = fx.remount().stat("f").unwrap();
    assert_eq!(again.mtime, before.mtime, "also after a remount");
    assert_eq!(again.ctime, after.ctime);
}

#[test]
fn reads_move_the_atime_in_memory_only() {
    let fx = setup().ttl(Duration::from_secs(60)).mount();
    fx.put("f", b"abc").unwrap();
    let before = fx.stat("f").unwrap();
    let puts = fx.count(Operation::PutObject) + fx.count(Operation::CopyObject);
    assert_eq!(fx.cat("f").unwrap(), b"abc");
    let after = fx.stat("f").unwrap();
    assert!(after.atime > before.atime);
    assert_eq!((after.mtime, after.ctime), (before.mtime, before.ctime));
    assert_eq!(
        fx.count(Operation::PutObject) + fx.count(Operation::CopyObject),
        puts,
        "no write for a read"
    );
}

#[test]
fn directories_count_their_subdirectories_and_move_with_their_entries() {
    let fx = setup().ttl(Duration::from_secs(60)).mount();
    fx.mkdir("d").unwrap();
    let before = fx.stat("d").unwrap();
    assert_eq!(before.nlink, 2);
    fx.mkdir("d/a").unwrap();
    fx.mkdir("d/b").unwrap();
    fx.put("d/f", b"").unwrap();
    let after = fx.stat("d").unwrap();
    assert_eq!(after.nlink, 4);
    assert!(after.mtime > before.mtime && after.ctime > before.ctime);
    fx.rmdir("d/a").unwrap();
    assert_eq!(fx.stat("d").unwrap().nlink, 3);
}

/// A directory removed, or replaced by a rename, while the kernel still holds it (open, or
/// someone's working directory) has `st_nlink` 0 for `fstat`, as on a disk and as a file
/// unlinked while open (xfstests generic/035 found 2).
#[test]
fn a_directory_removed_or_renamed_over_while_held_has_no_links() {
    let fx = setup().ttl(Duration::from_secs(60)).mount();
    for d in ["gone", "over", "from"] {
        fx.mkdir(d).unwrap();
    }
    fx.ls("gone").unwrap();
    let gone = fx.ino("gone").unwrap();
    let over = fx.ino("over").unwrap();
    fx.rmdir("gone").unwrap();
    fx.rename("from", "over").unwrap();
    assert_eq!(fx.fs.getattr(gone).unwrap().nlink, 0, "removed");
    assert_eq!(fx.fs.getattr(over).unwrap().nlink, 0, "renamed over");
    assert_eq!(fx.stat("over").unwrap().nlink, 2, "the one moved there");
}

/// `rsync -a`, `cp -a` and `tar -x` fill a directory, then set its times: the times set
/// replace the ones its new entries moved in memory at once, as on a disk — not only after a
/// remount (else every `rsync -a` finds every directory's time changed, and copies its marker
/// again). A read's atime gives way to one set explicitly the same way.
#[test]
fn times_set_explicitly_replace_the_ones_moved_in_memory() {
    let fx = setup().ttl(Duration::from_secs(60)).mount();
    fx.mkdir("d").unwrap();
    fx.put("d/f", b"x").unwrap();
    let (mtime, atime) = (at(1_041_379_200), at(1_041_379_100));
    let shown = fx
        .setattr(
            "d",
            AttrChange {
                mtime: Some(mtime),
                atime: Some(atime),
                ..AttrChange::default()
            },
        )
        .unwrap();
    assert_eq!((shown.mtime, shown.atime), (mtime, atime));
    let d = fx.stat("d").unwrap();
    assert_eq!((d.mtime, d.atime), (mtime, atime));
    assert_eq!(fx.remount().stat("d").unwrap().mtime, mtime);

    fx.put("f", b"abc").unwrap();
    assert_eq!(fx.cat("f").unwrap(), b"abc");
    assert!(fx.stat("f").unwrap().atime > atime, "the read moved it");
    fx.setattr(
        "f",
        AttrChange {
            atime: Some(atime),
            ..AttrChange::default()
        },
    )
    .unwrap();
    assert_eq!(fx.stat("f").unwrap().atime, atime);
}

/// A `truncate` of a file open with changes, after its mtime was set explicitly, moves the
/// mtime again, as a write does and as on a disk: the upload kept the mtime set, so the file
/// showed the truncate's time until a remount, then the older one set before it.
#[test]
fn a_truncate_after_an_explicit_mtime_moves_it_again() {
    let fx = fx();
    let fh = fx
        .open("f", libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC)
        .unwrap();
    fx.write(fh, 0, b"0123456789").unwrap();
    let set = at(1_000_000_000);
    fx.setattr(
        "f",
        AttrChange {
            mtime: Some(set),
            ..AttrChange::default()
        },
    )
    .unwrap();
    fx.truncate("f", 5).unwrap();
    fx.close(fh).unwrap();
    let shown = fx.stat("f").unwrap().mtime;
    assert!(shown > set, "moved by the truncate");
    assert!(
        fx.remount().stat("f").unwrap().mtime > set,
        "after a remount"
    );
}

/// `touch -d 1960-01-01` keeps its date through a remount, written as s3fs writes a time
/// before 1970 (it was stored as 0: the file showed 1970 after a remount).
#[test]
fn a_time_before_1970_survives_a_remount() {
    let fx = fx();
    fx.put("f", b"x").unwrap();
    let t = std::time::UNIX_EPOCH - Duration::new(315_619_199, 500_000_000);
    fx.setattr(
        "f",
        AttrChange {
            mtime: Some(t),
            ..AttrChange::default()
        },
    )
    .unwrap();
    assert_eq!(
        fx.object("f").unwrap().metadata.get("mtime"),
        Some("-315619200.500000000")
    );
    assert_eq!(fx.remount().stat("f").unwrap().mtime, t);
}

// ---- other tools' directories, long keys ----------------------------------------------------

/// Directories `h` (Hadoop's `h_$folder$`) and `old` (old s3fs's zero-byte `old` object typed
/// `application/x-directory`), written behind the mount's back.
fn other_tools_dirs(fx: &Fx) {
    fx.put_behind("h_$folder$", b"");
    let typed = PutOptions {
        content_headers: vec![("content-type".into(), "application/x-directory".into())],
        ..PutOptions::default()
    };
    fx.fs
        .bucket()
        .put("old", RequestBody::Empty, &typed)
        .unwrap();
}

#[test]
fn directories_other_tools_mark_are_directories_and_go_with_rmdir() {
    let fx = fx();
    other_tools_dirs(&fx);
    assert_eq!(fx.ls("").unwrap(), ["h", "old"]);
    assert_eq!(fx.stat("h").unwrap().kind, NodeKind::Dir);
    assert_eq!(fx.stat("old").unwrap().kind, NodeKind::Dir);
    fx.rmdir("h").unwrap();
    fx.rmdir("old").unwrap();
    assert!(fx.keys().is_empty(), "{:?}", fx.keys());
}

/// A `dir/` marker another tool made carries no `x-amz-meta-mtime`: the directory's mtime is
/// the marker's Last-Modified, whether `ls` of its parent or a lookup by name finds it — not
/// the mount's start, which a remount would move (`make`, `rsync` would see it change).
#[test]
fn a_directory_marker_without_an_mtime_dates_from_its_last_modified() {
    let hour = std::time::Duration::from_secs(3600);
    let fx = setup().ttl(hour).mount();
    fx.put_behind("listed/", b"");
    fx.put_behind("looked-up/", b"");
    let stored = |key: &str| fx.object(key).unwrap().last_modified;
    assert_eq!(fx.stat("looked-up").unwrap().mtime, stored("looked-up/"));
    let again = setup_over(fx.store.clone()).ttl(hour).mount();
    assert_eq!(again.ls("").unwrap(), ["listed", "looked-up"]);
    // Answered from the listing and the HEAD of the marker it made.
    assert_eq!(again.stat("listed").unwrap().mtime, stored("listed/"));
}

/// Hadoop's `name_$folder$` markers are empty: a file with bytes under such a name (written
/// here or by anyone) is a file, not a directory `name` whose `rmdir` would delete it.
#[test]
fn a_file_with_bytes_named_like_a_hadoop_marker_is_a_file() {
    let fx = fx();
    fx.put("notes_$folder$", b"keep me").unwrap();
    fx.put_behind("theirs_$folder$", b"theirs");
    let again = fx.remount();
    assert_eq!(again.ls("").unwrap(), ["notes_$folder$", "theirs_$folder$"]);
    assert_eq!(errno(again.rmdir("notes")), libc::ENOENT);
    assert_eq!(again.cat("notes_$folder$").unwrap(), b"keep me");
    assert_eq!(fx.data("theirs_$folder$"), b"theirs");
}

/// A `dir/` marker is empty; one holding bytes (another tool put them there) shows as the
/// directory, and `rmdir` refuses rather than delete bytes nobody could see through the mount.
#[test]
fn rmdir_keeps_a_marker_that_holds_bytes() {
    let fx = fx();
    fx.put_behind("d/", b"data in marker");
    fx.put_behind("e/", b"");
    let again = fx.remount();
    assert_eq!(again.ls("").unwrap(), ["d", "e"]);
    assert_eq!(errno(again.rmdir("d")), libc::ENOTEMPTY);
    assert_eq!(fx.data("d/"), b"data in marker");
    again.rmdir("e").unwrap();
    assert_eq!(fx.keys(), ["d/"]);
}

#[test]
fn a_directory_other_tools_marked_takes_a_chmod_and_goes_with_rmdir() {
    // What a lookup learned of the marker is still fresh at the chmod, as in a real mount.
    let fx = setup()
        .opts(|o| o.metadata_ttl = Duration::from_secs(60))
        .mount();
    other_tools_dirs(&fx);
    // Found by name (`old`, by its HEAD) and by a listing (`h_$folder$`; a lookup by name
    // alone does not look for that marker), and looked up again, so that what the mount
    // knows of the marker is fresh when the chmod comes.
    assert_eq!(fx.stat("old").unwrap().kind, NodeKind::Dir);
    assert_eq!(fx.ls("").unwrap(), ["h", "old"]);
    for d in ["old", "h"] {
        let chmod = AttrChange {
            mode: Some(0o700),
            ..AttrChange::default()
        };
        fx.setattr(d, chmod).unwrap();
        // Our `d/` marker replaces the other tool's, as s3fs does.
        let keys = fx.keys();
        assert!(keys.contains(&format!("{d}/")), "{keys:?}");
        assert!(
            !keys.iter().any(|k| k == d || *k == format!("{d}_$folder$")),
            "{keys:?}"
        );
        assert_eq!(fx.stat(d).unwrap().perm, 0o700, "{d}");
        assert_eq!(
            fx.remount().stat(d).unwrap().perm,
            0o700,
            "{d} after a remount"
        );
        fx.setxattr(d, "user.x-amz-meta-k", "v", 0).unwrap();
        assert_eq!(fx.remount().getxattr(d, "user.x-amz-meta-k").unwrap(), "v");
        fx.put(&format!("{d}/f"), b"x").unwrap();
        fx.unlink(&format!("{d}/f")).unwrap();
        fx.rmdir(d).unwrap();
    }
    assert!(fx.keys().is_empty(), "{:?}", fx.keys());
}

/// Old s3fs kept a directory's mode, owner, times and xattrs on its `dir` object (zero bytes,
/// `application/x-directory`), and s3fs 1.90 still shows them. A lookup of such a directory
/// with entries showed the defaults instead (0755, the mounting user), and a `setfattr` or
/// `chmod` wrote a `dir/` marker with none of them, deleting the one that held them.
#[test]
fn an_old_s3fs_directory_shows_its_attributes_and_a_change_keeps_them() {
    let fx = fx();
    let old = PutOptions {
        content_headers: vec![("content-type".into(), "application/x-directory".into())],
        metadata: meta(&[
            ("mode", "16832"),
            ("uid", "1234"),
            ("gid", "1235"),
            ("mtime", "1000000000"),
            ("k", "v"),
        ]),
        ..PutOptions::default()
    };
    fx.fs.bucket().put("old", RequestBody::Empty, &old).unwrap();
    fx.put_behind("old/f", b"x");
    let a = fx.stat("old").unwrap();
    assert_eq!(a.kind, NodeKind::Dir);
    assert_eq!((a.perm, a.uid, a.gid), (0o700, 1234, 1235));
    assert_eq!(a.mtime, at(1_000_000_000));
    assert_eq!(fx.getxattr("old", "user.x-amz-meta-k").unwrap(), "v");
    fx.setxattr("old", "user.x-amz-meta-l", "w", 0).unwrap();
    assert!(fx.object("old").is_none(), "replaced by our marker");
    let marker = fx.object("old/").unwrap().metadata;
    assert_eq!(marker.get("k"), Some("v"));
    assert_eq!(marker.get("l"), Some("w"));
    let fresh = fx.remount();
    let a = fresh.stat("old").unwrap();
    assert_eq!((a.perm, a.uid, a.gid), (0o700, 1234, 1235));
    assert_eq!(a.mtime, at(1_000_000_000));
}

#[test]
fn keys_over_1024_bytes_are_enametoolong_once_the_server_refused_one() {
    // The store refuses keys over 1024 bytes, as S3 does (a HEAD's bare 400): the first
    // lookup of such a key asks with a HEAD and learns it; from then on it is known.
    let fx = fx();
    let name = "n".repeat(250);
    let mut dir = String::new();
    for _ in 0..4 {
        dir = format!("{dir}{name}/");
        fx.mkdir(dir.trim_end_matches('/')).unwrap();
    }
    // 4 × 251 = 1004 bytes of directories: a file name of 20 fits, 21 does not.
    fx.put(&format!("{dir}{}", "f".repeat(20)), b"ok").unwrap();
    assert!(!fx.fs.bucket.capabilities().limits_keys(), "not known yet");
    assert_eq!(
        errno(fx.put(&format!("{dir}{}", "f".repeat(21)), b"no")),
        libc::ENAMETOOLONG
    );
    assert!(fx.fs.bucket.capabilities().limits_keys());
    let parent = fx.ino(dir.trim_end_matches('/')).unwrap();
    let requests = fx.store.total_requests();
    let name = "f".repeat(22);
    assert_eq!(errno(fx.fs.lookup(parent, os(&name))), libc::ENAMETOOLONG);
    assert_eq!(fx.store.total_requests(), requests, "known: nothing asked");
    assert_eq!(
        errno(fx.mkdir(&format!("{dir}{}", "d".repeat(20)))),
        libc::ENAMETOOLONG,
        "a directory's marker is a byte longer"
    );
    assert!(!fx.keys().iter().any(|k| k.len() > 1024));
}

#[test]
fn a_server_that_keeps_long_keys_takes_deep_paths_as_a_disk_does() {
    // moto and Garage keep keys over S3's 1024 bytes: nothing is refused before the server.
    let store = MemoryStore::with_bucket(BUCKET);
    store.keep_long_keys();
    let fx = setup_over(store).mount();
    let name = "n".repeat(250);
    let mut dir = String::new();
    for _ in 0..8 {
        dir = format!("{dir}{name}/");
        fx.mkdir(dir.trim_end_matches('/')).unwrap();
    }
    let file = format!("{dir}{}", "f".repeat(200));
    fx.put(&file, b"deep").unwrap();
    assert_eq!(fx.cat(&file).unwrap(), b"deep");
    let moved = format!("{dir}{}", "g".repeat(200));
    fx.rename(&file, &moved).unwrap();
    assert_eq!(fx.remount().cat(&moved).unwrap(), b"deep");
    assert!(
        fx.keys().iter().any(|k| k.len() > 2200),
        "{:?}",
        fx.keys().len()
    );
    assert!(!fx.fs.bucket.capabilities().limits_keys());
}

/// `touch -m -d` of `path`: an explicit mtime.
fn set_mtime(fx: &Fx, path: &str, mtime: SystemTime) {
    let change = AttrChange {
        mtime: Some(mtime),
        ..AttrChange::default()
    };
    fx.setattr(path, change).unwrap();
}

/// A close changes no time, as on a disk: a file written and then held open showed, once
/// closed, the time its upload was made as its mtime and ctime (and wrote them into
/// `x-amz-meta-mtime`/`-ctime`), not its last write's: `chmod` after such a `close` moved the
/// mtime by the 0.3 s the file stayed open (found next to pjdfstest on Garage: `: > f; chmod`
/// moved it by a millisecond).
#[test]
fn an_upload_with_a_ttl_of_zero_records_the_last_writes_time() {
    // `--metadata-ttl 0`: the upload reads the object's metadata afresh (a HEAD after the
    // write), whose old mtime must not replace the write's.
    let fx = setup().ttl(Duration::ZERO).mount();
    fx.put("f", b"old").unwrap();
    set_mtime(&fx, "f", at(1_000_000_000));
    let fh = fx.open("f", libc::O_WRONLY).unwrap();
    fx.write(fh, 3, b" new").unwrap();
    let written = fx.stat("f").unwrap();
    fx.close(fh).unwrap();
    assert!(written.mtime > at(1_000_000_000), "the write moved it");
    assert_eq!(
        fx.stat("f").unwrap().mtime,
        written.mtime,
        "kept by the close"
    );
    let meta = fx.object("f").unwrap().metadata;
    assert_eq!(
        meta.get("mtime").and_then(crate::fs::attr::parse_mtime),
        Some(written.mtime),
        "x-amz-meta-mtime"
    );
}

#[test]
fn a_close_keeps_the_times_of_the_last_write() {
    let fx = setup().ttl(Duration::from_secs(600)).mount();
    let fh = fx.open("f", libc::O_CREAT | libc::O_WRONLY).unwrap();
    fx.write(fh, 0, b"old").unwrap();
    set_mtime(&fx, "f", at(1_000_000_000));
    fx.close(fh).unwrap();
    // An object that carries its times, written again.
    let fh = fx.open("f", libc::O_WRONLY).unwrap();
    fx.write(fh, 0, b"new").unwrap();
    let written = fx.stat("f").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    fx.close(fh).unwrap();
    let closed = fx.stat("f").unwrap();
    assert_eq!(
        (closed.mtime, closed.ctime),
        (written.mtime, written.ctime),
        "times moved by the close"
    );
    let meta = fx.object("f").unwrap().metadata;
    let stored = |name| meta.get(name).and_then(crate::fs::attr::parse_mtime);
    assert_eq!(stored("mtime"), Some(written.mtime), "x-amz-meta-mtime");
    assert_eq!(stored("ctime"), Some(written.ctime), "x-amz-meta-ctime");
    let chmod = AttrChange {
        mode: Some(0o600),
        ..AttrChange::default()
    };
    assert_eq!(
        fx.setattr("f", chmod).unwrap().mtime,
        written.mtime,
        "after a chmod"
    );
    assert_eq!(fx.remount().stat("f").unwrap().mtime, written.mtime);
}
