//! The on-disk data cache, on real mounts: blocks served again after a remount without a
//! GET, a replaced object never served from the old version's blocks, the size limit held
//! while reading more than fits, and a full disk under the cache dir (reads still right from
//! S3, writes failing with ENOSPC, the mount usable afterwards). What it admits
//! (`cache::policy`): a large streamed object does not push a small hot one out; a random
//! reader of an object within its share gets the object fetched whole in the background —
//! which stops when the file is closed or the object changes — and one of a larger object
//! fetches no more than twice the blocks it touches. And memory: 16 parallel readers keep
//! the mount's peak RSS within 256 MiB.
//!
//! GETs are counted by a pass-through proxy (`common::proxy`) between the mount and the
//! server; object contents are put and checked directly on the server.

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::proxy::{Fault, Hook, Proxy, Rule};
use common::{
    assert_same, put_direct as put, random_bytes, server, server_bytes, sh, Mount, Rng, Server,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The test server's credentials with the proxy's endpoint.
fn via(proxy: &Proxy) -> Server {
    server().via(proxy.endpoint())
}

/// The ranges `[start, end)` of the GET requests for `key` the proxy has seen (a GET without a
/// range, never expected here, as a huge one).
fn get_ranges(proxy: &Proxy, bucket: &str, key: &str) -> Vec<(u64, u64)> {
    let path = format!("/{bucket}/{key}");
    proxy
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.target.split('?').next() == Some(path.as_str()))
        .map(|s| range_of(s.header("range")).unwrap_or((0, u64::MAX / 4)))
        .collect()
}

/// `bytes=A-B` → `(A, B + 1)`.
fn range_of(header: Option<&str>) -> Option<(u64, u64)> {
    let (a, b) = header?.strip_prefix("bytes=")?.split_once('-')?;
    Some((a.parse().ok()?, b.parse::<u64>().ok()? + 1))
}

/// GET requests for `key` the proxy has seen, and the bytes they asked for.
fn gets(proxy: &Proxy, bucket: &str, key: &str) -> (usize, u64) {
    let ranges = get_ranges(proxy, bucket, key);
    (ranges.len(), ranges.iter().map(|(a, b)| b - a).sum())
}

/// The GETs of `key` from a block's start, of a quarter block or more: those of whole blocks,
/// as the background fetch of a whole object sends (the tests' 4 KiB reads start elsewhere).
fn block_gets(proxy: &Proxy, bucket: &str, key: &str) -> Vec<(u64, u64)> {
    let mut r: Vec<_> = get_ranges(proxy, bucket, key)
        .into_iter()
        .filter(|(a, b)| a % MIB as u64 == 0 && b - a >= MIB as u64 / 4)
        .collect();
    r.sort();
    r
}

/// A proxy rule holding every GET of `key` of a block or more until `release` is set (at most
/// 30 s), then forwarding it.
fn hold_block_gets(key: &str, release: &Arc<AtomicBool>) -> Rule {
    let release = release.clone();
    let hook = Hook::new(move |seen| {
        let big = range_of(seen.header("range")).is_some_and(|(a, b)| b - a >= MIB as u64);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while big && !release.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    });
    Rule::new("GET", &format!("/{key}"), Fault::Before(hook))
}

