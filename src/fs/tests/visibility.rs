//! Lookups by name see other clients' new objects at once; only the mount's own removals
//! answer ENOENT without asking. And what creating, copying in and removing a file costs, in
//! requests (the round trips per file of docs/performance.md).

use std::time::Duration;

use super::*;

const LONG: Duration = Duration::from_secs(3600);

/// (HEAD, LIST, PUT, DELETE) requests so far.
fn counts(fx: &Fx) -> (u64, u64, u64, u64) {
    (
        fx.count(Operation::HeadObject),
        fx.count(Operation::ListObjectsV2),
        fx.count(Operation::PutObject),
        fx.count(Operation::DeleteObject),
    )
}

#[test]
fn ls_of_a_directory_of_one_page_shows_another_clients_changes_at_once() {
    // Listed again by each readdir from the start, as s3fs and Mountpoint list: one request.
    let fx = setup().ttl(LONG).mount();
    fx.mkdir("d").unwrap();
    fx.put("d/mine", b"m").unwrap();
    assert_eq!(fx.ls("d").unwrap(), ["mine"], "a fresh listing");
    fx.put_behind("d/theirs", b"new bytes");
    let lists = fx.count(Operation::ListObjectsV2);
    assert_eq!(fx.ls("d").unwrap(), ["mine", "theirs"]);
    assert_eq!(fx.count(Operation::ListObjectsV2), lists + 1);
    assert_eq!(fx.cat("d/theirs").unwrap(), b"new bytes");
}

#[test]
fn a_name_removed_behind_the_mount_leaves_ls_once_what_the_mount_knew_expires() {
    let ttl = Duration::from_millis(300);
    let fx = setup().ttl(ttl).mount();
    fx.mkdir("d").unwrap();
    fx.put("d/mine", b"m").unwrap();
    fx.put("d/other", b"o").unwrap();
    assert_eq!(fx.ls("d").unwrap(), ["mine", "other"]);
    assert!(fx.store.delete_behind(BUCKET, "d/mine"));
    // Still trusted: a name the mount has just made or listed stays (a server may leave a
    // directory's marker out of its listings).
    assert_eq!(fx.ls("d").unwrap(), ["mine", "other"]);
    std::thread::sleep(ttl + Duration::from_millis(50));
    assert_eq!(fx.ls("d").unwrap(), ["other"]);
}

#[test]
fn another_clients_new_object_is_found_by_name_at_once_while_a_long_listing_lags() {
    let fx = setup().ttl(LONG).mount();
    fx.mkdir("d").unwrap();
    for i in 0..1001 {
        fx.put_behind(&format!("d/f{i:04}"), b"x");
    }
    assert_eq!(fx.ls("d").unwrap().len(), 1001, "two pages");
    fx.put_behind("d/theirs", b"new bytes");
    // A listing of more than one page is trusted for the TTL: `ls` does not show it yet...
    let lists = fx.count(Operation::ListObjectsV2);
    assert_eq!(fx.ls("d").unwrap().len(), 1001);
    assert_eq!(
        fx.count(Operation::ListObjectsV2),
        lists,
        "answered from the table"
    );
    // ...but a lookup by name asks, and finds it at once.
    assert_eq!(fx.stat("d/theirs").unwrap().size, 9);
    assert_eq!(fx.cat("d/theirs").unwrap(), b"new bytes");
    // Once found, the listing shows it too.
    assert_eq!(fx.ls("d").unwrap().len(), 1002);
}

#[test]
fn a_name_missed_once_is_found_when_another_client_creates_it() {
    let fx = setup().ttl(LONG).mount();
    assert_eq!(errno(fx.stat("later")), libc::ENOENT);
    fx.put_behind("later", b"x");
    assert_eq!(fx.stat("later").unwrap().size, 1, "a miss is not trusted");
    // A directory another client made (keys below a prefix, no marker), too.
    assert_eq!(errno(fx.stat("dir")), libc::ENOENT);
    fx.put_behind("dir/sub/x", b"x");
    assert_eq!(fx.stat("dir").unwrap().kind, NodeKind::Dir);
    assert_eq!(fx.stat("dir/sub").unwrap().kind, NodeKind::Dir);
}

