//! Files: open, read, create, write, close, overwrite, O_EXCL, truncate, streamed uploads,
//! unlink.

use super::*;

// ---- open / read ----------------------------------------------------------------------------

#[test]
fn reads_are_exact_ranges_of_the_version_opened() {
    let fx = fx();
    let data = bytes(3 * MIB + 123, 1);
    fx.put_behind("f", &data);
    let fh = fx.open("f", libc::O_RDONLY).unwrap();
    assert_eq!(fx.read(fh, 0, 10).unwrap(), &data[..10]);
    assert_eq!(
        fx.read(fh, 2 * MIB as u64 + 5, 4096).unwrap(),
        &data[2 * MIB + 5..2 * MIB + 5 + 4096]
    );
    assert_eq!(
        fx.read(fh, data.len() as u64 - 3, 100).unwrap(),
        &data[data.len() - 3..],
        "short at the end"
    );
    assert_eq!(fx.read(fh, data.len() as u64 + 10, 100).unwrap(), b"");
    assert_eq!(fx.read_to_end(fh).unwrap(), data);
    fx.close(fh).unwrap();
    assert_eq!(fx.count(Operation::PutObject), 0, "reading uploads nothing");
}

#[test]
fn a_version_changed_behind_an_open_reader_is_eio_and_the_next_open_sees_the_new_one() {
    let fx = setup().opts(|o| o.data_cache_size = 0).mount();
    fx.put_behind("f", &bytes(2 * MIB, 1));
    let fh = fx.open("f", libc::O_RDONLY).unwrap();
    assert_eq!(fx.read(fh, 0, 4096).unwrap(), &bytes(2 * MIB, 1)[..4096]);
    let new = bytes(MIB, 2);
    fx.put_behind("f", &new);
    // Far from what was read ahead: this read needs the server, which has another version.
    assert_eq!(errno(fx.read(fh, MIB as u64 + 300_000, 4096)), libc::EIO);
    fx.close(fh).unwrap();
    assert_eq!(fx.cat("f").unwrap(), new, "close-to-open: the new version");
}

#[test]
fn open_revalidates_stale_attributes() {
    let fx = fx();
    fx.put_behind("f", b"old");
    assert_eq!(fx.cat("f").unwrap(), b"old");
    fx.put_behind("f", b"newer content");
    assert_eq!(fx.stat("f").unwrap().size, 13);
    assert_eq!(fx.cat("f").unwrap(), b"newer content");
}

#[test]
fn a_broken_body_is_resumed_not_mixed() {
    let fx = setup().opts(|o| o.data_cache_size = 0).mount();
    let data = bytes(300_000, 3);
    fx.put_behind("f", &data);
    fx.store.cut_next_bodies(2, 1000);
    assert_eq!(fx.cat("f").unwrap(), data);
}

#[test]
fn whole_blocks_read_are_kept_in_the_data_cache() {
    let fx = fx();
    let data = bytes(2 * MIB + 10, 4);
    fx.put_behind("f", &data);
    assert_eq!(fx.cat("f").unwrap(), data);
    let gets = fx.count(Operation::GetObject);
    assert!(gets >= 1);
    fx.cached();
    assert_eq!(fx.cat("f").unwrap(), data);
    assert_eq!(
        fx.count(Operation::GetObject),
        gets,
        "the second read comes from the data cache"
    );
}

// ---- create / write / close -----------------------------------------------------------------

#[test]
fn create_write_close_is_one_put_and_close_returns_once_it_is_there() {
    let fx = fx();
    fx.mkdir("d").unwrap();
    fx.store.reset_counts();
    let fh = fx
        .open(
            "d/notes.txt",
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        )
        .unwrap();
    fx.write(fh, 0, b"hello ").unwrap();
    fx.write(fh, 6, b"world").unwrap();
    assert_eq!(fx.count(Operation::PutObject), 0, "nothing before close");
    assert_eq!(
        fx.getattr("d/notes.txt").unwrap().size,
        11,
        "stat sees the writes"
    );
    fx.close(fh).unwrap();
    assert_eq!(fx.count(Operation::PutObject), 1);
    let o = fx.object("d/notes.txt").unwrap();
    assert_eq!(o.data, b"hello world");
    assert!(o
        .content_headers
        .contains(&("content-type".into(), "text/plain".into())));
    assert!(o.metadata.get("mode").is_some());
    assert_eq!(fx.remount().cat("d/notes.txt").unwrap(), b"hello world");
}