/// Wait (at most 20 s) until the mount's log has a line containing `needle`.
fn wait_for_log(mount: &Mount, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if mount.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// 4 KiB reads at `count` distinct blocks of `data` (from block `first` on), each a seek,
/// checked: enough random reads for the mount to fetch an object of that many blocks
/// or fewer whole (`cache::policy::LEARN_MIN_BLOCKS`).
fn seek_and_read(f: &File, data: &[u8], first: usize, count: usize) {
    let mut buf = vec![0u8; 4 * KIB];
    for i in 0..count {
        // Never block 0: a read at the start of a file is taken for the start of a stream.
        let off = ((first + i) % (data.len() / MIB - 1) + 1) * MIB + 1000;
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert_same(
            &format!("pread at {off}"),
            &buf,
            &data[off..off + buf.len()],
        );
    }
}

/// The data cache directory of a mount of the whole of `bucket` on `cache_dir`.
fn data_dir(cache_dir: &Path, bucket: &str) -> PathBuf {
    cache_dir.join(bucket).join("data")
}

/// Block files in a data cache directory: (count, bytes). Temporary files are not counted.
fn cached_blocks(data: &Path) -> (usize, u64) {
    let (mut n, mut bytes) = (0, 0);
    let Ok(top) = std::fs::read_dir(data) else {
        return (0, 0);
    };
    for shard in top.flatten() {
        if shard.file_name() == "tmp" || !shard.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(m) = f.metadata() {
                n += 1;
                bytes += m.len();
            }
        }
    }
    (n, bytes)
}

/// Block files in a data cache directory once there are at least `n` (blocks read sequentially
/// are written behind the reader), or what there is after 10 s.
fn wait_for_blocks(data: &Path, n: usize) -> (usize, u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = cached_blocks(data);
        if found.0 >= n || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tmpfs of `size` (`mount -t tmpfs -o size=...`), unmounted on drop — also when the test
/// fails. Declare it before the `Mount` using it, so that mount is gone first.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("s3mount-cache-tmpfs.")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).expect("mkdir");
        sh(&format!(
            "mount -t tmpfs -o size={size},mode=0755 s3mount-test {}",
            path.display()
        ));
        Tmpfs { path, _dir: dir }
    }

    /// (bytes used, bytes free).
    fn usage(&self) -> (u64, u64) {
        fs_usage(&self.path)
    }
}

/// (bytes used, bytes free) of the file system holding `path`.
fn fs_usage(path: &Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: zeroed statvfs is valid; a NUL-terminated path and a valid pointer.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0, "statvfs");
    let unit = s.f_frsize as u64;
    (
        (s.f_blocks as u64 - s.f_bfree as u64) * unit,
        s.f_bavail as u64 * unit,
    )
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

#[test]
fn cached_blocks_are_served_after_a_remount() {
    let bucket = server().fresh_bucket("cache-hit");
    let data = random_bytes(6 * MIB + 12_345, 1);
    put(&bucket, "big.bin", &data);
    // A file system of its own: the 5 % free-space floor of the host's disk plays no part.
    let cache = Tmpfs::new("64m");
    let proxy = Proxy::start(&server().endpoint);
    let srv = via(&proxy);

    let mount = Mount::with_cache_dir(&srv, &bucket, &cache.path, &[]);
    assert_same(
        "first read",
        &std::fs::read(mount.join("big.bin")).unwrap(),
        &data,
    );
    let (n1, bytes1) = gets(&proxy, &bucket, "big.bin");
    assert!(n1 > 0, "first read came from the server");
    assert!(
        bytes1 >= data.len() as u64,
        "{bytes1} bytes fetched for {}",
        data.len()
    );
    assert!(mount.unmount().success());
    let (blocks, bytes) = cached_blocks(&data_dir(&cache.path, &bucket));
    assert_eq!(
        (blocks, bytes),
        (7, data.len() as u64),
        "every block kept once"
    );

    // Same cache dir, new process: no GET for the content, sequential or random.
    let mount = Mount::with_cache_dir(&srv, &bucket, &cache.path, &[]);
    assert_same(
        "read after remount",
        &std::fs::read(mount.join("big.bin")).unwrap(),
        &data,
    );
    let f = File::open(mount.join("big.bin")).unwrap();
    for (off, len) in [(3 * MIB + 100, 4 * KIB), (MIB - 10, 20), (6 * MIB, 12_345)] {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert_same(&format!("pread at {off}"), &buf, &data[off..off + len]);
    }
    drop(f);
    assert_eq!(
        gets(&proxy, &bucket, "big.bin").0,
        n1,
        "no GET once cached; log:\n{}",
        mount.log()
    );
}

