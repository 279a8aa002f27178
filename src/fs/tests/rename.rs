//! Rename of files and directories: copies and deletes counted, flags, sources changed behind
//! the mount, failures.

use super::*;
use crate::s3::memory::Failure;

fn rename_raw(fx: &Fx, from: &str, to: &str, flags: u32) -> FsResult<()> {
    fx.fs
        .rename(ROOT_INO, OsStr::new(from), ROOT_INO, OsStr::new(to), flags)
}

#[test]
fn a_file_is_copied_with_its_metadata_then_deleted() {
    let fx = fx();
    fx.store.put_behind_with(
        BUCKET,
        "a.txt",
        b"content".to_vec(),
        &meta(&[("color", "red")]),
        &[("content-type".into(), "text/x-special".into())],
    );
    fx.mkdir("d").unwrap();
    fx.store.reset_counts();
    fx.rename("a.txt", "d/b.txt").unwrap();
    assert_eq!(fx.count(Operation::CopyObject), 1);
    assert_eq!(fx.count(Operation::DeleteObject), 1);
    assert_eq!(fx.keys(), ["d/", "d/b.txt"]);
    let o = fx.object("d/b.txt").unwrap();
    assert_eq!(o.data, b"content");
    assert_eq!(o.metadata.get("color"), Some("red"));
    assert!(o
        .content_headers
        .contains(&("content-type".into(), "text/x-special".into())));
    assert_eq!(errno(fx.stat("a.txt")), libc::ENOENT);
    assert_eq!(fx.cat("d/b.txt").unwrap(), b"content");
}