#[test]
fn an_empty_new_file_is_uploaded() {
    let fx = fx();
    let fh = fx.open("empty", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.data("empty"), b"");
}

#[test]
fn fsync_uploads_and_a_second_close_has_nothing_to_send() {
    let fx = fx();
    let fh = fx.open("f", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, b"abc").unwrap();
    fx.fs.fsync(fh).unwrap();
    assert_eq!(fx.data("f"), b"abc");
    fx.close(fh).unwrap();
    assert_eq!(fx.count(Operation::PutObject), 1);
}

#[test]
fn writing_into_an_existing_file_fills_the_staging_file_first() {
    let fx = fx();
    fx.put_behind("f", b"0123456789");
    let fh = fx.open("f", libc::O_WRONLY).unwrap();
    fx.write(fh, 3, b"abc").unwrap();
    fx.write(fh, 12, b"!").unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.data("f"), b"012abc6789\0\0!");
    assert_eq!(fx.count(Operation::GetObject), 1);
}

#[test]
fn overwrite_keeps_metadata_and_content_headers_and_new_files_get_a_type() {
    let fx = fx();
    let headers = [
        (
            "content-type".to_string(),
            "application/x-custom".to_string(),
        ),
        ("cache-control".to_string(), "max-age=60".to_string()),
        ("content-disposition".to_string(), "inline".to_string()),
    ];
    fx.store.put_behind_with(
        BUCKET,
        "data.bin",
        b"old".to_vec(),
        &meta(&[("color", "blue"), ("owner-app", "x")]),
        &headers,
    );
    fx.put("data.bin", b"new content").unwrap();
    let o = fx.object("data.bin").unwrap();
    assert_eq!(o.data, b"new content");
    assert_eq!(o.metadata.get("color"), Some("blue"));
    assert_eq!(o.metadata.get("owner-app"), Some("x"));
    for h in &headers {
        assert!(
            o.content_headers.contains(h),
            "{h:?} in {:?}",
            o.content_headers
        );
    }
    fx.put("pic.png", b"\x89PNG").unwrap();
    let o = fx.object("pic.png").unwrap();
    assert!(o
        .content_headers
        .contains(&("content-type".into(), "image/png".into())));
}

/// rclone keeps the MD5 of a multipart upload's content in `x-amz-meta-md5chksum` and checks
/// what it downloads against it: kept through a rewrite here, it named the old content, and
/// `rclone copy` of the file failed ("corrupted on transfer: md5 hash differ"). A rewrite drops
/// it; a change that keeps the content (chmod, setxattr, rename) keeps it.
#[test]
fn a_rewrite_drops_the_digest_rclone_keeps_of_the_old_content() {
    let fx = fx();
    let rclone = [
        ("mtime", "1700000000.5"),
        ("md5chksum", "N4RZnMM3OIycY6Lp+m7FdA=="),
    ];
    for name in ["a", "b"] {
        fx.store
            .put_behind_with(BUCKET, name, b"old".to_vec(), &meta(&rclone), &[]);
    }
    fx.setattr(
        "a",
        AttrChange {
            mode: Some(0o600),
            ..AttrChange::default()
        },
    )
    .unwrap();
    fx.rename("a", "a2").unwrap();
    let o = fx.object("a2").unwrap();
    assert_eq!(
        o.metadata.get("md5chksum"),
        Some(rclone[1].1),
        "same content"
    );
    // Appended to (the object copied into staging first), and rewritten while open with a
    // chmod pending (the metadata changed while open goes with the upload).
    let fh = fx.open("a2", libc::O_WRONLY | libc::O_APPEND).unwrap();
    fx.write(fh, 0, b"+new").unwrap();
    fx.close(fh).unwrap();
    let fh = fx.open("b", libc::O_WRONLY | libc::O_TRUNC).unwrap();
    fx.setattr(
        "b",
        AttrChange {
            mode: Some(0o640),
            ..AttrChange::default()
        },
    )
    .unwrap();
    fx.write(fh, 0, b"new").unwrap();
    fx.close(fh).unwrap();
    for name in ["a2", "b"] {
        let o = fx.object(name).unwrap();
        assert_ne!(o.data, b"old");
        assert_eq!(
            o.metadata.get("md5chksum"),
            None,
            "{name}: {:?}",
            o.metadata
        );
        assert!(
            o.metadata.get("mtime").is_some(),
            "{name}: other metadata kept"
        );
        assert_eq!(fx.getxattr(name, "user.x-amz-meta-md5chksum").ok(), None);
    }
}