#[test]
fn small_random_reads_fetch_only_what_they_need() {
    let bucket = server().fresh_bucket("cache-random");
    let data = random_bytes(8 * MIB, 2);
    put(&bucket, "r.bin", &data);
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    let f = File::open(mount.join("r.bin")).unwrap();
    let off = 5 * MIB + 77;
    let mut buf = vec![0u8; 4 * KIB];
    f.read_exact_at(&mut buf, off as u64).unwrap();
    assert_same("random 4 KiB", &buf, &data[off..off + buf.len()]);
    let (n, bytes) = gets(&proxy, &bucket, "r.bin");
    assert!(n >= 1);
    // A cache block is 1 MiB: fetching it whole for 4 KiB would be 256 times the need.
    assert!(
        bytes <= 128 * KIB as u64,
        "{bytes} bytes fetched for a 4 KiB read"
    );
}

#[test]
fn a_replaced_object_is_never_served_from_the_cache() {
    let bucket = server().fresh_bucket("cache-etag");
    let size = 3 * MIB + 5;
    let v1 = random_bytes(size, 10);
    put(&bucket, "f.bin", &v1);
    // A file system of its own: the 5 % free-space floor of the host's disk plays no part.
    let cache = Tmpfs::new("64m");
    let data = data_dir(&cache.path, &bucket);

    let mount = Mount::with_cache_dir(server(), &bucket, &cache.path, &["--metadata-ttl", "0"]);
    assert_same("v1", &std::fs::read(mount.join("f.bin")).unwrap(), &v1);
    assert_eq!(wait_for_blocks(&data, 4).0, 4, "v1 is cached");

    // Same size, other bytes, through the S3 API: the next open sees the new ETag.
    let v2 = random_bytes(size, 11);
    put(&bucket, "f.bin", &v2);
    assert_same(
        "v2 through the same mount",
        &std::fs::read(mount.join("f.bin")).unwrap(),
        &v2,
    );
    assert!(mount.unmount().success());

    // Replaced while unmounted, remounted on the cache that holds v1 and v2.
    let v3 = random_bytes(size, 12);
    put(&bucket, "f.bin", &v3);
    let mount = Mount::with_cache_dir(server(), &bucket, &cache.path, &[]);
    assert_same(
        "v3 after remount",
        &std::fs::read(mount.join("f.bin")).unwrap(),
        &v3,
    );
    assert_eq!(
        server_bytes(&server().storage_in(&bucket), "f.bin"),
        Some(v3)
    );
}

