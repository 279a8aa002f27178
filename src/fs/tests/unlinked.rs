//! Files unlinked or replaced while open (issue 12): they keep their bytes for their
//! descriptors until the last close, as on a disk — fetched at once when small, the object kept
//! hidden when large — and a removal that fails on the server gives them back. The same rows
//! next to a local disk, through a real mount: tests/posix.rs.

use super::*;
use crate::fs::unlinked::FETCH_AT_UNLINK_MAX;

#[test]
fn a_small_unlinked_open_file_is_fetched_and_its_object_deleted_at_once() {
    let fx = fx();
    let data = bytes(300_000, 1);
    fx.put_behind("f", &data);
    let ino = fx.ino("f").unwrap();
    let fh = fx.open("f", libc::O_RDWR).unwrap();
    assert_eq!(fx.read(fh, 0, 10).unwrap(), &data[..10]);
    fx.unlink("f").unwrap();
    assert!(fx.object("f").is_none(), "deleted at the unlink");
    assert_eq!(errno(fx.stat("f")), libc::ENOENT);
    let a = fx.fs.getattr(ino).unwrap();
    assert_eq!((a.nlink, a.size), (0, data.len() as u64), "fstat");
    let gets = fx.count(Operation::GetObject);
    assert_eq!(fx.read_to_end(fh).unwrap(), data);
    assert_eq!(
        fx.count(Operation::GetObject),
        gets,
        "read from the local copy"
    );
    fx.write(fh, 0, b"CHANGED").unwrap();
    assert_eq!(fx.read(fh, 0, 7).unwrap(), b"CHANGED");
    fx.close(fh).unwrap();
    assert_eq!(fx.count(Operation::PutObject), 0, "never uploaded");
    assert!(fx.keys().is_empty());
}

#[test]
fn a_large_unlinked_open_file_keeps_its_object_hidden_until_the_last_close() {
    let fx = fx();
    let data = bytes(FETCH_AT_UNLINK_MAX as usize + 1, 2);
    fx.put_behind("big", &data);
    let ino = fx.ino("big").unwrap();
    let fh = fx.open("big", libc::O_RDONLY).unwrap();
    let gets = fx.count(Operation::GetObject);
    fx.unlink("big").unwrap();
    assert_eq!(fx.count(Operation::GetObject), gets, "nothing fetched");
    assert!(fx.object("big").is_some(), "kept for the descriptor");
    // Gone by name although the server still has it (the TTL is 0: every lookup would ask).
    assert_eq!(errno(fx.stat("big")), libc::ENOENT);
    assert!(fx.ls("").unwrap().is_empty());
    assert_eq!(fx.fs.getattr(ino).unwrap().nlink, 0);
    assert_eq!(fx.read_to_end(fh).unwrap(), data);
    fx.close(fh).unwrap();
    assert!(fx.object("big").is_none(), "deleted at the last close");
}

#[test]
fn a_new_file_over_a_kept_object_is_not_deleted_by_the_old_ones_last_close() {
    let fx = fx();
    let data = bytes(FETCH_AT_UNLINK_MAX as usize + 1, 3);
    fx.put_behind("log", &data);
    let fh = fx.open("log", libc::O_RDONLY).unwrap();
    fx.unlink("log").unwrap();
    fx.put("log", b"rotated").unwrap();
    assert_eq!(
        fx.read_to_end(fh).unwrap(),
        data,
        "fetched before the name was reused"
    );
    fx.close(fh).unwrap();
    assert_eq!(fx.data("log"), b"rotated");
}

#[test]
fn a_file_renamed_over_while_open_keeps_its_bytes() {
    let fx = fx();
    let data = bytes(FETCH_AT_UNLINK_MAX as usize + 1, 4);
    fx.put_behind("target", &data);
    let ino = fx.ino("target").unwrap();
    let fh = fx.open("target", libc::O_RDONLY).unwrap();
    fx.put("new", b"replacement").unwrap();
    fx.rename("new", "target").unwrap();
    assert_eq!(fx.fs.getattr(ino).unwrap().nlink, 0);
    assert_eq!(fx.read_to_end(fh).unwrap(), data);
    fx.close(fh).unwrap();
    assert_eq!(fx.data("target"), b"replacement");
    assert_eq!(fx.keys(), ["target"]);
}

