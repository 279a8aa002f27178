//! The kernel's page cache across opens (`FOPEN_KEEP_CACHE`): a re-read of the same object
//! version comes from the kernel's pages with no GET, and never a stale byte — an object
//! replaced behind the mount, or changed through it by another handle, a write in place or a
//! truncation, is read anew at the next open. And the kernel reads ahead as much as one FUSE
//! read carries (1 MiB, raised through sysfs once mounted).
//!
//! A random reader whose object the mount fetches whole has the kernel's pages filled as
//! the parts land (`FUSE_NOTIFY_STORE`), and put back block by block when the kernel lets
//! go of them — with the right bytes, and never over what a writer wrote
//! (`a_random_reader_gets_the_whole_object_in_the_kernels_pages`,
//! `stored_pages_never_hide_a_write`; residency is read with `mincore`). A stored page the
//! kernel's memory reclaim has taken since is not missing: that is the kernel's right on a
//! machine short of memory (seen in CI: 6 of 6220 pages gone within the second), and the
//! shadow entry it leaves (`cachestat`) tells it from a page never stored.
//!
//! The mounts here but those last two have no data cache (`--cache-size 0`), so a read without a GET can only
//! have come from the kernel's pages, and `--metadata-ttl 0`, so every open revalidates with
//! a HEAD. GETs are counted by a pass-through proxy (`common::proxy`); objects are put and
//! checked directly on the server.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::proxy::{Fault, Hook, Proxy, Rule};
use common::{assert_same, cachestat, put_direct as put, random_bytes, resident, server};
use common::{server_bytes, CacheStat, Mount};

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
    // The kernel may reclaim some of the pages between two reads (a machine short of memory;
    // seen in 1 run of 30 under a read loop larger than RAM): those are read again, with a
    // GET, and put back. So an attempt where it did is made again.
    let pages = data.len().div_ceil(PAGE);
    for _ in 0..REREAD_ATTEMPTS {
        let heads = proxy.count("HEAD", "/f.bin");
        let f = File::open(&path).unwrap();
        assert!(
            proxy.count("HEAD", "/f.bin") > heads,
            "the open revalidated"
        );
        let reclaimed = held_or_reclaimed(&f, data.len(), 0, pages).unwrap_or_else(|missing| {
            panic!(
                "same version: the open kept the pages: {missing}; log:\n{}",
                mount.log()
            )
        });
        let before = gets(&proxy, &bucket, "f.bin");
        let mut again = vec![0u8; data.len()];
        f.read_exact_at(&mut again, 0).unwrap();
        assert_same("a re-read", &again, &data);
        if reclaimed == 0 {
            assert_eq!(
                gets(&proxy, &bucket, "f.bin"),
                before,
                "same version: the kernel's pages were kept; log:\n{}",
                mount.log()
            );
            return;
        }
        eprintln!("{reclaimed} of {pages} pages reclaimed by the kernel between two reads");
    }
    panic!("the kernel reclaimed pages of the file before each of {REREAD_ATTEMPTS} re-reads");
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

/// Distinct blocks random reads touch before the mount fetches the object whole
/// (`cache::policy::LEARN_MIN_BLOCKS`).
const LEARN_BLOCKS: usize = 16;
const PAGE: usize = 4096;
/// Re-reads `a_reread_of_the_same_version_comes_from_the_page_cache` makes before it gives up
/// finding the file's pages unreclaimed.
const REREAD_ATTEMPTS: usize = 5;

/// `f` opened on a mount with a 64 MiB data cache, random reads of [`LEARN_BLOCKS`] blocks
/// made (`POSIX_FADV_RANDOM`: no read-ahead), so the object is being fetched whole.
fn random_reader(mount: &Mount, name: &str, data: &[u8]) -> File {
    let f = File::open(mount.join(name)).unwrap();
    fadvise(&f, libc::POSIX_FADV_RANDOM);
    let mut buf = vec![0u8; PAGE];
    for i in 0..LEARN_BLOCKS {
        // Never block 0: a read at the start of a file is taken for the start of a stream.
        let off = (i % (data.len() / MIB - 1) + 1) * MIB + 8 * PAGE;
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert_same(&format!("pread at {off}"), &buf, &data[off..off + PAGE]);
    }
    f
}