#[test]
fn a_file_being_written_is_not_cached() {
    let bucket = server().fresh_bucket("cache-dirty");
    // A file system of its own: the 5 % free-space floor of the host's disk plays no part.
    let cache = Tmpfs::new("64m");
    let data = data_dir(&cache.path, &bucket);
    let mount = Mount::with_cache_dir(server(), &bucket, &cache.path, &[]);
    let content = random_bytes(2 * MIB + 3, 20);
    let mut f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(mount.join("w.bin"))
        .unwrap();
    f.write_all(&content).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert_same("read back while open", &back, &content);
    assert_eq!(cached_blocks(&data), (0, 0), "staging content cached");
    drop(f);
    // Once uploaded and released it is an object like any other: read, it is cached. (The
    // kernel sends the release after `close` returns: a read before it still sees the staging
    // file, so read until the release has happened.)
    let mut blocks = 0;
    for _ in 0..50 {
        assert_same(
            "read after close",
            &std::fs::read(mount.join("w.bin")).unwrap(),
            &content,
        );
        blocks = cached_blocks(&data).0;
        if blocks > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(blocks, 3);
}

#[test]
fn eviction_keeps_the_cache_under_its_size() {
    let bucket = server().fresh_bucket("cache-evict");
    // Each file small enough to be cached when read front to back (an eighth of the cache at
    // most: `cache::policy`), all of them together more than the cache holds.
    let files: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            let d = random_bytes(MIB + 400 * KIB, 30 + i);
            let k = format!("f{i}.bin");
            put(&bucket, &k, &d);
            (k, d)
        })
        .collect();
    // The cache dir on a file system of its own, so its usage is measured in one call (a
    // directory walk racing with eviction could count a block twice). Big enough that the
    // 5 % free-space floor plays no part.
    let fs = Tmpfs::new("64m");
    let limit = 12 * MIB as u64;
    let proxy = Proxy::start(&server().endpoint);
    let args = ["--cache-size", "12M"];
    let mount = Mount::with_cache_dir(&via(&proxy), &bucket, &fs.path, &args);

    let (base, _) = fs.usage();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        let path = fs.path.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(fs_usage(&path).0, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    for (k, d) in &files {
        assert_same(k, &std::fs::read(mount.join(k)).unwrap(), d);
    }
    // Blocks are written behind the reader; unmounting writes what is still queued.
    assert!(mount.unmount().success());
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed).saturating_sub(base);
    let (_, now) = cached_blocks(&data_dir(&fs.path, &bucket));
    assert!(peak <= limit, "cache grew to {peak} bytes, limit {limit}");
    assert!(now <= limit && now >= 9 * MIB as u64, "{now} bytes cached");

    // The last file read is the most recently used: all there. The first was evicted.
    let mount = Mount::with_cache_dir(&via(&proxy), &bucket, &fs.path, &args);
    let (last, last_data) = &files[9];
    let before = gets(&proxy, &bucket, last).0;
    assert_same(last, &std::fs::read(mount.join(last)).unwrap(), last_data);
    assert_eq!(gets(&proxy, &bucket, last).0, before, "{last} was evicted");
    let (first, first_data) = &files[0];
    let before = gets(&proxy, &bucket, first).0;
    assert_same(
        first,
        &std::fs::read(mount.join(first)).unwrap(),
        first_data,
    );
    assert!(
        gets(&proxy, &bucket, first).0 > before,
        "{first} still cached"
    );
    drop(mount);
}

#[test]
fn a_full_disk_under_the_cache_dir_costs_caching_not_correctness() {
    let bucket = server().fresh_bucket("cache-full");
    let data = random_bytes(12 * MIB + 1, 40);
    put(&bucket, "big.bin", &data);
    let fs = Tmpfs::new("24m");
    // Fill it up.
    let filler_path = fs.path.join("filler");
    let mut filler = File::create(&filler_path).unwrap();
    let chunk = vec![0x5a; MIB];
    let err = loop {
        if let Err(e) = filler.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    filler.sync_all().unwrap();
    assert!(fs.usage().1 < 64 * KIB as u64, "full: {:?}", fs.usage());

    let mount = Mount::with_cache_dir(server(), &bucket, &fs.path, &[]);
    let data_path = data_dir(&fs.path, &bucket);
    assert_same(
        "read with a full disk",
        &std::fs::read(mount.join("big.bin")).unwrap(),
        &data,
    );
    assert_eq!(cached_blocks(&data_path), (0, 0));

    // 10 MiB free: the cache takes what it may (leaving 5 % of 24 MiB). The kernel would
    // answer the same version from its pages: dropped, so the read reaches the mount.
    let len = filler.metadata().unwrap().len();
    filler.set_len(len - 10 * MIB as u64).unwrap();
    common::drop_kernel_pages(&mount.join("big.bin"));
    assert_same(
        "read with 10 MiB free",
        &std::fs::read(mount.join("big.bin")).unwrap(),
        &data,
    );
    let (blocks, _) = wait_for_blocks(&data_path, 1);
    assert!(
        blocks > 0,
        "nothing cached with 10 MiB free; log:\n{}",
        mount.log()
    );
    assert!(
        fs.usage().1 >= MIB as u64,
        "the cache left {:?}",
        fs.usage()
    );

    // A write larger than the free space: the cache gives its space back, then ENOSPC.
    let big = random_bytes(16 * MIB, 41);
    let mut w = File::create(mount.join("too-big.bin")).unwrap();
    let err = w
        .write_all(&big)
        .expect_err("16 MiB cannot fit in 10 MiB of staging space");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOSPC),
        "{err}; log:\n{}",
        mount.log()
    );
    drop(w); // close: what was written is uploaded (as a local fs would keep it)
             // The staging file goes at `release`, which the kernel sends after close(2) returned.
    let staging = fs.path.join(&bucket).join("staging");
    let staged = || std::fs::read_dir(&staging).unwrap().count();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while staged() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(staged(), 0, "staging file left behind");
    let kept = server_bytes(&server().storage_in(&bucket), "too-big.bin").unwrap_or_default();
    assert!(
        big.starts_with(&kept),
        "the object holds other bytes than a prefix of those written"
    );

    // Still usable: a small write, and reads.
    let small = random_bytes(512 * KIB, 42);
    std::fs::write(mount.join("small.bin"), &small).unwrap();
    assert_same(
        "small.bin",
        &std::fs::read(mount.join("small.bin")).unwrap(),
        &small,
    );
    assert_eq!(
        server_bytes(&server().storage_in(&bucket), "small.bin"),
        Some(small)
    );
    assert_same(
        "read after ENOSPC",
        &std::fs::read(mount.join("big.bin")).unwrap(),
        &data,
    );
    drop(mount);
}

