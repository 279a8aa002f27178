//! `fallocate`: each mode as ext4 answers it (docs/semantics.md), uploaded like a write.

use super::*;

const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
const ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE;

/// `data` with `[from, to)` zeroed.
fn zeroed(data: &[u8], from: usize, to: usize) -> Vec<u8> {
    let mut d = data.to_vec();
    d[from..to].fill(0);
    d
}

/// A mount where another client stored 12 000 bytes (`seed`) under `f`, open with `flags`
/// a moment after its times were read: (the mount, the bytes, the times, the handle).
fn opened(seed: u8, flags: i32) -> (Fx, Vec<u8>, FileAttrs, u64) {
    let fx = fx();
    let data = bytes(12_000, seed);
    fx.put_behind("f", &data);
    let before = fx.stat("f").unwrap();
    // Long enough for a new mtime to differ.
    std::thread::sleep(Duration::from_millis(5));
    let fh = fx.open("f", flags).unwrap();
    (fx, data, before, fh)
}

/// `f`'s mtime and ctime moved since `before`.
fn times_moved(fx: &Fx, before: &FileAttrs) -> bool {
    let shown = fx.stat("f").unwrap();
    shown.mtime > before.mtime && shown.ctime > before.ctime
}

#[test]
fn mode_0_grows_the_file_with_zeros_and_is_uploaded_at_close() {
    let (fx, data, before, fh) = opened(1, libc::O_WRONLY);
    fx.fs.fallocate(fh, 1000, 19_000, 0).unwrap();
    assert_eq!(fx.stat("f").unwrap().size, 20_000, "grown while open");
    assert!(times_moved(&fx, &before));
    fx.close(fh).unwrap();
    let mut want = data.clone();
    want.resize(20_000, 0);
    assert_eq!(fx.data("f"), want, "the server has ext4's bytes");
    assert_eq!(fx.cat("f").unwrap(), want);
    // `posix_fallocate` on a new file.
    let fh = fx.open("new", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.fs.fallocate(fh, 5, 30_000, 0).unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.data("new"), vec![0u8; 30_005]);
}

#[test]
fn mode_0_that_changes_no_byte_moves_the_times_and_uploads_nothing() {
    let (fx, data, before, fh) = opened(2, libc::O_RDWR);
    // Inside the file, and past its end with KEEP_SIZE (`fallocate -n`).
    fx.fs.fallocate(fh, 1000, 100, 0).unwrap();
    fx.fs.fallocate(fh, 0, 50_000, KEEP).unwrap();
    assert_eq!(fx.stat("f").unwrap().size, 12_000);
    assert!(times_moved(&fx, &before), "as on ext4");
    assert_eq!(fx.read_to_end(fh).unwrap(), data);
    fx.close(fh).unwrap();
    assert_eq!(fx.count(Operation::PutObject), 0, "nothing to upload");
    assert_eq!(fx.count(Operation::GetObject), 1, "only the read above");
    assert_eq!(fx.data("f"), data);
}

#[test]
fn punch_hole_zeroes_the_range_and_keeps_the_size() {
    let (fx, data, before, fh) = opened(3, libc::O_RDWR);
    fx.fs.fallocate(fh, 100, 5000, PUNCH).unwrap();
    // Across the end: only what is inside the file, the size stays.
    fx.fs.fallocate(fh, 10_000, 5000, PUNCH).unwrap();
    // Wholly past the end: nothing.
    fx.fs.fallocate(fh, 20_000, 5000, PUNCH).unwrap();
    let want = zeroed(&zeroed(&data, 100, 5100), 10_000, 12_000);
    assert_eq!(
        fx.read_to_end(fh).unwrap(),
        want,
        "read back through the handle"
    );
    assert_eq!(fx.stat("f").unwrap().size, 12_000);
    assert!(times_moved(&fx, &before));
    fx.close(fh).unwrap();
    assert_eq!(fx.data("f"), want);
    assert_eq!(fx.remount().cat("f").unwrap(), want);
}