#[test]
fn o_excl_is_eexist_for_an_existing_name_and_carries_if_none_match() {
    let fx = fx();
    fx.put("f", b"1").unwrap();
    let excl = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    assert_eq!(errno(fx.open("f", excl)), libc::EEXIST);
    // The kernel asks the file system too when it does not know the name yet.
    let root = ROOT_INO;
    assert_eq!(
        errno(fx.fs.create(root, OsStr::new("f"), 0o644, excl, None)),
        libc::EEXIST
    );

    // Another client creates the name between create and close: close says EEXIST, their
    // object stays, and ours is kept in unsaved/.
    let fh = fx.open("g", excl).unwrap();
    fx.write(fh, 0, b"mine").unwrap();
    fx.put_behind("g", b"theirs");
    assert_eq!(errno(fx.close(fh)), libc::EEXIST);
    assert_eq!(fx.data("g"), b"theirs");
    assert_eq!(fx.unsaved(), [(b"mine".to_vec(), Some("g".to_string()))]);
}

#[test]
fn o_trunc_closed_before_writing_uploads_nothing_until_the_data_comes() {
    let fx = fx();
    fx.put("f", b"precious").unwrap();
    fx.store.reset_counts();
    // `cmd > f`: open with O_TRUNC, the shell's close of its descriptor (a flush) after
    // dup2, then the program's writes and its close.
    let fh = fx.open("f", libc::O_WRONLY | libc::O_TRUNC).unwrap();
    fx.fs.flush(fh).unwrap();
    assert_eq!(fx.count(Operation::PutObject), 0);
    assert_eq!(fx.data("f"), b"precious");
    fx.write(fh, 0, b"output").unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.data("f"), b"output");

    // Nothing written at all: the last close uploads the empty file.
    let fh = fx.open("f", libc::O_WRONLY | libc::O_TRUNC).unwrap();
    fx.fs.flush(fh).unwrap();
    assert_eq!(fx.data("f"), b"output");
    fx.fs.release(fh).unwrap();
    assert_eq!(fx.data("f"), b"");
}

// ---- truncate -------------------------------------------------------------------------------

#[test]
fn truncate_shortens_and_extends_with_zeros() {
    let fx = fx();
    fx.put("f", b"0123456789").unwrap();
    fx.truncate("f", 4).unwrap();
    assert_eq!(fx.data("f"), b"0123");
    fx.truncate("f", 6).unwrap();
    assert_eq!(fx.data("f"), b"0123\0\0");
    assert_eq!(fx.stat("f").unwrap().size, 6);
    fx.truncate("f", 0).unwrap();
    assert_eq!(fx.data("f"), b"");
    assert_eq!(errno(fx.truncate("missing", 0)), libc::ENOENT);
    fx.mkdir("d").unwrap();
    assert_eq!(errno(fx.truncate("d", 0)), libc::EISDIR);

    // Through an open file: uploaded at its close.
    let fh = fx.open("f", libc::O_RDWR).unwrap();
    fx.write(fh, 0, b"abcdef").unwrap();
    fx.truncate("f", 2).unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.data("f"), b"ab");
}