/// A `write` that fills the staging disk part way is short, as on a disk: the file (its size,
/// and the object its close uploads) holds exactly the bytes `write` said it took. A write
/// answered ENOSPC that left some of its bytes in the staging file made `fstat` and the object
/// longer than what the writer was told (an `O_APPEND` writer retrying after ENOSPC would
/// have duplicated them).
#[test]
fn a_write_that_fills_the_disk_is_short_and_the_file_holds_what_it_said() {
    let bucket = server().fresh_bucket("cache-short");
    let fs = Tmpfs::new("8m");
    // Free space that is no whole number of the writes below, so one of them fills it.
    std::fs::write(fs.path.join("filler"), vec![0x5a; 300 * KIB]).unwrap();
    let mount = Mount::with_cache_dir(server(), &bucket, &fs.path, &["--cache-size", "0"]);
    let data = random_bytes(12 * MIB, 43);
    let mut f = File::create(mount.join("f.bin")).unwrap();
    let mut taken = 0;
    let err = loop {
        match f.write(&data[taken..(taken + MIB).min(data.len())]) {
            Ok(0) => panic!("a write of 0 bytes"),
            Ok(n) => taken += n,
            Err(e) => break e,
        }
        assert!(taken < data.len(), "12 MiB fit in an 8 MiB tmpfs");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    let size = f.metadata().unwrap().len();
    assert_eq!(
        size,
        taken as u64,
        "fstat after ENOSPC; log:\n{}",
        mount.log()
    );
    assert_ne!(taken % MIB, 0, "no write was short");
    drop(f);
    let kept = server_bytes(&server().storage_in(&bucket), "f.bin").expect("uploaded at close");
    assert_same("the object", &kept, &data[..taken]);
    drop(mount);
}

/// `rm` of a file open elsewhere never fails for want of room in the cache dir, as on a disk.
/// A file of up to 16 MiB is fetched into a staging file at its unlink, so that its object can
/// go at once; with the cache dir's disk full that fetch failed and `rm` answered ENOSPC — just
/// when a full disk is what makes one delete files. Its object is now kept on the server until
/// the last close instead, as a larger file's is.
#[test]
fn rm_of_an_open_file_succeeds_with_the_cache_dir_full() {
    let bucket = server().fresh_bucket("cache-rm-full");
    let st = server().storage_in(&bucket);
    let fs = Tmpfs::new("8m");
    let data = random_bytes(4 * MIB, 44);
    put(&bucket, "held.bin", &data);
    let mount = Mount::with_cache_dir(server(), &bucket, &fs.path, &["--cache-size", "0"]);
    let mut f = File::open(mount.join("held.bin")).unwrap();
    let mut head = [0u8; 16];
    f.read_exact(&mut head).unwrap();
    // Less room left than the file takes.
    let (_, free) = fs.usage();
    std::fs::write(fs.path.join("filler"), vec![0x5a; free as usize - MIB]).unwrap();
    std::fs::remove_file(mount.join("held.bin"))
        .unwrap_or_else(|e| panic!("rm: {e}; log:\n{}", mount.log()));
    assert_eq!(
        std::fs::metadata(mount.join("held.bin"))
            .map_err(|e| e.kind())
            .err(),
        Some(std::io::ErrorKind::NotFound)
    );
    f.rewind().unwrap();
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    assert_same("what the descriptor reads", &all, &data);
    drop(f);
    // The last close deletes it (release is asynchronous after close).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while st.exists("held.bin").unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "not deleted");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(mount);
}

/// Distinct blocks random reads touch before the mount fetches the object whole
/// (`cache::policy::LEARN_MIN_BLOCKS`, for objects of up to 1024 blocks).
const LEARN_BLOCKS: usize = 16;

#[test]
fn a_random_reader_gets_its_object_fetched_whole_into_the_cache() {
    let bucket = server().fresh_bucket("cache-learn");
    let data = random_bytes(24 * MIB + 300 * KIB, 50);
    put(&bucket, "r.bin", &data);
    let cache = Tmpfs::new("96m");
    let proxy = Proxy::start(&server().endpoint);
    // 64 MiB of cache: objects up to half of it are fetched whole.
    let mount = Mount::with_cache_dir(&via(&proxy), &bucket, &cache.path, &["--cache-size", "64M"]);
    let f = File::open(mount.join("r.bin")).unwrap();
    seek_and_read(&f, &data, 0, LEARN_BLOCKS - 1);
    assert!(
        block_gets(&proxy, &bucket, "r.bin").is_empty(),
        "fetched whole too early"
    );
    seek_and_read(&f, &data, LEARN_BLOCKS - 1, 1);
    // The whole object lands in the cache, each block fetched once, by whole-block ranges.
    let blocks = data.len().div_ceil(MIB);
    let data_path = data_dir(&cache.path, &bucket);
    assert_eq!(
        wait_for_blocks(&data_path, blocks),
        (blocks, data.len() as u64),
        "log:\n{}",
        mount.log()
    );
    let fetched = block_gets(&proxy, &bucket, "r.bin");
    let mut covered = 0;
    for (a, b) in &fetched {
        assert_eq!(a % MIB as u64, 0, "{a}-{b} starts on a block");
        assert!(*a >= covered, "{a}-{b} fetched twice");
        covered = *b;
    }
    assert_eq!(covered, data.len() as u64, "{fetched:?}");
    // From now on random reads are answered from the cache.
    let before = gets(&proxy, &bucket, "r.bin").0;
    let mut rng = Rng(51);
    let mut buf = vec![0u8; 4 * KIB];
    for _ in 0..200 {
        let off = rng.below(data.len() - buf.len());
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert_same(
            &format!("pread at {off}"),
            &buf,
            &data[off..off + buf.len()],
        );
    }
    assert_eq!(
        gets(&proxy, &bucket, "r.bin").0,
        before,
        "a read went to the server"
    );
}

#[test]
fn a_random_reader_of_an_object_larger_than_its_share_fetches_what_it_touches() {
    let bucket = server().fresh_bucket("cache-large-random");
    let data = random_bytes(64 * MIB, 52);
    put(&bucket, "big.bin", &data);
    let cache = Tmpfs::new("32m");
    let proxy = Proxy::start(&server().endpoint);
    // 8 MiB of cache: at most 4 MiB objects are fetched whole; this one is not.
    let mount = Mount::with_cache_dir(&via(&proxy), &bucket, &cache.path, &["--cache-size", "8M"]);
    let f = File::open(mount.join("big.bin")).unwrap();
    let mut rng = Rng(53);
    let mut touched = std::collections::BTreeSet::new();
    for i in 0..16 {
        let len = [4 * KIB, 100 * KIB, 700 * KIB, 1300 * KIB][i % 4];
        let off = rng.below(data.len() - len);
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert_same(&format!("pread at {off}"), &buf, &data[off..off + len]);
        touched.extend(off / MIB..=(off + len - 1) / MIB);
    }
    drop(f);
    // Unmounted: nothing is left running that could still fetch.
    assert!(mount.unmount().success());
    let (n, bytes) = gets(&proxy, &bucket, "big.bin");
    let limit = 2 * touched.len() as u64 * MIB as u64;
    assert!(
        bytes <= limit,
        "{n} GETs of {bytes} bytes for {} blocks touched",
        touched.len()
    );
    // Else the bound would allow the whole object.
    assert!(
        2 * touched.len() < data.len() / MIB,
        "{} blocks touched",
        touched.len()
    );
}

/// A mount whose random reads of a 48 MiB object (six parts of 8 MiB; the fetch takes four
/// at once) have just started its background fetch, with the fetch's GETs held by the proxy
/// until `release` is set. Fields drop in order: the file, the mount, then its cache dir.
struct HeldFetch {
    file: File,
    mount: Mount,
    proxy: Proxy,
    bucket: String,
    release: Arc<AtomicBool>,
    _cache: Tmpfs,
}

fn held_background_fetch(hint: &str, seed: u64) -> HeldFetch {
    let bucket = server().fresh_bucket(hint);
    let data = random_bytes(48 * MIB, seed);
    put(&bucket, "r.bin", &data);
    let cache = Tmpfs::new("160m");
    let proxy = Proxy::start(&server().endpoint);
    let release = Arc::new(AtomicBool::new(false));
    proxy.add(hold_block_gets("r.bin", &release));
    let args = ["--cache-size", "128M"];
    let mount = Mount::with_cache_dir(&via(&proxy), &bucket, &cache.path, &args);
    let file = File::open(mount.join("r.bin")).unwrap();
    seek_and_read(&file, &data, 0, LEARN_BLOCKS);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while block_gets(&proxy, &bucket, "r.bin").is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    HeldFetch {
        file,
        mount,
        proxy,
        bucket,
        release,
        _cache: cache,
    }
}

#[test]
fn the_background_fetch_stops_when_the_file_is_closed() {
    let HeldFetch {
        file,
        mount,
        proxy,
        bucket,
        release,
        _cache,
    } = held_background_fetch("cache-learn-close", 54);
    drop(file);
    assert!(
        wait_for_log(
            &mount,
            "background fetch of the whole object stopped: file closed"
        ),
        "log:\n{}",
        mount.log()
    );
    release.store(true, Ordering::SeqCst);
    // The GETs in flight end; no other starts.
    let held = block_gets(&proxy, &bucket, "r.bin").len();
    assert!((1..=4).contains(&held), "{held} block GETs in flight");
    assert!(mount.unmount().success());
    assert_eq!(
        block_gets(&proxy, &bucket, "r.bin").len(),
        held,
        "the fetch went on after close"
    );
}

#[test]
fn the_background_fetch_stops_when_the_object_changes() {
    let held = held_background_fetch("cache-learn-change", 55);
    // Replaced while the fetch's GETs are in flight: they are refused (If-Match), and the
    // fetch stops with the file still open.
    put(&held.bucket, "r.bin", b"another version");
    held.release.store(true, Ordering::SeqCst);
    assert!(
        wait_for_log(&held.mount, "background fetch of the whole object stopped"),
        "log:\n{}",
        held.mount.log()
    );
    let fetched = block_gets(&held.proxy, &held.bucket, "r.bin").len();
    assert!(fetched <= 4, "{fetched} block GETs");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        block_gets(&held.proxy, &held.bucket, "r.bin").len(),
        fetched,
        "the fetch went on after the object changed"
    );
}

