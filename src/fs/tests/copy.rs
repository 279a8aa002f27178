//! `copy_file_range` (GNU cp ≥ 9): a whole object copied into an empty file of the mount is one
//! server-side copy with the target's own metadata; anything else falls back to read and
//! write, as the kernel does on EOPNOTSUPP.

use super::*;
use crate::fs::attr::S_IFREG;
use crate::fs::copy::MAX_COPY_REPLY;
use crate::s3::TransferConfig;

/// What cp and the kernel do: `copy_file_range` in ranges of at most `range` bytes until it
/// says 0; on EOPNOTSUPP before anything was copied, read and write instead. Returns whether
/// every byte went through `copy_file_range`.
pub(super) fn cp_with_ranges(
    fx: &Fx,
    from: &str,
    to: &str,
    to_flags: i32,
    range: u64,
) -> FsResult<bool> {
    let src = fx.open(from, libc::O_RDONLY)?;
    let dst = fx.open(to, libc::O_WRONLY | libc::O_CREAT | to_flags)?;
    let mut at = 0u64;
    let mut server_side = true;
    let result = loop {
        match fx.fs.copy_file_range(src, at, dst, at, range) {
            Ok(0) => break Ok(()),
            Ok(n) => at += n,
            Err(e) if e.errno == libc::EOPNOTSUPP => {
                eprintln!("falling back to read and write: {e}");
                server_side = false;
                let data = fx.read_to_end(src)?;
                break fx.write(dst, 0, &data);
            }
            Err(e) => break Err(e),
        }
    };
    let closed = fx.close(dst);
    fx.close(src)?;
    result.and(closed).map(|()| server_side)
}

/// `cp from to` to a new name (cp opens it `O_EXCL`), in one range as the kernel hands over
/// anything up to 2 GiB.
pub(super) fn cp(fx: &Fx, from: &str, to: &str) -> FsResult<bool> {
    cp_with_ranges(fx, from, to, libc::O_EXCL, MAX_COPY_REPLY)
}

fn content_type(o: &StoredObject) -> &str {
    o.content_headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str())
        .unwrap()
}

#[test]
fn cp_inside_the_mount_is_one_copy_on_the_server_with_the_targets_own_metadata() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    let data = bytes(3 * MIB, 7);
    fx.store.put_behind_with(
        BUCKET,
        "src.txt",
        data.clone(),
        &meta(&[("mode", "33261"), ("color", "red")]),
        &[("content-type".into(), "text/plain".into())],
    );
    fx.stat("src.txt").unwrap();
    fx.store.reset_counts();
    assert!(cp(&fx, "src.txt", "copy.html").unwrap(), "server side");
    let copy = fx.object("copy.html").unwrap();
    assert_eq!(copy.data, data, "byte-exact");
    assert_eq!(fx.data("src.txt"), data, "the source is untouched");
    // The target's own metadata, as a create gives it: its mode, a type from its name; not
    // the source's metadata.
    assert_eq!(
        copy.metadata.get("mode"),
        Some((S_IFREG | FILE_MODE).to_string().as_str())
    );
    assert_eq!(copy.metadata.get("color"), None);
    assert_eq!(content_type(&copy), "text/html");
    // The bytes never passed through the mount.
    assert_eq!(fx.count(Operation::CopyObject), 1);
    assert_eq!(fx.count(Operation::GetObject), 0);
    assert_eq!(fx.count(Operation::PutObject), 0);
    // Read back through the mount, and as the table knows it.
    assert_eq!(fx.stat("copy.html").unwrap().size, 3 * MIB as u64);
    assert_eq!(fx.cat("copy.html").unwrap(), data);
}

#[test]
fn the_ranges_of_one_copy_become_one_server_side_copy() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    let data = bytes(3 * MIB + 5, 1);
    fx.put_behind("big", &data);
    fx.store.reset_counts();
    // The kernel hands over 1 MiB at a time (on a real mount: 2 GiB at most).
    assert!(cp_with_ranges(&fx, "big", "big.copy", libc::O_EXCL, MIB as u64).unwrap());
    assert_eq!(fx.data("big.copy"), data);
    assert_eq!(fx.count(Operation::CopyObject), 1);
    assert_eq!(fx.count(Operation::GetObject), 0);
}

#[test]
fn while_the_ranges_go_on_the_target_shows_what_they_covered() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    let data = bytes(3 * MIB, 2);
    fx.put_behind("s", &data);
    let src = fx.open("s", libc::O_RDONLY).unwrap();
    let dst = fx
        .open("t", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .unwrap();
    let step = MIB as u64;
    assert_eq!(fx.fs.copy_file_range(src, 0, dst, 0, step).unwrap(), step);
    let t = fx.ino("t").unwrap();
    assert_eq!(fx.fs.getattr(t).unwrap().size, step);
    assert_eq!(fx.count(Operation::CopyObject), 0, "not made yet");
    // A range that does not continue the copy: the kernel is told to read and write, and
    // what was covered is in the file from now on.
    assert_eq!(
        errno(fx.fs.copy_file_range(src, 2 * step, dst, 2 * step, step)),
        libc::EOPNOTSUPP
    );
    fx.close(dst).unwrap();
    fx.close(src).unwrap();
    assert_eq!(fx.data("t"), &data[..MIB]);
}

