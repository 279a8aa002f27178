//! Writes the server applied whose reply was lost: each call ends as if the reply had arrived,
//! and nothing is written twice.

use super::*;

#[test]
fn close_of_a_conditional_put() {
    let fx = fx();
    fx.store.lose_next_replies(Operation::PutObject, 1);
    fx.create_excl("f", b"once").unwrap();
    assert_eq!(fx.data("f"), b"once");
    assert_eq!(
        fx.count(Operation::PutObject),
        1,
        "looked at, not sent again"
    );
    assert_eq!(fx.unsaved(), vec![]);
    assert_eq!(fx.cat("f").unwrap(), b"once");
}

#[test]
fn close_of_a_streamed_upload_whose_completion_reply_is_lost() {
    let fx = setup().transfer(small_parts()).mount();
    let data = bytes(11 * MIB, 5);
    fx.store
        .lose_next_replies(Operation::CompleteMultipartUpload, 1);
    fx.create_excl("f", &data).unwrap();
    assert!(fx.data("f") == data);
    assert_eq!(fx.count(Operation::CompleteMultipartUpload), 1);
    assert_eq!(
        fx.count(Operation::PutObject),
        0,
        "not uploaded a second time"
    );
    assert_eq!(fx.store.uploads(BUCKET), vec![]);
    assert_eq!(fx.unsaved(), vec![]);
    assert!(fx.cat("f").unwrap() == data, "reads pin the completed ETag");
}

#[test]
fn close_of_a_whole_file_multipart_upload_whose_completion_reply_is_lost() {
    let fx = setup().transfer(small_parts()).mount();
    fx.put_behind("f", &bytes(11 * MIB, 1));
    fx.store
        .lose_next_replies(Operation::CompleteMultipartUpload, 1);
    let fh = fx.open("f", libc::O_WRONLY).unwrap();
    fx.write(fh, 0, b"head").unwrap();
    fx.close(fh).unwrap();
    let mut want = bytes(11 * MIB, 1);
    want[..4].copy_from_slice(b"head");
    assert!(fx.data("f") == want);
    assert_eq!(fx.count(Operation::CompleteMultipartUpload), 1);
    assert_eq!(fx.store.uploads(BUCKET), vec![]);
}

#[test]
fn setxattr_whose_copy_reply_is_lost() {
    let fx = fx();
    fx.put("f", b"x").unwrap();
    fx.store.lose_next_replies(Operation::CopyObject, 1);
    fx.setxattr("f", "user.x-amz-meta-k", "v", 0).unwrap();
    assert_eq!(fx.object("f").unwrap().metadata.get("k"), Some("v"));
    assert_eq!(fx.getxattr("f", "user.x-amz-meta-k").unwrap(), "v");
    assert_eq!(fx.cat("f").unwrap(), b"x", "reads pin the copy's ETag");
}

#[test]
fn chmod_whose_copy_reply_is_lost() {
    let fx = fx();
    fx.put("f", b"x").unwrap();
    fx.store.lose_next_replies(Operation::CopyObject, 1);
    let change = AttrChange {
        mode: Some(0o600),
        ..AttrChange::default()
    };
    assert_eq!(fx.setattr("f", change).unwrap().perm, 0o600);
    assert_eq!(fx.remount().stat("f").unwrap().perm, 0o600);
}

#[test]
fn rename_of_a_file_whose_copy_reply_is_lost() {
    let fx = fx();
    fx.put("a", b"moved").unwrap();
    fx.store.lose_next_replies(Operation::CopyObject, 1);
    fx.rename("a", "b").unwrap();
    assert_eq!(fx.keys(), ["b"]);
    assert_eq!(fx.cat("b").unwrap(), b"moved");
}

#[test]
fn rename_of_a_file_whose_delete_reply_is_lost() {
    let fx = fx();
    fx.put("a", b"moved").unwrap();
    fx.store.lose_next_replies(Operation::DeleteObject, 1);
    fx.rename("a", "b").unwrap();
    assert_eq!(fx.keys(), ["b"]);
    assert_eq!(errno(fx.stat("a")), libc::ENOENT);
}

#[test]
fn rename_of_a_directory_whose_delete_objects_reply_is_lost() {
    let fx = fx();
    for k in ["a", "b"] {
        fx.put_behind(&format!("src/{k}"), k.as_bytes());
    }
    fx.store.lose_next_replies(Operation::DeleteObjects, 1);
    fx.rename("src", "dst").unwrap();
    assert_eq!(fx.keys(), ["dst/a", "dst/b"]);
    assert_eq!(fx.ls("dst").unwrap(), ["a", "b"]);
}

#[test]
fn unlink_whose_delete_reply_is_lost() {
    let fx = fx();
    fx.put("f", b"x").unwrap();
    fx.store.lose_next_replies(Operation::DeleteObject, 1);
    fx.unlink("f").unwrap();
    assert_eq!(fx.keys(), Vec::<String>::new());
    assert_eq!(errno(fx.stat("f")), libc::ENOENT);
}

#[test]
fn rmdir_whose_delete_reply_is_lost() {
    let fx = fx();
    fx.mkdir("d").unwrap();
    fx.store.lose_next_replies(Operation::DeleteObject, 1);
    fx.rmdir("d").unwrap();
    assert_eq!(fx.keys(), Vec::<String>::new());
}

#[test]
fn a_lost_reply_never_lets_a_write_take_another_clients_object() {
    // The PUT's reply is lost and another client writes the name before the look: the look
    // finds their object, so the create failed (EEXIST) and theirs stays.
    let fx = fx();
    let fh = fx
        .open("f", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .unwrap();
    fx.write(fh, 0, b"mine").unwrap();
    fx.store.lose_next_replies(Operation::PutObject, 1);
    fx.store.before_next(Operation::HeadObject, |s| {
        s.put_behind(BUCKET, "f", b"theirs".to_vec());
    });
    let closed = fx.close(fh);
    assert_eq!(fx.data("f"), b"theirs");
    assert!(closed.is_err(), "{closed:?}");
    assert_eq!(fx.unsaved(), [(b"mine".to_vec(), Some("f".to_string()))]);
}