#[test]
fn a_listing_shows_the_size_of_a_file_still_open_not_the_servers() {
    // `echo > f; truncate -s 20 f; ls -l`: the truncate lands in the file still open (its
    // release comes after close returns), the listing finds the object as the close uploaded
    // it; readdirplus's attributes must not shrink the kernel's size back.
    let fx = setup().ttl(Duration::from_secs(3600)).mount();
    let fh = fx
        .open("f", libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        .unwrap();
    fx.write(fh, 0, b"0123456789abc").unwrap();
    fx.fs.flush(fh).unwrap();
    assert_eq!(fx.data("f"), b"0123456789abc", "uploaded at flush");
    fx.truncate("f", 20).unwrap();
    assert_eq!(fx.stat("f").unwrap().size, 20, "a lookup the table trusts");
    let entries = fx.ls_entries("").unwrap();
    let f = entries.iter().find(|e| e.name == "f").unwrap();
    assert_eq!(f.attrs.size, 20, "the listing's entry");
    assert_eq!(fx.stat("f").unwrap().size, 20);
    fx.fs.release(fh).unwrap();
    let mut want = b"0123456789abc".to_vec();
    want.resize(20, 0);
    assert_eq!(fx.data("f"), want);
    assert_eq!(fx.ls_entries("").unwrap()[0].attrs.size, 20);
}

#[test]
fn stat_and_ls_of_a_file_do_not_wait_for_what_holds_it() {
    // An upload at close, a download at open-for-write, a read waiting for the server hold
    // the file's lock for as long as they take; `stat` and `ls` read the size it had when the
    // lock was last let go.
    let fx = setup().ttl(Duration::from_secs(3600)).mount();
    let fh = fx.open("f", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, b"0123456789abc").unwrap();
    let ino = fx.ino("f").unwrap();
    let f = fx.fs.open_files.get(ino).unwrap();
    let held = f.lock();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let stat = fx.stat("f").map(|a| a.size);
            let getattr = fx.fs.getattr(ino).map(|a| a.size);
            let ls = fx.ls_entries("").map(|e| e[0].attrs.size);
            tx.send((stat, getattr, ls)).unwrap();
        });
        let got = rx.recv_timeout(Duration::from_secs(10));
        drop(held);
        let (stat, getattr, ls) = got.expect("stat and ls waited for the file's lock");
        assert_eq!(stat.unwrap(), 13);
        assert_eq!(getattr.unwrap(), 13);
        assert_eq!(ls.unwrap(), 13);
    });
    fx.close(fh).unwrap();
    assert_eq!(fx.data("f"), b"0123456789abc");
}

#[test]
fn a_file_cannot_grow_past_the_largest_object() {
    use crate::s3::store::MAX_OBJECT_SIZE;
    let fx = fx();
    fx.put("f", b"0123456789").unwrap();
    // As a disk at its largest file size: EFBIG, and the file is as it was.
    assert_eq!(errno(fx.truncate("f", MAX_OBJECT_SIZE + 1)), libc::EFBIG);
    assert_eq!(errno(fx.truncate("f", 999_999_999_999_999)), libc::EFBIG);
    let fh = fx.open("f", libc::O_RDWR).unwrap();
    assert_eq!(errno(fx.write(fh, MAX_OBJECT_SIZE, b"x")), libc::EFBIG);
    assert_eq!(errno(fx.write(fh, u64::MAX - 1, b"x")), libc::EFBIG);
    fx.close(fh).unwrap();
    assert_eq!(fx.data("f"), b"0123456789");
    assert_eq!(fx.stat("f").unwrap().size, 10);
}

// ---- streamed and multipart uploads -----------------------------------------------------