#[test]
fn the_mounts_own_removals_answer_enoent_without_asking_for_the_ttl() {
    let ttl = Duration::from_millis(300);
    let fx = setup().ttl(ttl).mount();
    fx.put("f", b"1").unwrap();
    fx.mkdir("d").unwrap();
    fx.put("a", b"2").unwrap();
    fx.unlink("f").unwrap();
    fx.rmdir("d").unwrap();
    fx.rename("a", "b").unwrap();
    fx.store.reset_counts();
    for gone in ["f", "d", "a"] {
        assert_eq!(errno(fx.stat(gone)), libc::ENOENT, "{gone}");
    }
    assert_eq!(fx.store.total_requests(), 0, "removed by this mount");
    // Another client makes the name again: hidden until the removal is no longer trusted
    // (the documented exception), then found.
    fx.put_behind("f", b"again");
    assert_eq!(errno(fx.stat("f")), libc::ENOENT);
    std::thread::sleep(ttl + Duration::from_millis(50));
    assert_eq!(fx.stat("f").unwrap().size, 5);
}

#[test]
fn a_create_costs_the_kernels_lookup_and_one_put() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    fx.mkdir("d").unwrap();
    let d = fx.ino("d").unwrap();
    fx.store.reset_counts();
    // The kernel's lookup of the new name asks the server: one LIST of `d/f` (the directory's
    // listing is known and lacks the name, so it is probably new; the listing shows both a
    // file `d/f` and a directory `d/f/`)...
    assert_eq!(errno(fx.fs.lookup(d, os("f"))), libc::ENOENT);
    assert_eq!(counts(&fx), (0, 1, 0, 0));
    // ...the create that follows trusts that answer...
    let (a, fh) = fx
        .fs
        .create(d, os("f"), FILE_MODE, libc::O_WRONLY | libc::O_EXCL, None)
        .unwrap();
    fx.fs.note_lookup(a.ino);
    assert_eq!(counts(&fx), (0, 1, 0, 0), "create sends nothing");
    // ...and close is one PUT.
    fx.write(fh, 0, &bytes(1024, 1)).unwrap();
    fx.close(fh).unwrap();
    assert_eq!(counts(&fx), (0, 1, 1, 0));
    assert_eq!(fx.store.total_requests(), 2);
    assert_eq!(fx.data("d/f"), bytes(1024, 1));

    // The same through the harness's `open(O_CREAT)`: 2 requests per file, 2 round trips.
    fx.store.reset_counts();
    for i in 0..10 {
        fx.put(&format!("d/g{i}"), &bytes(1024, i)).unwrap();
    }
    assert_eq!(counts(&fx), (0, 10, 10, 0));
    assert_eq!(fx.store.total_requests(), 20);

    // A name another client has just made is found all the same: the LIST shows it, and the
    // full lookup (HEAD and LIST) follows — a file, and a directory with no marker.
    fx.put_behind("d/theirs", b"x");
    fx.put_behind("d/sub/theirs", b"y");
    fx.store.reset_counts();
    assert_eq!(fx.stat("d/theirs").unwrap().size, 1);
    assert_eq!(counts(&fx), (1, 2, 0, 0));
    assert_eq!(fx.stat("d/sub").unwrap().kind, NodeKind::Dir);
    assert_eq!(fx.stat("d/sub/theirs").unwrap().size, 1);
    // Siblings that sort before `name/` (`g1.txt`, `g1-old`) are not the name.
    fx.put_behind("d/h.txt", b"z");
    fx.put_behind("d/h-old", b"z");
    assert_eq!(errno(fx.stat("d/h")), libc::ENOENT);
}

#[test]
fn a_create_after_a_miss_older_than_the_ttl_asks_again() {
    let ttl = Duration::from_millis(100);
    let fx = setup().ttl(ttl).mount();
    assert_eq!(errno(fx.fs.lookup(ROOT_INO, os("f"))), libc::ENOENT);
    std::thread::sleep(ttl + Duration::from_millis(20));
    fx.put_behind("f", b"theirs");
    fx.store.reset_counts();
    let err = fx.fs.create(
        ROOT_INO,
        os("f"),
        FILE_MODE,
        libc::O_WRONLY | libc::O_EXCL,
        None,
    );
    assert_eq!(errno(err), libc::EEXIST);
    assert_eq!(fx.count(Operation::HeadObject), 1);
}

