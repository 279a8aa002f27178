//! The kernel's page cache across opens (`FOPEN_KEEP_CACHE`): a re-read of the same object
//! version comes from the kernel's pages with no GET, and never a stale byte — an object
//! replaced behind the mount, or changed through it by another handle, a write in place or a
//! truncation, is read anew at the next open. And the kernel reads ahead as much as one FUSE
//! read carries (1 MiB, raised through sysfs once mounted).
//!
//! The mounts here have no data cache (`--cache-size 0`), so a read without a GET can only
//! have come from the kernel's pages, and `--metadata-ttl 0`, so every open revalidates with
//! a HEAD. GETs are counted by a pass-through proxy (`common::proxy`); objects are put and
//! checked directly on the server.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use common::proxy::Proxy;
use common::{assert_same, put_direct as put, random_bytes, server, server_bytes, Mount};

const MIB: usize = 1024 * 1024;
const ARGS: &[&str] = &["--cache-size", "0", "--metadata-ttl", "0"];

/// GETs of the object `key` (not listings) the proxy has seen.
fn gets(proxy: &Proxy, bucket: &str, key: &str) -> usize {
    let path = format!("/{bucket}/{key}");
    proxy
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.target.split('?').next() == Some(path.as_str()))
        .count()
}

#[test]
fn a_reread_of_the_same_version_comes_from_the_page_cache() {
    let bucket = server().fresh_bucket("pages-keep");
    let data = random_bytes(3 * MIB + 17, 1);
    put(&bucket, "f.bin", &data);
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&server().via(proxy.endpoint()), &bucket, ARGS);
    let path = mount.join("f.bin");

    assert_same("first read", &std::fs::read(&path).unwrap(), &data);
    let after_first = gets(&proxy, &bucket, "f.bin");
    assert!(after_first > 0, "the first read came from the server");
    let heads = proxy.count("HEAD", "/f.bin");
    assert_same("second read", &std::fs::read(&path).unwrap(), &data);
    assert!(
        proxy.count("HEAD", "/f.bin") > heads,
        "the second open revalidated"
    );
    assert_eq!(
        gets(&proxy, &bucket, "f.bin"),
        after_first,
        "same version: the kernel's pages were kept; log:\n{}",
        mount.log()
    );
}

#[test]
fn an_object_replaced_behind_the_mount_is_read_anew() {
    let bucket = server().fresh_bucket("pages-behind");
    // Same size: the kernel has no size change to drop its pages on; only the ETag tells.
    let v1 = random_bytes(2 * MIB + 5, 2);
    let v2 = random_bytes(2 * MIB + 5, 3);
    put(&bucket, "f.bin", &v1);
    let mount = Mount::with_args(server(), &bucket, ARGS);
    let path = mount.join("f.bin");
    assert_same("v1", &std::fs::read(&path).unwrap(), &v1);
    assert_same("v1 again", &std::fs::read(&path).unwrap(), &v1);
    put(&bucket, "f.bin", &v2);
    assert_same(
        "v2 after the replacement",
        &std::fs::read(&path).unwrap(),
        &v2,
    );
    put(&bucket, "f.bin", &v1);
    assert_same("v1 once more", &std::fs::read(&path).unwrap(), &v1);
}

#[test]
fn changes_through_the_mount_are_read_at_the_next_open() {
    let bucket = server().fresh_bucket("pages-through");
    let v1 = random_bytes(2 * MIB, 4);
    put(&bucket, "f.bin", &v1);
    let mount = Mount::with_args(server(), &bucket, ARGS);
    let path = mount.join("f.bin");

    // Pages of v1 in the kernel, a reader still open; another handle replaces the content.
    let reader = File::open(&path).unwrap();
    let mut buf = vec![0u8; v1.len()];
    reader.read_exact_at(&mut buf, 0).unwrap();
    assert_same("v1", &buf, &v1);
    let v2 = random_bytes(2 * MIB, 5);
    {
        let mut w = File::create(&path).unwrap();
        w.write_all(&v2).unwrap();
    }
    drop(reader);
    assert_same(
        "v2, written by another handle",
        &std::fs::read(&path).unwrap(),
        &v2,
    );
    assert_eq!(
        server_bytes(&server().storage_in(&bucket), "f.bin"),
        Some(v2.clone())
    );

    // A write in place, without truncation.
    let mut v3 = v2.clone();
    v3[MIB..MIB + 3].copy_from_slice(b"abc");
    {
        let w = File::options().write(true).open(&path).unwrap();
        w.write_all_at(b"abc", MIB as u64).unwrap();
    }
    assert_same("v3, written in place", &std::fs::read(&path).unwrap(), &v3);

    // A truncation without opening (setattr), then the same bytes read again.
    std::fs::read(&path).unwrap();
    let f = File::options().write(true).open(&path).unwrap();
    f.set_len(MIB as u64 + 1).unwrap();
    drop(f);
    assert_same(
        "v3 truncated",
        &std::fs::read(&path).unwrap(),
        &v3[..MIB + 1],
    );
    assert_eq!(
        server_bytes(&server().storage_in(&bucket), "f.bin"),
        Some(v3[..MIB + 1].to_vec())
    );
}

#[test]
fn the_kernel_reads_ahead_as_much_as_one_fuse_read_carries() {
    let bucket = server().fresh_bucket("pages-readahead");
    let mount = Mount::with_args(server(), &bucket, ARGS);
    // Any request after FUSE_INIT raises it (the mount's start has made some).
    std::fs::metadata(mount.path()).unwrap();
    let device = s3mount::fs::mountinfo::fuse_device_at(mount.path()).expect("mounted");
    let kib = std::fs::read_to_string(format!("/sys/class/bdi/{device}/read_ahead_kb")).unwrap();
    assert_eq!(
        kib.trim(),
        (s3mount::fs::fuse::READ_AHEAD / 1024).to_string(),
        "log:\n{}",
        mount.log()
    );
}