#[test]
fn zero_range_zeroes_and_grows_unless_told_to_keep_the_size() {
    let (fx, data, _, fh) = opened(4, libc::O_WRONLY);
    fx.fs.fallocate(fh, 100, 5000, ZERO).unwrap();
    assert_eq!(fx.stat("f").unwrap().size, 12_000, "inside: the size stays");
    fx.fs.fallocate(fh, 10_000, 5000, ZERO | KEEP).unwrap();
    assert_eq!(fx.stat("f").unwrap().size, 12_000, "KEEP_SIZE");
    fx.close(fh).unwrap();
    assert_eq!(
        fx.data("f"),
        zeroed(&zeroed(&data, 100, 5100), 10_000, 12_000)
    );
    let fh = fx.open("f", libc::O_WRONLY).unwrap();
    fx.fs.fallocate(fh, 11_000, 4000, ZERO).unwrap();
    assert_eq!(fx.stat("f").unwrap().size, 15_000, "grown");
    fx.close(fh).unwrap();
    let mut want = zeroed(&zeroed(&data, 100, 5100), 10_000, 12_000);
    want.resize(15_000, 0);
    assert_eq!(fx.data("f"), want);
}

#[test]
fn fallocate_answers_the_errors_ext4_answers() {
    let fx = fx();
    fx.put_behind("f", b"hello");
    let fh = fx.open("f", libc::O_RDWR).unwrap();
    assert_eq!(errno(fx.fs.fallocate(fh, 0, 0, 0)), libc::EINVAL, "len 0");
    assert_eq!(
        errno(fx.fs.fallocate(fh, u64::MAX, 1, 0)),
        libc::EINVAL,
        "offset -1"
    );
    assert_eq!(
        errno(fx.fs.fallocate(fh, 0, u64::MAX, 0)),
        libc::EINVAL,
        "len < 0"
    );
    for mode in [
        libc::FALLOC_FL_PUNCH_HOLE, // without KEEP_SIZE: the VFS's EOPNOTSUPP
        libc::FALLOC_FL_COLLAPSE_RANGE,
        libc::FALLOC_FL_INSERT_RANGE,
        libc::FALLOC_FL_UNSHARE_RANGE,
        0x04 | PUNCH, // FALLOC_FL_NO_HIDE_STALE
        libc::FALLOC_FL_PUNCH_HOLE | ZERO,
    ] {
        assert_eq!(
            errno(fx.fs.fallocate(fh, 0, 4, mode)),
            libc::EOPNOTSUPP,
            "mode {mode:#x}"
        );
    }
    let tib = 1u64 << 40;
    assert_eq!(errno(fx.fs.fallocate(fh, 5 * tib, 1, 0)), libc::EFBIG);
    assert_eq!(errno(fx.fs.fallocate(fh, 1 << 62, 1 << 62, 0)), libc::EFBIG);
    assert_eq!(errno(fx.fs.fallocate(fh + 1000, 0, 1, 0)), libc::EBADF);
    fx.close(fh).unwrap();
    assert_eq!(fx.data("f"), b"hello", "nothing changed");
    assert_eq!(fx.count(Operation::PutObject), 0);

    let ro = setup_over(fx.store.clone())
        .opts(|o| o.read_only = true)
        .mount();
    let fh = ro.open("f", libc::O_RDONLY).unwrap();
    assert_eq!(errno(ro.fs.fallocate(fh, 0, 100, 0)), libc::EROFS);
    ro.close(fh).unwrap();
}