fn fadvise(f: &File, advice: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor; the whole file.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, advice) };
    assert_eq!(rc, 0, "posix_fadvise");
}

/// The runs `[a, b)` of pages of `f` (of `len` bytes) within `[from, to)` that the kernel does
/// not hold, each with what `cachestat` says of them.
fn unheld(f: &File, len: usize, from: usize, to: usize) -> Vec<(usize, usize, Option<CacheStat>)> {
    let held = resident(f, len);
    let mut runs = Vec::new();
    let mut i = from;
    while i < to {
        if held[i] {
            i += 1;
            continue;
        }
        let a = i;
        while i < to && !held[i] {
            i += 1;
        }
        let stat = cachestat(f, (a * PAGE) as u64, ((i - a) * PAGE) as u64);
        runs.push((a, i, stat));
    }
    runs
}

/// Whether each page `[from, to)` of `f` is in the kernel's page cache, or was and the kernel's
/// memory reclaim took it: that is the kernel's right (a machine short of memory evicts the
/// least used pages of any file, seconds after they came), and the shadow entry reclaim leaves
/// where the page was (`cachestat`'s `nr_evicted`) says the page had been there (stored, or
/// read). A page never there has no such entry, nor has one dropped by an invalidation or
/// `POSIX_FADV_DONTNEED`, so a part not stored, or pages an `open` dropped, still fail.
/// `Ok(pages reclaim took)`, or what is missing.
fn held_or_reclaimed(f: &File, len: usize, from: usize, to: usize) -> Result<u64, String> {
    let runs = unheld(f, len, from, to);
    let reclaimed = |(a, b, stat): &(usize, usize, Option<CacheStat>)| {
        stat.is_some_and(|s| s.evicted == (b - a) as u64)
    };
    if runs.iter().all(reclaimed) {
        return Ok(runs.iter().map(|(a, b, _)| (b - a) as u64).sum());
    }
    let held = resident(f, len)[from..to].iter().filter(|&&r| r).count();
    let missing: Vec<String> = runs
        .iter()
        .map(|(a, b, stat)| format!("{a}..{b} ({stat:?})"))
        .collect();
    Err(format!(
        "the kernel holds {held} of {} pages; not held: {}",
        to - from,
        missing.join(", ")
    ))
}