#[test]
fn rm_of_listed_files_is_one_delete_each_even_after_the_ttl() {
    let fx = fx(); // nothing trusted
    fx.mkdir("d").unwrap();
    for i in 0..20 {
        fx.put_behind(&format!("d/f{i:02}"), b"x");
    }
    let d = fx.ino("d").unwrap();
    assert_eq!(fx.ls("d").unwrap().len(), 20);
    fx.store.reset_counts();
    // `rm -r`: the kernel holds the entries readdirplus gave it and unlinks them by name.
    for i in 0..20 {
        fx.fs.unlink(d, os(&format!("f{i:02}"))).unwrap();
    }
    assert_eq!(counts(&fx), (0, 0, 0, 20));
    assert_eq!(fx.store.total_requests(), 20);
    fx.store.reset_counts();
    fx.rmdir("d").unwrap();
    assert_eq!(fx.keys(), Vec::<String>::new());
}

#[test]
fn cp_of_a_file_into_the_mount_is_the_lookup_and_one_put() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    fx.mkdir("cp").unwrap();
    fx.store.reset_counts();
    // GNU cp: open(O_WRONLY | O_CREAT | O_EXCL), 128 KiB writes, close.
    let data = bytes(MIB, 3);
    for i in 0..5 {
        let fh = fx
            .open(
                &format!("cp/file{i}"),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            )
            .unwrap();
        for (k, piece) in data.chunks(128 * 1024).enumerate() {
            fx.write(fh, (k * 128 * 1024) as u64, piece).unwrap();
        }
        fx.close(fh).unwrap();
    }
    assert_eq!(counts(&fx), (0, 5, 5, 0));
    assert_eq!(fx.store.total_requests(), 10);
    assert_eq!(fx.data("cp/file4"), data);
}

#[test]
fn a_listing_hands_out_attributes_as_they_are_when_the_kernel_reads_them() {
    // readdirplus sets the kernel's attributes: an entry the page found before this mount
    // rewrote the file must not take the file back to its old size.
    let fx = setup().ttl(LONG).mount();
    fx.mkdir("d").unwrap();
    for i in 0..1001 {
        fx.put_behind(&format!("d/f{i:04}"), b"x");
    }
    let d = fx.ino("d").unwrap();
    let fh = fx.fs.opendir(d).unwrap();
    let first = fx.fs.readdir_entries(d, fh, 0, true).unwrap();
    assert!(
        first.len() < 900,
        "f0900 not handed out yet: {}",
        first.len()
    );
    fx.put("d/f0900", b"twenty bytes, not 1.").unwrap();
    let mut all = first;
    loop {
        let batch = fx.fs.readdir_entries(d, fh, all.len(), false).unwrap();
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    fx.fs.releasedir(fh);
    let e = all.iter().find(|e| e.name == "f0900").unwrap();
    assert_eq!(e.attrs.size, 20);
    assert_eq!(all.len(), 1001);
}

#[test]
fn an_open_while_another_handle_reads_sees_another_clients_new_version() {
    // Close-to-open holds for every open, not only the first: a file kept open (a `tail`, a
    // reader elsewhere) must not pin the next `cat` to the version it replaced.
    let fx = setup().mount();
    fx.put_behind("f", b"v1");
    let old = fx.open("f", libc::O_RDONLY).unwrap();
    assert_eq!(fx.read(old, 0, 1).unwrap(), b"v");
    fx.put_behind("f", b"version two");
    assert_eq!(fx.stat("f").unwrap().size, 11);
    let new = fx.open("f", libc::O_RDONLY).unwrap();
    assert_eq!(fx.read_to_end(new).unwrap(), b"version two");
    // The old handle read part of v1: the rest is not read from v2 (never a mix).
    let e = fx.read(old, 1, 100).unwrap_err();
    assert_eq!(e.errno, libc::EIO);
    fx.close(old).unwrap();
    assert_eq!(
        fx.read_to_end(new).unwrap(),
        b"version two",
        "still readable"
    );
    fx.close(new).unwrap();
    assert_eq!(fx.cat("f").unwrap(), b"version two");
}

#[test]
fn an_open_while_the_file_is_written_here_keeps_the_shared_copy() {
    // Handles of one file share one copy, as on a disk: another client's version does not
    // replace content not uploaded yet.
    let fx = setup().mount();
    fx.put_behind("f", b"v1");
    let w = fx.open("f", libc::O_RDWR).unwrap();
    fx.write(w, 0, b"mine").unwrap();
    fx.put_behind("f", b"theirs");
    let r = fx.open("f", libc::O_RDONLY).unwrap();
    assert_eq!(fx.read_to_end(r).unwrap(), b"mine");
    assert_eq!(fx.read_to_end(w).unwrap(), b"mine");
    fx.close(r).unwrap();
    fx.close(w).unwrap();
}