#[test]
fn streaming_a_large_object_does_not_push_a_small_hot_one_out() {
    let bucket = server().fresh_bucket("cache-scan");
    let hot = random_bytes(MIB + 300 * KIB, 56);
    let big = random_bytes(24 * MIB, 57);
    put(&bucket, "hot.bin", &hot);
    put(&bucket, "big.bin", &big);
    let cache = Tmpfs::new("48m");
    let proxy = Proxy::start(&server().endpoint);
    // 16 MiB of cache: streamed objects of up to 2 MiB are kept; the big one is larger than
    // the whole cache.
    let args = ["--cache-size", "16M"];
    let mount = Mount::with_cache_dir(&via(&proxy), &bucket, &cache.path, &args);
    assert_same("hot", &std::fs::read(mount.join("hot.bin")).unwrap(), &hot);
    assert_same("big", &std::fs::read(mount.join("big.bin")).unwrap(), &big);
    assert!(mount.unmount().success());
    assert_eq!(
        cached_blocks(&data_dir(&cache.path, &bucket)),
        (2, hot.len() as u64),
        "only the hot object is cached"
    );
    let mount = Mount::with_cache_dir(&via(&proxy), &bucket, &cache.path, &args);
    let before = gets(&proxy, &bucket, "hot.bin").0;
    assert_same(
        "hot again",
        &std::fs::read(mount.join("hot.bin")).unwrap(),
        &hot,
    );
    assert_eq!(
        gets(&proxy, &bucket, "hot.bin").0,
        before,
        "hot.bin was evicted"
    );
}

