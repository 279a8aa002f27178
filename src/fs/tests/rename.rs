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