#[test]
fn a_large_allocation_is_a_hole_in_the_staging_file_and_uploads_in_parts() {
    let fx = setup().transfer(small_parts()).mount();
    let len = 64 * MIB as u64;
    let fh = fx.open("big", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, b"head").unwrap();
    fx.fs.fallocate(fh, 0, len, 0).unwrap();
    assert_eq!(fx.stat("big").unwrap().size, len);
    let staging = fx.fs.options().cache_dir.join("staging");
    let used: u64 = std::fs::read_dir(&staging)
        .unwrap()
        .map(|e| std::os::unix::fs::MetadataExt::blocks(&e.unwrap().metadata().unwrap()) * 512)
        .sum();
    assert!(
        used < MIB as u64,
        "{used} bytes of disk for a {len}-byte file"
    );
    fx.close(fh).unwrap();
    let obj = fx.data("big");
    assert_eq!(obj.len() as u64, len);
    assert_eq!(&obj[..4], b"head");
    assert!(obj[4..].iter().all(|&b| b == 0));
    assert!(fx.count(Operation::UploadPart) >= 13, "multipart");
}

/// A new file `f` with 12 MiB (`seed`) written front to back, its upload streaming in 5 MiB
/// parts: (the mount, the bytes, the handle).
fn streaming(seed: u8) -> (Fx, Vec<u8>, u64) {
    let fx = setup().transfer(small_parts()).mount();
    let data = bytes(12 * MIB, seed);
    let fh = fx.open("f", libc::O_WRONLY | libc::O_CREAT).unwrap();
    fx.write(fh, 0, &data).unwrap();
    assert!(fx.count(Operation::CreateMultipartUpload) > 0, "streaming");
    (fx, data, fh)
}

#[test]
fn a_punch_into_bytes_a_streamed_upload_already_sent_gives_it_up() {
    let (fx, data, fh) = streaming(5);
    // The parts complete so far (two of 5 MiB) are sent in the background: wait for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fx.count(Operation::UploadPart) < 2 {
        assert!(std::time::Instant::now() < deadline, "parts not sent");
        std::thread::sleep(Duration::from_millis(1));
    }
    fx.fs.fallocate(fh, 10, 4096, PUNCH).unwrap();
    fx.close(fh).unwrap();
    assert_eq!(fx.data("f"), zeroed(&data, 10, 4106));
}

#[test]
fn an_allocation_that_changes_no_byte_leaves_a_server_side_copy_on_the_server() {
    let fx = fx();
    let data = bytes(3 * MIB, 6);
    fx.put_behind("src", &data);
    let new_file = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    let (src, dst) = (
        fx.open("src", 0).unwrap(),
        fx.open("dst", new_file).unwrap(),
    );
    // The kernel hands a copy over in ranges; between two, allocations that change nothing.
    let first = fx.fs.copy_file_range(src, 0, dst, 0, MIB as u64).unwrap();
    fx.fs.fallocate(dst, 0, data.len() as u64, KEEP).unwrap();
    fx.fs.fallocate(dst, 0, 100, 0).unwrap();
    let rest = data.len() as u64 - first;
    let n = fx.fs.copy_file_range(src, first, dst, first, rest);
    assert_eq!(n.unwrap(), rest, "the copy goes on");
    fx.close(dst).unwrap();
    fx.close(src).unwrap();
    assert_eq!(fx.data("dst"), data);
    assert_eq!(fx.count(Operation::CopyObject), 1);
    assert_eq!(
        fx.count(Operation::GetObject),
        0,
        "nothing fetched to settle the copy"
    );
    // A change of content fetches what the copy covered, and goes on as a write.
    let dst = fx
        .open("d2", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .unwrap();
    let src = fx.open("src", libc::O_RDONLY).unwrap();
    fx.fs.copy_file_range(src, 0, dst, 0, MIB as u64).unwrap();
    fx.fs.fallocate(dst, 10, 20, PUNCH).unwrap();
    fx.close(dst).unwrap();
    fx.close(src).unwrap();
    assert_eq!(fx.data("d2"), zeroed(&data[..MIB], 10, 30));
}

#[test]
fn a_file_grown_while_its_upload_streams_is_uploaded_with_the_zeros() {
    let (fx, data, fh) = streaming(7);
    fx.fs.fallocate(fh, 0, 20 * MIB as u64, 0).unwrap();
    fx.close(fh).unwrap();
    let mut want = data;
    want.resize(20 * MIB, 0);
    assert_eq!(fx.data("f"), want);
}