#[test]
fn rmdir_of_a_directory_holding_only_a_kept_object_succeeds() {
    let fx = fx();
    fx.mkdir("d").unwrap();
    let data = bytes(FETCH_AT_UNLINK_MAX as usize + 1, 5);
    fx.put_behind("d/big", &data);
    let fh = fx.open("d/big", libc::O_RDONLY).unwrap();
    fx.unlink("d/big").unwrap();
    fx.rmdir("d").unwrap();
    assert!(fx.keys().is_empty(), "{:?}", fx.keys());
    assert_eq!(fx.read_to_end(fh).unwrap(), data);
    fx.close(fh).unwrap();
}

/// On a disk `fgetxattr`, `flistxattr` and `fsetxattr` work on a file unlinked while open until
/// its last close; here they answered ENOENT (the inode has no key any more). Its extended
/// attributes now live in memory, as its mode does, and nothing is sent.
#[test]
fn an_unlinked_open_file_keeps_its_xattrs_in_memory() {
    let fx = fx();
    fx.store
        .put_behind_with(BUCKET, "f", b"data".to_vec(), &meta(&[("k", "v")]), &[]);
    let ino = fx.ino("f").unwrap();
    let fh = fx.open("f", libc::O_RDWR).unwrap();
    fx.unlink("f").unwrap();
    let requests = fx.store.total_requests();
    assert_eq!(fx.fs.getxattr(ino, os("user.x-amz-meta-k")).unwrap(), b"v");
    fx.fs
        .setxattr(ino, os("user.x-amz-meta-l"), b"w", 0)
        .unwrap();
    fx.fs.setxattr(ino, os("user.other"), b"o", 0).unwrap();
    fx.fs.removexattr(ino, os("user.x-amz-meta-k")).unwrap();
    assert_eq!(
        errno(fx.fs.getxattr(ino, os("user.x-amz-meta-k"))),
        libc::ENODATA
    );
    assert_eq!(
        fx.fs.listxattr(ino).unwrap(),
        b"user.x-amz-meta-l\0user.other\0"
    );
    assert_eq!(fx.store.total_requests(), requests, "nothing sent");
    fx.close(fh).unwrap();
    assert!(fx.keys().is_empty(), "nothing uploaded");
    // A new file, never uploaded: the same.
    let fh = fx.open("n", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, b"new").unwrap();
    let ino = fx.ino("n").unwrap();
    fx.unlink("n").unwrap();
    assert_eq!(fx.fs.listxattr(ino).unwrap(), b"");
    fx.fs.setxattr(ino, os("user.other"), b"o", 0).unwrap();
    assert_eq!(fx.fs.getxattr(ino, os("user.other")).unwrap(), b"o");
    fx.close(fh).unwrap();
    assert!(fx.keys().is_empty(), "nothing uploaded");
}

/// An unlink or a rename over an open file that fails on the server leaves the name, and so
/// the file: writes through its descriptors, or through a later open, are uploaded at close as
/// before (they were dropped: the file stayed marked as unlinked, so `close` said success and
/// uploaded nothing, and the name showed the old content after the last close).
#[test]
fn an_open_file_whose_unlink_or_rename_over_failed_is_still_uploaded() {
    let fx = fx();
    let attempts = quick_retries().max_attempts;
    let internal = crate::s3::memory::Failure::Status(500, "InternalError");
    fx.put_behind("log", b"line1\n");
    let ino = fx.ino("log").unwrap();
    let reader = fx.open("log", libc::O_RDONLY).unwrap();
    assert_eq!(fx.read(reader, 0, 100).unwrap(), b"line1\n");
    fx.store
        .fail_next(Operation::DeleteObject, attempts, internal.clone());
    assert_eq!(errno(fx.unlink("log")), libc::EIO);
    assert_eq!(fx.fs.getattr(ino).unwrap().nlink, 1, "still linked");
    let writer = fx.open("log", libc::O_WRONLY | libc::O_APPEND).unwrap();
    fx.write(writer, 6, b"line2\n").unwrap();
    fx.close(writer).unwrap();
    assert_eq!(fx.data("log"), b"line1\nline2\n", "uploaded at close");
    fx.close(reader).unwrap();
    assert_eq!(fx.cat("log").unwrap(), b"line1\nline2\n");

    // The same for a rename over the open file whose copy fails.
    fx.put("new", b"replacement").unwrap();
    let held = fx.open("log", libc::O_RDWR).unwrap();
    fx.store
        .fail_next(Operation::CopyObject, attempts, internal);
    assert_eq!(errno(fx.rename("new", "log")), libc::EIO);
    fx.write(held, 12, b"line3\n").unwrap();
    fx.close(held).unwrap();
    assert_eq!(fx.data("log"), b"line1\nline2\nline3\n");
    assert_eq!(fx.data("new"), b"replacement");
}