#[test]
fn a_copy_interrupted_by_a_write_or_a_close_keeps_the_bytes_it_covered() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    let data = bytes(3 * MIB, 4);
    fx.put_behind("s", &data);
    // Interrupted by a write past what was covered.
    let src = fx.open("s", libc::O_RDONLY).unwrap();
    let dst = fx.open("w", libc::O_WRONLY | libc::O_CREAT).unwrap();
    assert_eq!(
        fx.fs.copy_file_range(src, 0, dst, 0, MIB as u64).unwrap(),
        MIB as u64
    );
    fx.write(dst, MIB as u64, b"tail").unwrap();
    fx.close(dst).unwrap();
    let mut want = data[..MIB].to_vec();
    want.extend_from_slice(b"tail");
    assert_eq!(fx.data("w"), want);
    // Interrupted by the close (a program that copies only a part).
    let dst = fx.open("c", libc::O_WRONLY | libc::O_CREAT).unwrap();
    assert_eq!(fx.fs.copy_file_range(src, 0, dst, 0, 100).unwrap(), 100);
    // A read of the target through its handle sees the bytes copied.
    assert_eq!(fx.read(dst, 0, 200).unwrap(), &data[..100]);
    fx.close(dst).unwrap();
    fx.close(src).unwrap();
    assert_eq!(fx.data("c"), &data[..100]);
}

#[test]
fn partial_ranges_and_targets_with_content_fall_back_to_read_and_write() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    let data = bytes(MIB, 5);
    fx.put_behind("s", &data);
    fx.put("has", b"old content").unwrap();
    let src = fx.open("s", libc::O_RDONLY).unwrap();
    // From an offset within the source.
    let dst = fx.open("t", libc::O_WRONLY | libc::O_CREAT).unwrap();
    assert_eq!(
        errno(fx.fs.copy_file_range(src, 10, dst, 0, 100)),
        libc::EOPNOTSUPP
    );
    fx.close(dst).unwrap();
    // Into a file that has content (opened without O_TRUNC).
    let dst = fx.open("has", libc::O_WRONLY).unwrap();
    assert_eq!(
        errno(fx.fs.copy_file_range(src, 0, dst, 0, MIB as u64)),
        libc::EOPNOTSUPP
    );
    fx.close(dst).unwrap();
    // Within one file.
    assert_eq!(
        errno(fx.fs.copy_file_range(src, 0, src, 0, 10)),
        libc::EOPNOTSUPP
    );
    fx.close(src).unwrap();
    assert_eq!(fx.count(Operation::CopyObject), 0);
    assert_eq!(fx.data("has"), b"old content");
}

#[test]
fn a_truncated_target_keeps_its_own_metadata() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    fx.put_behind("s", &bytes(1000, 6));
    fx.store.put_behind_with(
        BUCKET,
        "t.bin",
        b"old".to_vec(),
        &meta(&[("mode", "33152"), ("owner-note", "kept")]),
        &[("content-type".into(), "application/x-custom".into())],
    );
    // cp onto an existing file: open(O_WRONLY | O_TRUNC).
    assert!(cp_with_ranges(&fx, "s", "t.bin", libc::O_TRUNC, MAX_COPY_REPLY).unwrap());
    let t = fx.object("t.bin").unwrap();
    assert_eq!(t.data, bytes(1000, 6));
    assert_eq!(t.metadata.get("owner-note"), Some("kept"));
    assert_eq!(t.metadata.get("mode"), Some("33152"));
    assert_eq!(content_type(&t), "application/x-custom");
    assert_eq!(fx.count(Operation::PutObject), 0);
}

#[test]
fn a_source_with_unsaved_changes_is_uploaded_first() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    fx.put("s", b"old").unwrap();
    let w = fx.open("s", libc::O_WRONLY | libc::O_TRUNC).unwrap();
    fx.write(w, 0, b"new bytes").unwrap();
    fx.store.reset_counts();
    assert!(cp(&fx, "s", "t").unwrap());
    assert_eq!(fx.data("s"), b"new bytes");
    assert_eq!(fx.data("t"), b"new bytes");
    assert_eq!(fx.count(Operation::PutObject), 1, "the source's upload");
    assert_eq!(fx.count(Operation::CopyObject), 1);
    fx.close(w).unwrap();
}

#[test]
fn a_large_source_is_one_multipart_copy_on_the_server() {
    let fx = setup()
        .ttl(Duration::from_secs(1))
        .transfer(TransferConfig {
            copy_threshold: 6 * MIB as u64,
            copy_part_size: 5 * MIB as u64,
            ..small_parts()
        })
        .mount();
    let data = bytes(12 * MIB, 8);
    fx.put_behind("big", &data);
    fx.store.reset_counts();
    assert!(cp(&fx, "big", "big.2").unwrap());
    assert_eq!(fx.data("big.2"), data);
    assert_eq!(fx.count(Operation::UploadPartCopy), 3);
    assert_eq!(fx.count(Operation::GetObject), 0);
    assert_eq!(fx.count(Operation::UploadPart), 0);
}