#[test]
fn a_file_replaces_its_target_and_the_flags_are_honoured() {
    let fx = fx();
    fx.put("a", b"A").unwrap();
    fx.put("b", b"B").unwrap();
    assert_eq!(
        errno(rename_raw(&fx, "a", "b", libc::RENAME_NOREPLACE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(rename_raw(&fx, "a", "b", libc::RENAME_EXCHANGE)),
        libc::EINVAL
    );
    // A whiteout (xfstests generic/078) was done as a plain rename, leaving no whiteout.
    for to in ["b", "c"] {
        assert_eq!(
            errno(rename_raw(&fx, "a", to, libc::RENAME_WHITEOUT)),
            libc::EINVAL
        );
    }
    assert_eq!(fx.keys(), ["a", "b"]);
    fx.rename("a", "b").unwrap();
    assert_eq!(fx.keys(), ["b"]);
    assert_eq!(fx.cat("b").unwrap(), b"A");
    // Onto itself: nothing happens.
    fx.store.reset_counts();
    rename_raw(&fx, "b", "b", 0).unwrap();
    assert_eq!(fx.count(Operation::CopyObject), 0);
    assert_eq!(fx.count(Operation::DeleteObject), 0);
    assert_eq!(fx.keys(), ["b"]);
    fx.mkdir("d").unwrap();
    assert_eq!(errno(rename_raw(&fx, "b", "d", 0)), libc::EISDIR);
    assert_eq!(errno(rename_raw(&fx, "d", "b", 0)), libc::ENOTDIR);
    assert_eq!(errno(rename_raw(&fx, "none", "x", 0)), libc::ENOENT);
}

#[test]
fn a_file_with_unsaved_changes_is_uploaded_first_and_moves_with_them() {
    let fx = fx();
    let fh = fx.open("f", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, b"written").unwrap();
    fx.rename("f", "g").unwrap();
    assert_eq!(fx.keys(), ["g"]);
    assert_eq!(fx.data("g"), b"written");
    // Writes after the rename go to the new name.
    fx.write(fh, 7, b" later").unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.keys(), ["g"]);
    assert_eq!(fx.data("g"), b"written later");
}

#[test]
fn a_source_replaced_behind_the_mount_is_moved_as_it_is_now() {
    let fx = setup().ttl(Duration::from_secs(3600)).mount();
    fx.put("f", b"mine").unwrap();
    fx.store.put_behind_with(
        BUCKET,
        "f",
        b"theirs, longer".to_vec(),
        &meta(&[("who", "them")]),
        &[],
    );
    fx.store.reset_counts();
    fx.rename("f", "g").unwrap();
    assert_eq!(
        fx.count(Operation::CopyObject),
        2,
        "refused once (412), then the new one"
    );
    assert_eq!(fx.keys(), ["g"]);
    assert_eq!(fx.data("g"), b"theirs, longer");
    assert_eq!(
        fx.stat("g").unwrap().size,
        14,
        "the file shows what it holds now"
    );
    assert_eq!(fx.cat("g").unwrap(), b"theirs, longer");
}

#[test]
fn a_directory_is_copied_key_by_key_then_deleted_with_one_delete_objects() {
    let fx = fx();
    fx.mkdir("src").unwrap();
    fx.setxattr("src", "user.x-amz-meta-tag", "kept", 0)
        .unwrap();
    for k in ["a", "b", "sub/c", "sub/deeper/d"] {
        fx.put_behind(&format!("src/{k}"), k.as_bytes());
    }
    fx.store.reset_counts();
    fx.rename("src", "dst").unwrap();
    assert_eq!(fx.count(Operation::CopyObject), 5, "marker and 4 keys");
    assert_eq!(fx.count(Operation::DeleteObjects), 1);
    assert_eq!(fx.count(Operation::DeleteObject), 0);
    assert_eq!(
        fx.keys(),
        ["dst/", "dst/a", "dst/b", "dst/sub/c", "dst/sub/deeper/d"]
    );
    assert_eq!(fx.getxattr("dst", "user.x-amz-meta-tag").unwrap(), "kept");
    assert_eq!(fx.cat("dst/sub/deeper/d").unwrap(), b"sub/deeper/d");
    assert_eq!(errno(fx.stat("src")), libc::ENOENT);
    assert_eq!(fx.ls("dst").unwrap(), ["a", "b", "sub"]);
}

#[test]
fn a_directory_replaces_only_an_empty_one_and_never_moves_into_itself() {
    let fx = fx();
    fx.mkdir("a").unwrap();
    fx.put("a/f", b"1").unwrap();
    fx.mkdir("b").unwrap();
    fx.put("b/g", b"2").unwrap();
    assert_eq!(errno(rename_raw(&fx, "a", "b", 0)), libc::ENOTEMPTY);
    fx.unlink("b/g").unwrap();
    fx.rename("a", "b").unwrap();
    assert_eq!(fx.keys(), ["b/", "b/f"]);
    fx.mkdir("b/in").unwrap();
    let b = fx.ino("b").unwrap();
    assert_eq!(
        errno(
            fx.fs
                .rename(ROOT_INO, OsStr::new("b"), b, OsStr::new("x"), 0)
        ),
        libc::EINVAL
    );
}

#[test]
fn an_empty_implicit_directory_gets_a_marker_where_it_moves() {
    let fx = fx();
    fx.put_behind("d/f", b"x");
    fx.unlink("d/f").unwrap();
    fx.rename("d", "e").unwrap();
    assert_eq!(fx.keys(), ["e/"]);
    assert_eq!(fx.stat("e").unwrap().kind, NodeKind::Dir);
}

#[test]
fn a_failed_copy_stops_a_directory_rename_with_the_sources_intact() {
    let fx = fx();
    for k in ["a", "b", "c"] {
        fx.put_behind(&format!("src/{k}"), k.as_bytes());
    }
    // Every attempt of every copy fails (a failed copy is looked into and sent again, and the
    // copies run in parallel, sharing the injected failures).
    let attempts = 3 * quick_retries().max_attempts;
    fx.store.fail_next(
        Operation::CopyObject,
        attempts,
        Failure::Status(500, "InternalError"),
    );
    assert_eq!(errno(fx.rename("src", "dst")), libc::EIO);
    let keys = fx.keys();
    for k in ["src/a", "src/b", "src/c"] {
        assert!(keys.contains(&k.to_string()), "{k} kept: {keys:?}");
    }
    assert_eq!(fx.count(Operation::DeleteObjects), 0);
    assert_eq!(fx.ls("src").unwrap(), ["a", "b", "c"]);
}

#[test]
fn a_file_moved_out_of_a_directory_without_marker_leaves_the_directory() {
    let fx = fx();
    fx.put_behind("d/only", b"x");
    fx.rename("d/only", "top").unwrap();
    assert_eq!(fx.keys(), ["d/", "top"]);
    assert_eq!(fx.ls("d").unwrap(), Vec::<String>::new());
}

#[test]
fn an_open_reader_follows_its_file_to_the_new_name() {
    read_across(|fx| fx.rename("f", "g").unwrap());
}

/// The storage class and encryption an object was stored with, as the store keeps them.
fn how_stored(fx: &Fx, key: &str) -> Vec<(String, String)> {
    let o = fx.object(key).unwrap();
    let mut h: Vec<_> = o
        .content_headers
        .into_iter()
        .filter(|(n, _)| n.starts_with("x-amz-"))
        .collect();
    h.sort();
    h
}

#[test]
fn an_object_keeps_its_storage_class_and_encryption_through_changes_and_moves() {
    // S3 puts a copy or a PUT in STANDARD under the bucket's default encryption unless the
    // request says otherwise (the store does the same): a chmod, a rewrite or a mv must not
    // move an object out of STANDARD_IA or off its own KMS key.
    let fx = fx();
    let stored = vec![
        (
            "x-amz-server-side-encryption".to_string(),
            "aws:kms".to_string(),
        ),
        (
            "x-amz-server-side-encryption-aws-kms-key-id".to_string(),
            "arn:aws:kms:us-east-1:1:key/k".to_string(),
        ),
        ("x-amz-storage-class".to_string(), "STANDARD_IA".to_string()),
    ];
    let mut headers = vec![("content-type".to_string(), "text/plain".to_string())];
    headers.extend(stored.iter().cloned());
    fx.store.put_behind_with(
        BUCKET,
        "cold.txt",
        b"old".to_vec(),
        &Metadata::new(),
        &headers,
    );
    fx.setattr(
        "cold.txt",
        AttrChange {
            mode: Some(0o600),
            ..AttrChange::default()
        },
    )
    .unwrap();
    assert_eq!(how_stored(&fx, "cold.txt"), stored, "after chmod");
    fx.put("cold.txt", b"rewritten").unwrap();
    assert_eq!(how_stored(&fx, "cold.txt"), stored, "after a rewrite");
    fx.mkdir("d").unwrap();
    fx.rename("cold.txt", "d/moved.txt").unwrap();
    assert_eq!(how_stored(&fx, "d/moved.txt"), stored, "after mv");
    // A directory's keys are copied as listed (COPY directive, no HEAD each): the listing
    // names their class, not their encryption, which then follows the bucket's default.
    fx.rename("d", "e").unwrap();
    assert_eq!(
        how_stored(&fx, "e/moved.txt"),
        [("x-amz-storage-class".to_string(), "STANDARD_IA".to_string())],
        "after mv of its directory"
    );
    assert_eq!(fx.cat("e/moved.txt").unwrap(), b"rewritten");
}

#[test]
fn new_files_take_the_mounts_storage_class_and_nothing_else_does() {
    let fx = setup()
        .opts(|o| o.storage_class = Some("GLACIER_IR".into()))
        .mount();
    let class = vec![("x-amz-storage-class".to_string(), "GLACIER_IR".to_string())];
    fx.put("new.bin", b"data").unwrap();
    assert_eq!(how_stored(&fx, "new.bin"), class);
    // An object that exists keeps its own class (here: none, STANDARD) when rewritten.
    fx.store.put_behind(BUCKET, "old.bin", b"x");
    fx.put("old.bin", b"rewritten").unwrap();
    assert_eq!(how_stored(&fx, "old.bin"), []);
    // Directory markers and symlinks are tiny: the default class, not one with a minimum
    // billed size.
    fx.mkdir("dir").unwrap();
    assert_eq!(how_stored(&fx, "dir/"), []);
    let mount = setup().mount();
    mount.put("plain", b"p").unwrap();
    assert_eq!(how_stored(&mount, "plain"), []);
}

#[test]
fn a_file_moved_before_its_metadata_was_read_keeps_its_listed_storage_class() {
    // Listed without a HEAD (more entries than --listing-head-limit): the rename's copy keeps
    // the metadata with the COPY directive, and names the class the listing gave.
    let fx = setup()
        .ttl(Duration::from_secs(60))
        .opts(|o| o.listing_head_limit = 0)
        .mount();
    let ia = ("x-amz-storage-class".to_string(), "STANDARD_IA".to_string());
    fx.store.put_behind_with(
        BUCKET,
        "d/cold.txt",
        b"cold".to_vec(),
        &meta(&[("color", "blue")]),
        std::slice::from_ref(&ia),
    );
    assert_eq!(fx.ls("d").unwrap(), ["cold.txt"]);
    fx.store.reset_counts();
    fx.rename("d/cold.txt", "d/moved.txt").unwrap();
    assert_eq!(
        fx.count(Operation::HeadObject),
        0,
        "no HEAD: the listing said enough"
    );
    assert_eq!(how_stored(&fx, "d/moved.txt"), [ia]);
    assert_eq!(
        fx.object("d/moved.txt").unwrap().metadata.get("color"),
        Some("blue")
    );
}

#[test]
fn a_directory_holding_a_key_xml_cannot_carry_moves_whole() {
    // A control character is a valid file name, but DeleteObjects' XML body cannot carry it:
    // the one source is deleted on its own, the others in the batch as usual.
    let fx = fx();
    fx.put_behind("d/a", b"A");
    fx.put_behind("d/b\u{1}c", b"B");
    fx.put_behind("d/e", b"E");
    fx.rename("d", "n").unwrap();
    assert_eq!(fx.keys(), ["n/a", "n/b\u{1}c", "n/e"]);
    assert_eq!(fx.count(Operation::DeleteObjects), 1);
    assert_eq!(fx.count(Operation::DeleteObject), 1);
}

/// Names changed inside a directory (or moved into it) while it is being renamed: a disk
/// orders them before or after the rename, and so must the mount. Run between the rename's
/// listing and its copies, they wrote keys under the old prefix that the rename neither copied
/// nor deleted (a file renamed inside stayed behind under the old name, where the mount no
/// longer showed it; an unlinked file came back under the new name; a new directory was left
/// behind and brought the old directory back; a `setfattr` was deleted with the old name).
#[test]
fn names_changed_in_a_directory_while_it_is_renamed_move_with_it() {
    let fx = Arc::new(fx());
    fx.mkdir("d").unwrap();
    fx.mkdir("e").unwrap();
    for k in ["d/a", "d/b", "d/c", "e/x"] {
        fx.put_behind(k, k.as_bytes());
    }
    assert_eq!(fx.ls("d").unwrap(), ["a", "b", "c"]);
    assert_eq!(fx.ls("e").unwrap(), ["x"]);
    // A disk would let these finish before or after the rename; give them long enough to
    // finish during it if nothing holds them back (the test passes either way once they wait).
    const GRACE: Duration = Duration::from_secs(1);
    let racers: Arc<parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
    let (fx2, racers2) = (Arc::clone(&fx), Arc::clone(&racers));
    fx.store.before_next(Operation::CopyObject, move |_| {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        type Racer = fn(&Fx) -> FsResult<()>;
        let calls: [Racer; 5] = [
            |fx| fx.rename("d/a", "d/a2"),
            |fx| fx.unlink("d/b"),
            |fx| fx.mkdir("d/sub"),
            |fx| fx.rename("e/x", "d/x"),
            |fx| fx.setxattr("d/c", "user.x-amz-meta-color", "blue", 0),
        ];
        for call in calls {
            let (fx, done) = (Arc::clone(&fx2), done_tx.clone());
            racers2.lock().push(std::thread::spawn(move || {
                call(&fx).unwrap();
                let _ = done.send(());
            }));
        }
        let deadline = std::time::Instant::now() + GRACE;
        for _ in 0..calls.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                break;
            }
        }
    });
    fx.rename("d", "n").unwrap();
    for r in std::mem::take(&mut *racers.lock()) {
        r.join().unwrap();
    }
    assert_eq!(
        fx.keys(),
        ["e/", "n/", "n/a2", "n/c", "n/sub/", "n/x"],
        "nothing left under the old name, nothing deleted back"
    );
    assert_eq!(errno(fx.stat("d")), libc::ENOENT);
    assert_eq!(fx.ls("n").unwrap(), ["a2", "c", "sub", "x"]);
    assert_eq!(fx.cat("n/a2").unwrap(), b"d/a");
    assert_eq!(fx.cat("n/x").unwrap(), b"e/x");
    let again = fx.remount();
    assert_eq!(errno(again.stat("d")), libc::ENOENT);
    assert_eq!(again.ls("n").unwrap(), ["a2", "c", "sub", "x"]);
    assert_eq!(
        again.getxattr("n/c", "user.x-amz-meta-color").unwrap(),
        "blue",
        "a metadata change is not lost with the old name"
    );
}