/// Wait (up to 10 s) until [`held_or_reclaimed`] holds for the pages `[from, to)` of `f`.
fn wait_stored(f: &File, len: usize, from: usize, to: usize) -> Result<u64, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let result = held_or_reclaimed(f, len, from, to);
        if result.is_ok() || std::time::Instant::now() > deadline {
            return result;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_random_reader_gets_the_whole_object_in_the_kernels_pages() {
    let bucket = server().fresh_bucket("pages-whole");
    let data = random_bytes(24 * MIB + 300 * 1024 + 5, 6);
    put(&bucket, "r.bin", &data);
    let cache = tempfile::tempdir().unwrap();
    let mount = Mount::with_cache_dir(server(), &bucket, cache.path(), &["--cache-size", "64M"]);
    let f = random_reader(&mount, "r.bin", &data);
    let pages = data.len().div_ceil(PAGE);
    let reclaimed = wait_stored(&f, data.len(), 0, pages)
        .unwrap_or_else(|missing| panic!("{missing}; log:\n{}", mount.log()));
    if reclaimed > 0 {
        eprintln!("{reclaimed} of {pages} pages stored and then reclaimed by the kernel");
    }
    // The bytes the kernel was given are the object's (pages reclaimed are read again, through
    // the mount).
    let mut all = vec![0u8; data.len()];
    f.read_exact_at(&mut all, 0).unwrap();
    assert_same("the pages stored", &all, &data);

    // The kernel lets go of them (as fio does at each pass): a read that reaches the mount
    // has its block put back.
    fadvise(&f, libc::POSIX_FADV_DONTNEED);
    assert!(
        resident(&f, data.len()).iter().filter(|&&r| r).count() < pages / 2,
        "the pages were dropped"
    );
    let mut buf = vec![0u8; PAGE];
    for block in [3usize, 11, 20] {
        let off = block * MIB + 5 * PAGE;
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert_same(&format!("pread at {off}"), &buf, &data[off..off + PAGE]);
        let (from, to) = (block * MIB / PAGE, (block + 1) * MIB / PAGE);
        if let Err(missing) = wait_stored(&f, data.len(), from, to) {
            panic!("block {block} put back: {missing}; log:\n{}", mount.log());
        }
        let mut whole = vec![0u8; MIB];
        f.read_exact_at(&mut whole, (block * MIB) as u64).unwrap();
        assert_same(
            &format!("block {block}"),
            &whole,
            &data[block * MIB..(block + 1) * MIB],
        );
    }
}

#[test]
fn stored_pages_never_hide_a_write() {
    let bucket = server().fresh_bucket("pages-write");
    let data = random_bytes(24 * MIB, 7);
    put(&bucket, "r.bin", &data);
    let cache = tempfile::tempdir().unwrap();
    // The background fetch's GETs (whole blocks) are held until the writes are made, so its
    // parts come to be stored into the kernel's pages after them.
    let proxy = Proxy::start(&server().endpoint);
    let release = Arc::new(AtomicBool::new(false));
    let held = release.clone();
    proxy.add(Rule::new(
        "GET",
        "/r.bin",
        Fault::Before(Hook::new(move |seen| {
            let whole_block = seen.header("range").is_some_and(|r| {
                let (a, b) = r
                    .trim_start_matches("bytes=")
                    .split_once('-')
                    .unwrap_or(("0", "0"));
                b.parse::<u64>().unwrap_or(0) - a.parse::<u64>().unwrap_or(0) >= MIB as u64 - 1
            });
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while whole_block
                && !held.load(Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            None
        })),
    ));
    let args = ["--cache-size", "64M"];
    let mount = Mount::with_cache_dir(
        &server().via(proxy.endpoint()),
        &bucket,
        cache.path(),
        &args,
    );
    let path = mount.join("r.bin");
    let reader = random_reader(&mount, "r.bin", &data);
    // Another handle writes into the object, part of a page at a time (such a page is not
    // whole in the kernel: a store would fill it with the old bytes); the reader sees each
    // write at once.
    let writer = File::options().write(true).open(&path).unwrap();
    let mut expect = data.clone();
    let mut buf = vec![0u8; 16];
    for (i, block) in (1..24).step_by(2).enumerate() {
        let off = block * MIB + 3 * PAGE + 7;
        let bytes = format!("write number {i:03}");
        writer.write_all_at(bytes.as_bytes(), off as u64).unwrap();
        expect[off..off + 16].copy_from_slice(bytes.as_bytes());
        reader.read_exact_at(&mut buf, off as u64).unwrap();
        assert_same(&format!("write {i} read back"), &buf, bytes.as_bytes());
    }
    // The fetch goes on and ends; the writes are what every reader sees.
    release.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !mount.log().contains("whole object in the cache") && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut all = vec![0u8; expect.len()];
    reader.read_exact_at(&mut all, 0).unwrap();
    assert_same("the reader after the fetch", &all, &expect);
    drop(writer);
    reader.read_exact_at(&mut all, 0).unwrap();
    assert_same("the reader after the writer's close", &all, &expect);
    drop(reader);
    assert_same("a new reader", &std::fs::read(&path).unwrap(), &expect);
    assert_eq!(
        server_bytes(&server().storage_in(&bucket), "r.bin"),
        Some(expect)
    );
}