#[test]
fn a_file_written_front_to_back_is_uploaded_while_it_is_written() {
    let fx = setup().transfer(small_parts()).mount();
    let data = bytes(11 * MIB + 5, 6);
    let fh = fx
        .open("big.iso", libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        .unwrap();
    fx.write(fh, 0, &data[..7 * MIB]).unwrap();
    assert_eq!(
        fx.count(Operation::CreateMultipartUpload),
        1,
        "started while writing"
    );
    assert!(fx.object("big.iso").is_none());
    fx.write(fh, 7 * MIB as u64, &data[7 * MIB..]).unwrap();
    fx.close(fh).unwrap();
    let o = fx.object("big.iso").unwrap();
    assert!(o.data == data, "the bytes");
    assert!(o.etag.ends_with("-3"), "3 parts: {}", o.etag);
    assert_eq!(fx.count(Operation::PutObject), 0);
    assert_eq!(fx.count(Operation::UploadPart), 3);
    assert_eq!(fx.store.uploads(BUCKET), vec![], "nothing left open");
    let iso_type = crate::s3::storage::guess_content_type("big.iso");
    assert!(o
        .content_headers
        .contains(&("content-type".into(), iso_type)));
    assert!(fx.remount().cat("big.iso").unwrap() == data);
}

#[test]
fn a_write_below_what_was_sent_gives_the_stream_up_and_close_uploads_the_whole_file() {
    let fx = setup().transfer(small_parts()).mount();
    let mut data = bytes(11 * MIB, 7);
    let fh = fx
        .open("f", libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        .unwrap();
    fx.write(fh, 0, &data).unwrap();
    assert_eq!(fx.count(Operation::CreateMultipartUpload), 1);
    fx.write(fh, 10, b"patched").unwrap();
    data[10..17].copy_from_slice(b"patched");
    fx.close(fh).unwrap();
    assert!(fx.data("f") == data);
    assert_eq!(fx.count(Operation::AbortMultipartUpload), 1);
    assert_eq!(
        fx.count(Operation::CreateMultipartUpload),
        2,
        "the whole file, multipart"
    );
    assert_eq!(fx.store.uploads(BUCKET), vec![]);
}

#[test]
fn a_file_rewritten_in_place_above_the_threshold_is_one_multipart_upload_at_close() {
    let fx = setup().transfer(small_parts()).mount();
    fx.put_behind("f", &bytes(11 * MIB, 8));
    let fh = fx.open("f", libc::O_WRONLY).unwrap();
    fx.write(fh, 7, b"x").unwrap();
    assert_eq!(
        fx.count(Operation::CreateMultipartUpload),
        0,
        "not written front to back"
    );
    fx.close(fh).unwrap();
    let mut want = bytes(11 * MIB, 8);
    want[7] = b'x';
    assert!(fx.data("f") == want);
    assert!(fx.object("f").unwrap().etag.ends_with("-3"));
}

// ---- unlink ---------------------------------------------------------------------------------

#[test]
fn unlink_deletes_and_a_file_unlinked_while_open_is_not_uploaded() {
    let fx = fx();
    fx.put("f", b"x").unwrap();
    fx.store.reset_counts();
    fx.unlink("f").unwrap();
    assert_eq!(fx.count(Operation::DeleteObject), 1);
    assert_eq!(fx.keys(), Vec::<String>::new());
    assert_eq!(errno(fx.stat("f")), libc::ENOENT);
    assert_eq!(errno(fx.unlink("f")), libc::ENOENT);

    let fh = fx.open("g", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, b"scratch").unwrap();
    fx.unlink("g").unwrap();
    fx.write(fh, 7, b" more").unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.keys(), Vec::<String>::new());
    assert_eq!(fx.count(Operation::PutObject), 0);

    fx.mkdir("d").unwrap();
    assert_eq!(errno(fx.unlink("d")), libc::EISDIR);
    assert_eq!(errno(fx.fs.unlink(ROOT_INO, OsStr::new("d"))), libc::EISDIR);
}

#[test]
fn a_metadata_change_while_streaming_goes_with_the_whole_file_at_close() {
    let fx = setup().transfer(small_parts()).mount();
    let data = bytes(11 * MIB, 9);
    let fh = fx
        .open("f", libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        .unwrap();
    fx.write(fh, 0, &data[..7 * MIB]).unwrap();
    assert_eq!(fx.count(Operation::CreateMultipartUpload), 1);
    fx.setxattr("f", "user.x-amz-meta-k", "v", 0).unwrap();
    fx.write(fh, 7 * MIB as u64, &data[7 * MIB..]).unwrap();
    fx.close(fh).unwrap();
    let o = fx.object("f").unwrap();
    assert!(o.data == data);
    assert_eq!(o.metadata.get("k"), Some("v"));
    assert_eq!(fx.store.uploads(BUCKET), vec![]);
}

#[test]
fn rmdir_of_a_directory_holding_a_file_not_yet_uploaded_is_enotempty() {
    let fx = fx();
    fx.mkdir("d").unwrap();
    let fh = fx.open("d/f", libc::O_WRONLY | libc::O_CREAT).unwrap();
    assert_eq!(errno(fx.rmdir("d")), libc::ENOTEMPTY);
    fx.close(fh).unwrap();
    assert_eq!(fx.keys(), ["d/", "d/f"]);
}

#[test]
fn an_append_lands_at_the_end_whatever_offset_the_kernel_sends() {
    // Without the kernel's writeback cache the file system places an `O_APPEND` write; the
    // kernel's offset is its idea of the size, which stale attributes can have set to 0.
    let fx = fx();
    fx.put_behind("log", b"abc");
    let fh = fx.open("log", libc::O_WRONLY | libc::O_APPEND).unwrap();
    assert_eq!(fx.fs.write(fh, 0, b"1", true).unwrap(), 1);
    assert_eq!(fx.fs.write(fh, 1, b"2", true).unwrap(), 1);
    fx.close(fh).unwrap();
    assert_eq!(fx.data("log"), b"abc12");
    // Without O_APPEND the offset is the kernel's.
    let fh = fx.open("log", libc::O_WRONLY).unwrap();
    fx.fs.write(fh, 0, b"x", false).unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.data("log"), b"xbc12");
}