/// The bound on the mount's memory that the issue sets (`peak RSS ≤ 256 MiB whatever the
/// number of open files`).
const MOUNT_RSS_BOUND: u64 = 256 * MIB as u64;
/// Parallel sequential readers, each of an object of its own: each would take a read-ahead
/// window of up to 64 MiB, 16 × 32 MiB = 512 MiB if nothing bounded them across the mount.
const PARALLEL_READERS: usize = 16;
const PARALLEL_OBJECT: usize = 32 * MIB;

/// The peak resident memory (`VmHWM`) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    kib * 1024
}

#[test]
fn parallel_readers_keep_the_mount_within_its_memory_bound() {
    let bucket = server().fresh_bucket("cache-parallel");
    let data = random_bytes(PARALLEL_OBJECT, 58);
    for i in 0..PARALLEL_READERS {
        put(&bucket, &format!("p{i:02}"), &data);
    }
    // Default options: the data cache on, its write-behind queue holding part buffers too.
    let mount = Mount::with_args(server(), &bucket, &[]);
    let pid = mount.pid().expect("the mount runs");
    std::thread::scope(|s| {
        for i in 0..PARALLEL_READERS {
            let (path, data) = (mount.join(&format!("p{i:02}")), &data);
            s.spawn(move || {
                let mut f = File::open(&path).unwrap();
                let mut buf = vec![0u8; MIB];
                for (n, want) in data.chunks(MIB).enumerate() {
                    f.read_exact(&mut buf[..want.len()]).unwrap();
                    assert_same(&format!("{path:?} MiB {n}"), &buf[..want.len()], want);
                }
            });
        }
    });
    let peak = peak_rss(pid);
    assert!(
        peak <= MOUNT_RSS_BOUND,
        "peak RSS {} MiB with {PARALLEL_READERS} readers",
        peak / MIB as u64
    );
    eprintln!("peak RSS of the mount: {} MiB", peak / MIB as u64);
}