#[test]
fn a_source_replaced_between_the_ranges_is_never_copied_in_its_place() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    let data = bytes(2 * MIB, 9);
    fx.put_behind("s", &data);
    let src = fx.open("s", libc::O_RDONLY).unwrap();
    let dst = fx
        .open("t", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .unwrap();
    assert_eq!(
        fx.fs.copy_file_range(src, 0, dst, 0, MIB as u64).unwrap(),
        MIB as u64
    );
    fx.put_behind("s", b"another client's");
    // The last range: the server refuses the copy (the source's ETag changed)...
    assert_eq!(
        fx.fs
            .copy_file_range(src, MIB as u64, dst, MIB as u64, MIB as u64)
            .unwrap(),
        MIB as u64
    );
    // ...and the close cannot fetch the version copied: EIO, nothing stored.
    assert_eq!(errno(fx.close(dst)), libc::EIO);
    fx.close(src).unwrap();
    assert_eq!(fx.object("t"), None);
}

#[test]
fn an_exclusive_target_another_client_created_meanwhile_is_eexist_at_close() {
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    fx.put_behind("s", &bytes(1000, 1));
    let src = fx.open("s", libc::O_RDONLY).unwrap();
    let dst = fx
        .open("t", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .unwrap();
    fx.put_behind("t", b"theirs");
    assert_eq!(fx.fs.copy_file_range(src, 0, dst, 0, 1000).unwrap(), 1000);
    assert_eq!(errno(fx.close(dst)), libc::EEXIST);
    fx.close(src).unwrap();
    assert_eq!(fx.data("t"), b"theirs");
    assert_eq!(fx.count(Operation::CopyObject), 0);
}

/// What the kernel does for `copy_file_range` in ranges (it clamps each to the source's size
/// as it knows it), with `between` run after each range, falling back to read and write from
/// where the copy stopped on EOPNOTSUPP.
fn copy_with_a_writer(
    fx: &Fx,
    src: u64,
    dst: u64,
    ranges: &[u64],
    between: impl Fn(usize),
) -> FsResult<()> {
    let mut at = 0u64;
    for (i, &len) in ranges.iter().enumerate() {
        match fx.fs.copy_file_range(src, at, dst, at, len) {
            Ok(n) => at += n,
            Err(e) if e.errno == libc::EOPNOTSUPP => {
                let rest = fx.read_to_end(src)?;
                return fx.write(dst, at, &rest[at as usize..]);
            }
            Err(e) => return Err(e),
        }
        between(i);
    }
    let rest = fx.read_to_end(src)?;
    fx.write(dst, at, &rest[at as usize..])
}

#[test]
fn cp_of_a_log_appended_meanwhile_copies_what_it_holds() {
    // A daemon appends to its log, holding it open, while `cp log log.1` (logrotate's
    // copytruncate by hand) copies it: the kernel's first range stops at the size it knew,
    // short of the bytes written since; the copy then goes on by read and write. It used to
    // upload the log again at each range and then fail to fetch the version the first range
    // was of (EIO: "precondition failed").
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    let w = fx.open("log", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(w, 0, b"line 1\nline 2\n").unwrap();
    let src = fx.open("log", libc::O_RDONLY).unwrap();
    let dst = fx
        .open("log.1", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .unwrap();
    fx.write(w, 14, b"line 3\n").unwrap();
    copy_with_a_writer(&fx, src, dst, &[14, MAX_COPY_REPLY], |_| {
        fx.write(w, 21, b"line 4\n").unwrap();
    })
    .unwrap();
    fx.close(dst).unwrap();
    fx.close(src).unwrap();
    let copied = fx.data("log.1");
    assert!(
        copied.starts_with(b"line 1\nline 2\nline 3\n"),
        "{copied:?}"
    );
    fx.close(w).unwrap();
    assert!(fx.data("log").starts_with(&copied));
}

#[test]
fn a_source_written_between_the_ranges_is_copied_as_it_was_then_as_it_is() {
    // The first range was of the object as uploaded; the source's writer changes it before
    // the next: the bytes covered are fetched before its upload replaces that version.
    let fx = setup().ttl(Duration::from_secs(1)).mount();
    fx.put("s", &bytes(1000, 3)).unwrap();
    let w = fx.open("s", libc::O_WRONLY).unwrap();
    let src = fx.open("s", libc::O_RDONLY).unwrap();
    let dst = fx
        .open("t", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .unwrap();
    copy_with_a_writer(&fx, src, dst, &[600, MAX_COPY_REPLY], |_| {
        fx.write(w, 0, &[9u8; 1000]).unwrap();
    })
    .unwrap();
    fx.close(dst).unwrap();
    fx.close(src).unwrap();
    fx.close(w).unwrap();
    let mut expected = bytes(1000, 3)[..600].to_vec();
    expected.extend_from_slice(&[9u8; 400]);
    assert_eq!(fx.data("t"), expected);
}
