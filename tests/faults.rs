//! Network faults between s3mount and the server: a fault-injecting proxy
//! (`common::proxy`) sits in front of the test server and answers 503/500 (or 501 to a
//! capability, as a server without it would), resets connections, cuts or truncates reply
//! bodies, or stalls — before the server acted, or after it (the lost replies of `close`,
//! `setfattr`, `mv` and `rm`). Every result is checked on the real server (not through the
//! proxy), and every test counts the requests the proxy saw, so a fault that was never
//! injected fails the test instead of passing it silently.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{s3_error_reply, BodyRewrite, Fault, Hook, Proxy, Rule};
use common::{
    put_direct as direct_put, random_bytes, server, sh, skip_on, Mount, Server, ServerLimit,
};
use s3mount::s3::ObjectStore;
use s3mount::s3::{
    ClientConfig, PutOptions, RequestBody, RetryPolicy, S3Client, StorageError, TransferConfig,
};
use s3mount::{Headers, Storage};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

use common::{close, obj, unsaved_files};

/// The test server's credentials with the proxy's endpoint.
fn via(proxy: &Proxy) -> Server {
    server().via(proxy.endpoint())
}

/// Tries per request of the clients these tests make: they count attempts (the default
/// policy is bounded by time, 30 s, which `outages.rs` tests).
const ATTEMPTS: u32 = 6;

/// The client settings for `proxy` and `bucket`, with [`ATTEMPTS`] tries per request.
fn counted_tries(proxy: &Proxy, bucket: &str) -> ClientConfig {
    let mut cfg = ClientConfig::from_config(&via(proxy).config(Some(bucket)));
    cfg.retry = RetryPolicy {
        max_attempts: ATTEMPTS,
        ..RetryPolicy::default()
    };
    cfg
}

/// A fresh bucket, a proxy in front of the server, and a client going through it.
fn setup(hint: &str) -> (String, Proxy, Storage) {
    let bucket = server().fresh_bucket(hint);
    let proxy = Proxy::start(&server().endpoint);
    let client = S3Client::new(counted_tries(&proxy, &bucket)).unwrap();
    let storage = Storage::with_client(client, Some(bucket.clone()));
    (bucket, proxy, storage)
}

/// The object's bytes, read from the server directly.
fn direct_get(bucket: &str, key: &str) -> Option<Vec<u8>> {
    let storage = server().storage_in(bucket);
    let o = obj(bucket, key);
    match storage.get_object(&o, None, None) {
        Ok(mut g) => {
            let mut buf = Vec::new();
            g.body.read_to_end(&mut buf).expect("direct GET body");
            Some(buf)
        }
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("direct GET {o}: {e}"),
    }
}

fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first differing byte at {i}");
    }
}

#[test]
fn proxy_forwards_signed_requests_unchanged() {
    let _serial = common::one_at_a_time();
    // The client signs for 127.0.0.1:PROXYPORT; the server must accept that Host.
    let (bucket, proxy, storage) = setup("plain");
    let data = random_bytes(300 * KIB, 1);
    storage
        .bucket(&bucket)
        .put("k", RequestBody::Bytes(&data), &PutOptions::default())
        .expect("PUT through the proxy");
    let mut g = storage
        .get_object(&obj(&bucket, "k"), None, None)
        .expect("GET through the proxy");
    let mut got = Vec::new();
    g.body.read_to_end(&mut got).expect("GET body");
    assert_same("through the proxy", &got, &data);
    assert_same("direct", &direct_get(&bucket, "k").unwrap(), &data);
    assert_eq!(proxy.count("PUT", "/k"), 1);
    assert_eq!(proxy.count("GET", "/k"), 1);
    assert_eq!(proxy.faults(), 0);
    let host = proxy.seen()[0].header("host").map(str::to_string);
    assert_eq!(
        host.as_deref(),
        proxy.endpoint().strip_prefix("http://"),
        "Host header"
    );
}

#[test]
fn slowdown_burst_on_put_is_ridden_out() {
    let _serial = common::one_at_a_time();
    let (bucket, proxy, storage) = setup("slowdown");
    proxy.add(Rule::new("PUT", "/obj", Fault::SlowDown).times(3));
    let data = random_bytes(256 * KIB + 7, 2);
    storage
        .bucket(&bucket)
        .put("obj", RequestBody::Bytes(&data), &PutOptions::default())
        .expect("put_object after 3x SlowDown");
    assert_eq!(proxy.count("PUT", "/obj"), 4, "3 refused + 1 accepted");
    assert_eq!(proxy.faults(), 3);
    assert_same("put_object", &direct_get(&bucket, "obj").unwrap(), &data);

    // The seed API (`write`, a file body) too.
    proxy.add(Rule::new("PUT", "/seed", Fault::SlowDown).times(3));
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, &data).unwrap();
    storage
        .write(&local, "seed", &Headers::new())
        .expect("write after 3x SlowDown");
    assert_eq!(proxy.count("PUT", "/seed"), 4);
    assert_eq!(proxy.faults(), 6);
    assert_same("write", &direct_get(&bucket, "seed").unwrap(), &data);
}

#[test]
fn reset_mid_get_body_is_resumed() {
    let _serial = common::one_at_a_time();
    let (bucket, proxy, storage) = setup("midbody");
    let data = random_bytes(5 * MIB, 3);
    direct_put(&bucket, "big", &data);

    // download (Storage::read): cut after 100 KiB, resumed with Range + If-Match.
    proxy.add(Rule::new("GET", "/big", Fault::ResetAfterBody(100 * KIB)).times(1));
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("big");
    storage.read("big", &local).expect("read after a reset");
    assert_same("read", &std::fs::read(&local).unwrap(), &data);
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert_eq!(gets.len(), 2, "cut GET + resumed GET: {gets:?}");
    assert_eq!(gets[0].fault, Some(Fault::ResetAfterBody(100 * KIB)));
    let range = gets[1].header("range").expect("resume has a Range");
    let from: usize = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("Range {range}"));
    assert!(from > 0 && from <= 100 * KIB, "resumed at {from}");
    assert!(
        gets[1].header("if-match").is_some(),
        "resume pinned by ETag"
    );

    // read_range: same fault on a 3 MiB range starting at 1 MiB.
    proxy.add(Rule::new("GET", "/big", Fault::ResetAfterBody(100 * KIB)).times(1));
    let mut buf = vec![0u8; 3 * MIB];
    let (n, etag) = storage
        .bucket(&bucket)
        .read_range("big", MIB as u64, &mut buf, None)
        .expect("read_range after a reset");
    assert_eq!(n, 3 * MIB);
    assert!(etag.is_some());
    assert_same("read_range", &buf, &data[MIB..4 * MIB]);
    assert_eq!(proxy.count("GET", "/big"), 4);
    assert_eq!(proxy.faults(), 2);
}

#[test]
fn reset_before_response_on_upload_part_is_retried() {
    let _serial = common::one_at_a_time();
    let (bucket, proxy, storage) = setup("part");
    proxy.add(Rule::new("PUT", "partNumber=2&", Fault::ResetBeforeResponse).times(1));
    let data = random_bytes(20 * MIB, 4);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, &data).unwrap();
    let file = std::fs::File::open(&local).unwrap();
    storage
        .bucket(&bucket)
        .put_file("multi", &file, data.len() as u64, &PutOptions::default())
        .expect("put_file with one part reset");
    assert_eq!(proxy.faults(), 1);
    assert_eq!(proxy.count("PUT", "partNumber=2&"), 2, "part 2 sent twice");
    assert_eq!(proxy.count("PUT", "partNumber="), 4, "3 parts + 1 retry");
    assert_eq!(proxy.count("POST", "uploadId="), 1, "one complete");
    assert_same("multipart", &direct_get(&bucket, "multi").unwrap(), &data);
}

#[test]
fn truncated_get_body_is_an_error_never_wrong_bytes() {
    let _serial = common::one_at_a_time();
    let (bucket, proxy, storage) = setup("trunc");
    let data = random_bytes(MIB, 5);
    direct_put(&bucket, "t", &data);
    proxy.add(Rule::new("GET", "/t", Fault::TruncateBody(64 * KIB)));
    let attempts = ATTEMPTS as usize;

    // read_range: an error; what was read is not handed out as the object.
    let mut buf = vec![0u8; MIB];
    let r = storage.bucket(&bucket).read_range("t", 0, &mut buf, None);
    assert!(r.is_err(), "read_range accepted a truncated body: {r:?}");
    assert_eq!(proxy.count("GET", "/t"), attempts);

    // download: an error, and no file left behind.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("t");
    let r = storage.read("t", &local);
    assert!(r.is_err(), "read accepted a truncated body: {r:?}");
    assert!(
        !local.exists(),
        "partial download left at {}",
        local.display()
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temp file left"
    );
    assert_eq!(proxy.count("GET", "/t"), 2 * attempts);

    // The raw body: reading it to the end must fail, not return 64 KiB as if complete.
    let mut g = storage
        .get_object(&obj(&bucket, "t"), None, None)
        .expect("GET head");
    assert_eq!(g.content_length, MIB as u64);
    let mut got = Vec::new();
    let r = g.body.read_to_end(&mut got);
    assert!(
        r.is_err(),
        "body ended cleanly after {} of {MIB} bytes",
        got.len()
    );
    assert_eq!(proxy.faults(), 2 * attempts + 1);
}

#[test]
fn persistent_500_on_put_fails_after_max_attempts() {
    let _serial = common::one_at_a_time();
    let (bucket, proxy, storage) = setup("p500");
    proxy.add(Rule::new("PUT", "/never", Fault::InternalError));
    let t0 = Instant::now();
    let r =
        storage
            .bucket(&bucket)
            .put("never", RequestBody::Bytes(b"nope"), &PutOptions::default());
    let elapsed = t0.elapsed();
    match r {
        Err(StorageError::Http {
            status: 500,
            code: Some(ref c),
            ..
        }) if c == "InternalError" => {}
        other => panic!("expected 500 InternalError, got {other:?}"),
    }
    let max = ATTEMPTS as usize;
    assert_eq!(proxy.count("PUT", "/never"), max, "attempts");
    assert_eq!(proxy.faults(), max);
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert_eq!(direct_get(&bucket, "never"), None, "nothing on the server");
}

/// Write `data` to `path` and close it, returning the error of the write or of close(2) (the
/// upload happens at close; `std::fs::write` would drop that error).
fn write_and_close(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    close(f)
}

#[test]
fn mount_rides_out_slowdown_and_keeps_unsaved_data_on_failure() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("mount");
    let proxy = Proxy::start(&server().endpoint);
    let srv = via(&proxy);
    // A short budget: the upload below fails for good.
    let mount = Mount::with_args(&srv, &bucket, &["--retry-timeout", "1"]);

    // A burst of 503 on the upload at close.
    proxy.add(Rule::new("PUT", "/ok.bin", Fault::SlowDown).times(3));
    let data = random_bytes(MIB + 3, 6);
    write_and_close(&mount.join("ok.bin"), &data)
        .unwrap_or_else(|e| panic!("write after 3x SlowDown: {e}; log:\n{}", mount.log()));
    assert_eq!(proxy.faults(), 3, "{:?}", proxy.seen());
    assert_same(
        "mount upload",
        &direct_get(&bucket, "ok.bin").expect("ok.bin on the server"),
        &data,
    );

    // Every upload of this name fails: close reports EIO, the bytes are kept.
    proxy.add(Rule::new("PUT", "/lost.bin", Fault::InternalError));
    let data = random_bytes(200 * KIB + 1, 7);
    let err = write_and_close(&mount.join("lost.bin"), &data)
        .expect_err("close must fail when the upload fails");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(proxy.count("PUT", "/lost.bin") >= 2, "retried");
    assert_eq!(direct_get(&bucket, "lost.bin"), None);

    let kept = unsaved_files(&mount);
    assert_eq!(kept.len(), 1, "unsaved files: {kept:?}");
    assert_same("unsaved copy", &std::fs::read(&kept[0]).unwrap(), &data);
    let note = std::fs::read_to_string(kept[0].with_extension("key")).expect(".key note");
    assert_eq!(
        note.lines().next(),
        Some(format!("s3://{bucket}/lost.bin").as_str())
    );
    drop(mount);
}

/// `s3mount --recover` puts a copy kept after a failed upload back only over the version its
/// file was made from. Four uploads fail at close (a proxy answers 500 to their PUTs): two
/// changes of existing objects and two new files. Then another client replaces one of the
/// objects and creates one of the new names. `--recover` uploads the two copies whose objects
/// are as they were, and neither writes over the other client's objects nor drops those two
/// copies: they stay under `unsaved/`, and the exit status says so. It used to upload all four,
/// so the stale copies silently replaced the newer objects.
#[test]
fn recover_does_not_write_a_kept_copy_over_an_object_changed_since() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("recover-base");
    direct_put(&bucket, "same.txt", b"old same");
    direct_put(&bucket, "replaced.txt", b"old replaced");
    let proxy = Proxy::start(&server().endpoint);
    // A short budget: the uploads below fail for good.
    let mount = Mount::with_args(&via(&proxy), &bucket, &["--retry-timeout", "1"]);
    let names = ["same.txt", "replaced.txt", "new.txt", "taken.txt"];
    for name in names {
        proxy.add(Rule::new("PUT", &format!("/{name}"), Fault::InternalError));
        let mine = format!("mine {name}");
        let err = if name == "same.txt" {
            // A change in place (no O_TRUNC): the copy is made from the version read.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(mount.join(name))
                .unwrap();
            f.write_all(mine.as_bytes()).unwrap();
            close(f)
        } else {
            write_and_close(&mount.join(name), mine.as_bytes())
        }
        .expect_err("close must fail when the upload fails");
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{name}: {err}");
    }
    assert_eq!(unsaved_files(&mount).len(), 4, "log:\n{}", mount.log());
    wait_for_last_releases(&mount);
    // Another client, after the failures.
    direct_put(&bucket, "replaced.txt", b"theirs");
    direct_put(&bucket, "taken.txt", b"theirs");

    let (ok, said) = recover(&mount);
    assert!(!ok, "two copies are left: {said}");
    assert!(
        said.contains("recover: 2 uploaded, 2 left (2 whose object changed since)"),
        "{said}"
    );
    assert_eq!(
        direct_get(&bucket, "same.txt").as_deref(),
        Some(&b"mine same.txt"[..])
    );
    assert_eq!(
        direct_get(&bucket, "new.txt").as_deref(),
        Some(&b"mine new.txt"[..])
    );
    assert_eq!(
        direct_get(&bucket, "replaced.txt").as_deref(),
        Some(&b"theirs"[..]),
        "{said}"
    );
    assert_eq!(
        direct_get(&bucket, "taken.txt").as_deref(),
        Some(&b"theirs"[..]),
        "{said}"
    );
    let mut left: Vec<Vec<u8>> = unsaved_files(&mount)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [b"mine replaced.txt".to_vec(), b"mine taken.txt".to_vec()],
        "{said}"
    );
    for name in ["replaced.txt", "taken.txt"] {
        assert!(
            said.contains(&format!("s3://{bucket}/{name}: not uploaded")),
            "{name}: {said}"
        );
    }
}

/// Wait (up to 10 s) until the mount has let go of every copy it kept under `unsaved/`: the
/// last release comes after `close` returns, and tries the upload once more (for up to the
/// retry budget) before it does; `--recover` meanwhile leaves a copy alone, as still open.
fn wait_for_last_releases(mount: &Mount) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in unsaved_files(mount) {
        let f = std::fs::File::open(&p).unwrap();
        while f.try_lock().is_err() {
            assert!(Instant::now() < deadline, "{} still held", p.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `s3mount --recover` over `mount`'s cache dir, straight to the server: did it exit 0, and
/// what it said (stdout, then stderr).
fn recover(mount: &Mount) -> (bool, String) {
    let srv = server();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_s3mount"))
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", &srv.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
        .args([
            "--recover",
            "--endpoint",
            &srv.endpoint,
            "--region",
            &srv.region,
        ])
        .arg("--cache-dir")
        .arg(mount.cache_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

/// A program whose fsync of one descriptor failed (the upload's PUT answered 500) and that goes
/// on writing through another: the copy kept under `unsaved/` is a hard link to the staging
/// file it is writing. `s3mount --recover` run meanwhile leaves it alone, says why, exits
/// non-zero and keeps it; the mount uploads the whole file at close. It used to upload the
/// half-written bytes.
#[test]
fn recover_leaves_alone_a_copy_whose_file_is_still_open() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("recover-open");
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &["--retry-timeout", "1"]);
    let path = mount.join("live.txt");
    let mut one = std::fs::File::create(&path).unwrap();
    let mut two = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    proxy.add(Rule::new("PUT", "/live.txt", Fault::InternalError));
    one.write_all(b"first half").unwrap();
    let err = one
        .sync_all()
        .expect_err("fsync must fail when the upload fails");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(unsaved_files(&mount).len(), 1, "log:\n{}", mount.log());
    two.write_all(b"first half, sec").unwrap();
    two.sync_data().ok(); // reaches the staging file (the upload fails again)

    let (ok, said) = recover(&mount);
    assert!(!ok, "a copy is left: {said}");
    assert!(
        said.contains("recover: 0 uploaded, 1 left (1 still open in a running s3mount)")
            && said.contains(&format!(
                "s3://{bucket}/live.txt: not uploaded: a running s3mount still has the file open"
            )),
        "{said}"
    );
    assert_eq!(direct_get(&bucket, "live.txt"), None, "{said}");
    assert_eq!(unsaved_files(&mount).len(), 1, "the copy stays");

    proxy.clear_rules();
    two.write_all(b"ond half").unwrap();
    close(one).unwrap();
    close(two).unwrap_or_else(|e| panic!("{e}; log:\n{}", mount.log()));
    assert_eq!(
        direct_get(&bucket, "live.txt").as_deref(),
        Some(&b"first half, second half"[..])
    );
    assert_eq!(unsaved_files(&mount), Vec::<std::path::PathBuf>::new());
}

#[test]
fn stalled_get_times_out_and_is_retried() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("stall");
    let data = random_bytes(512 * KIB, 8);
    direct_put(&bucket, "s", &data);
    let proxy = Proxy::start(&server().endpoint);
    let mut cfg = counted_tries(&proxy, &bucket);
    cfg.io_timeout = Duration::from_millis(500);
    let storage = Storage::with_client(S3Client::new(cfg).unwrap(), Some(bucket.clone()));
    let stall = Duration::from_secs(5);
    proxy.add(Rule::new("GET", "/s", Fault::Stall(stall)).times(1));

    let t0 = Instant::now();
    let mut buf = vec![0u8; data.len()];
    let (n, _) = storage
        .bucket(&bucket)
        .read_range("s", 0, &mut buf, None)
        .expect("read_range after a stall");
    let elapsed = t0.elapsed();
    assert_eq!(n, data.len());
    assert_same("after stall", &buf, &data);
    assert_eq!(proxy.count("GET", "/s"), 2, "stalled + retried");
    assert_eq!(proxy.faults(), 1);
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < stall,
        "took {elapsed:?}: the timeout did not cut the stall"
    );
}

// ---- lost replies of the writes behind close ------------------------------------------------
//
// A write can be applied by the server while its reply never reaches the mount. These tests lose
// (or mangle) the reply of the write `close` waits for and check that `close` succeeds when the
// server holds the write, fails with EEXIST only for another client's object, and that the bytes
// on the server are exactly the file's. moto itself answers a repeated CompleteMultipartUpload
// with its result again (as AWS does); MinIO, Ceph and others answer 404 NoSuchUpload, which the
// proxy plays for the second completion of a key, so resending blindly fails these tests.

/// moto 5.2.1's root element of a CompleteMultipartUpload reply.
const MOTO_521_ROOT: &str = "CompleteMultipartUploadResponse";

/// A local file of `len` random bytes (for `cp`/`dd` into the mount) and its content.
fn local_file(len: usize, seed: u64) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.bin");
    let data = random_bytes(len, seed);
    std::fs::write(&path, &data).unwrap();
    (dir, path, data)
}

/// `cp src dst` (GNU cp creates a new destination with O_EXCL), which must succeed.
fn cp_into(mount: &Mount, src: &Path, dst: &Path) {
    let out = std::process::Command::new("cp")
        .arg(src)
        .arg(dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cp {}: {}; log:\n{}",
        dst.display(),
        String::from_utf8_lossy(&out.stderr),
        mount.log()
    );
}

/// Lose the reply of the first CompleteMultipartUpload of `key` after the server acted, and
/// answer a second one 404 NoSuchUpload as MinIO and Ceph would (without forwarding it).
fn lose_first_completion(proxy: &Proxy, key: &str) {
    lose_first_completion_by(proxy, key, Fault::ResetBeforeResponse);
}

/// [`lose_first_completion`], the reply lost by `fault`.
fn lose_first_completion_by(proxy: &Proxy, key: &str, fault: Fault) {
    let target = format!("/{key}?uploadId=");
    proxy.add(Rule::new("POST", &target, fault).times(1));
    let no_such_upload = Hook::new(|_| {
        Some(s3_error_reply(
            "404 Not Found",
            "NoSuchUpload",
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            0,
        ))
    });
    proxy.add(Rule::new("POST", &target, Fault::Before(no_such_upload)).times(1));
}

/// Uploads of `key` the proxy saw: (CreateMultipartUpload, CompleteMultipartUpload, PUTs of
/// content). A PUT with `partNumber` is a part; an empty PUT is the creation of the file (`dd`
/// closes the descriptor it created before it writes).
fn uploads_of(proxy: &Proxy, key: &str) -> (usize, usize, usize) {
    let path = format!("/{key}");
    let seen = proxy.seen();
    let of_key = |s: &&common::proxy::Seen| {
        s.target
            .split('?')
            .next()
            .is_some_and(|p| p.ends_with(&path))
    };
    let creates = seen
        .iter()
        .filter(of_key)
        .filter(|s| s.method == "POST" && s.target.contains("?uploads="))
        .count();
    let completes = seen
        .iter()
        .filter(of_key)
        .filter(|s| s.method == "POST" && s.target.contains("uploadId="))
        .count();
    let puts = seen
        .iter()
        .filter(of_key)
        .filter(|s| s.method == "PUT" && !s.target.contains("partNumber="))
        .filter(|s| s.header("content-length") != Some("0"))
        .count();
    (creates, completes, puts)
}

#[test]
fn cp_of_a_large_file_survives_moto_521_completion_replies() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("moto521");
    let proxy = Proxy::start(&server().endpoint);
    let rewritten = Arc::new(AtomicUsize::new(0));
    let count = rewritten.clone();
    // What moto 5.2.1 sends: the same document under another root element.
    proxy.add(Rule::new(
        "POST",
        "uploadId=",
        Fault::RewriteBody(BodyRewrite::new(move |body| {
            let text = String::from_utf8_lossy(body);
            if text.contains("<CompleteMultipartUploadResult") {
                count.fetch_add(1, Ordering::SeqCst);
            }
            text.replace("CompleteMultipartUploadResult", MOTO_521_ROOT)
                .into_bytes()
        })),
    ));
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    let (_dir, src, data) = local_file(20 * MIB + 5, 11);
    // GNU cp creates a new destination with O_EXCL: the upload carries If-None-Match: *.
    let dst = mount.join("big.bin");
    cp_into(&mount, &src, &dst);
    assert_eq!(rewritten.load(Ordering::SeqCst), 1, "{:?}", proxy.seen());
    assert_same(
        "through the S3 API",
        &direct_get(&bucket, "big.bin").expect("big.bin on the server"),
        &data,
    );
    assert_eq!(
        uploads_of(&proxy, "big.bin"),
        (1, 1, 0),
        "one streamed upload, no second one"
    );
    assert_eq!(unsaved_files(&mount), Vec::<std::path::PathBuf>::new());
    assert_same("through the mount", &std::fs::read(&dst).unwrap(), &data);
}

#[test]
fn a_lost_completion_of_a_streamed_upload_is_not_uploaded_twice() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("lostcomplete");
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    let (_dir, src, data) = local_file(40 * MIB + 3, 12);
    lose_first_completion(&proxy, "by-cp.bin");
    lose_first_completion(&proxy, "by-dd.bin");
    // cp: O_EXCL, so the completion carries If-None-Match: * (a second upload would meet the
    // first one's object: EEXIST); dd: O_TRUNC, unconditional.
    sh(&format!(
        "cp {} {}",
        src.display(),
        mount.join("by-cp.bin").display()
    ));
    sh(&format!(
        "dd if={} of={} bs=1M status=none",
        src.display(),
        mount.join("by-dd.bin").display()
    ));
    for key in ["by-cp.bin", "by-dd.bin"] {
        assert_same(
            key,
            &direct_get(&bucket, key).unwrap_or_else(|| panic!("{key} on the server")),
            &data,
        );
        assert_eq!(
            uploads_of(&proxy, key),
            (1, 1, 0),
            "{key}: the completion whose reply was lost is the only one; log:\n{}",
            mount.log()
        );
    }
    let resets = proxy
        .seen()
        .iter()
        .filter(|s| s.fault == Some(Fault::ResetBeforeResponse))
        .count();
    assert_eq!(resets, 2, "both completions lost their reply");
    assert_eq!(unsaved_files(&mount), Vec::<std::path::PathBuf>::new());
}

#[test]
fn a_lost_completion_of_a_whole_file_multipart_upload_is_a_success() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("lostwhole");
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    lose_first_completion(&proxy, "whole.bin");
    let mut data = random_bytes(24 * MIB + 1, 13);
    let path = mount.join("whole.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&data).unwrap();
    // Not front to back any more: the streamed upload is given up, close uploads the whole
    // file (a parallel multipart upload, its completion's reply lost).
    let patch = b"changed at offset 0";
    std::os::unix::fs::FileExt::write_all_at(&f, patch, 0).unwrap();
    data[..patch.len()].copy_from_slice(patch);
    close(f).unwrap_or_else(|e| panic!("close: {e}; log:\n{}", mount.log()));
    assert_same(
        "through the S3 API",
        &direct_get(&bucket, "whole.bin").expect("whole.bin on the server"),
        &data,
    );
    let (creates, completes, puts) = uploads_of(&proxy, "whole.bin");
    assert_eq!(
        (creates, completes, puts),
        (2, 1, 0),
        "the given-up stream and the whole-file upload, completed once"
    );
    assert_eq!(proxy.faults(), 1, "{:?}", proxy.seen());
    assert_eq!(unsaved_files(&mount), Vec::<std::path::PathBuf>::new());
}

/// `open(O_CREAT | O_EXCL)`, write `data`, close: the error of any step.
fn create_exclusive(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(data)?;
    close(f)
}

#[test]
fn an_exclusive_create_whose_put_reply_is_lost_closes_without_eexist() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("lostexcl");
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);

    // The server stores the PUT (If-None-Match: *), the reply is lost.
    proxy.add(Rule::new("PUT", "/mine.bin", Fault::ResetBeforeResponse).times(1));
    let data = random_bytes(300 * KIB + 1, 14);
    create_exclusive(&mount.join("mine.bin"), &data)
        .unwrap_or_else(|e| panic!("exclusive create: {e}; log:\n{}", mount.log()));
    assert_same(
        "mine.bin",
        &direct_get(&bucket, "mine.bin").expect("mine.bin on the server"),
        &data,
    );
    assert_eq!(proxy.count("PUT", "/mine.bin"), 1, "looked, not sent again");
    assert_eq!(proxy.faults(), 1);
    if skip_on(ServerLimit::IgnoresIfNoneMatch) {
        return; // the rest needs the server to refuse an exclusive create over an object
    }

    // A real conflict: another client creates the object between create and close.
    let theirs = random_bytes(1000, 15);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mount.join("taken.bin"))
        .unwrap();
    f.write_all(&data).unwrap();
    direct_put(&bucket, "taken.bin", &theirs);
    let err = close(f).expect_err("close over another client's object");
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
    assert_eq!(
        direct_get(&bucket, "taken.bin").as_deref(),
        Some(&theirs[..])
    );

    // The same with the reply lost: the other client's object appears and the mount's PUT
    // never gets an answer. Looking finds their object: still EEXIST, theirs kept.
    let b = bucket.clone();
    let theirs2 = theirs.clone();
    let meanwhile = Hook::new(move |_| {
        direct_put(&b, "taken2.bin", &theirs2);
        Some(Vec::new()) // the connection closes without a reply
    });
    proxy.add(Rule::new("PUT", "/taken2.bin", Fault::Before(meanwhile)).times(1));
    let err = create_exclusive(&mount.join("taken2.bin"), &data)
        .expect_err("close over another client's object");
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
    assert_eq!(
        direct_get(&bucket, "taken2.bin").as_deref(),
        Some(&theirs[..])
    );
    // The look came right after the lost reply: no PUT in between. (The file's release,
    // asynchronous after close, may try its upload once more and meet their object again.)
    let taken2: Vec<(String, bool)> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.target.ends_with("/taken2.bin"))
        .map(|s| (s.method, s.fault.is_some()))
        .collect();
    let lost = taken2
        .iter()
        .position(|(m, faulted)| m == "PUT" && *faulted)
        .expect("the faulted PUT");
    assert_eq!(
        taken2.get(lost + 1).map(|(m, _)| m.as_str()),
        Some("HEAD"),
        "looked before sending again: {taken2:?}"
    );
    // Both refused uploads are kept, nothing lost.
    let kept = unsaved_files(&mount);
    assert_eq!(kept.len(), 2, "{kept:?}");
    for k in &kept {
        assert_same("kept", &std::fs::read(k).unwrap(), &data);
    }
}

/// A storage through `proxy` that gives up on a silent socket after `io_timeout`, with 5 MiB
/// parts above 5 MiB (so a multipart upload is quick to make).
fn storage_with(proxy: &Proxy, bucket: &str, io_timeout: Duration) -> Storage {
    let mut cfg = counted_tries(proxy, bucket);
    cfg.io_timeout = io_timeout;
    Storage::with_client(S3Client::new(cfg).unwrap(), Some(bucket.to_string())).with_transfer(
        TransferConfig {
            multipart_threshold: 5 * MIB as u64,
            part_size: 5 * MIB as u64,
            ..TransferConfig::default()
        },
    )
}

#[test]
fn writes_whose_reply_times_out_after_the_server_acted_are_not_redone() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("timedout");
    let proxy = Proxy::start(&server().endpoint);
    // Generous for a loaded machine, short for a test: the stall outlasts it.
    let timeout = Duration::from_secs(2);
    let storage = storage_with(&proxy, &bucket, timeout);
    let stall = Fault::StallAfterForward(3 * timeout);
    let exclusive = PutOptions {
        if_none_match_any: true,
        ..PutOptions::default()
    };

    proxy.add(Rule::new("PUT", "/small", stall.clone()).times(1));
    let data = random_bytes(100 * KIB, 16);
    let etag = storage
        .bucket(&bucket)
        .put("small", RequestBody::Bytes(&data), &exclusive)
        .expect("conditional PUT whose reply timed out");
    assert_eq!(
        etag.as_deref(),
        Some(format!("{:x}", md5_of(&data)).as_str())
    );
    assert_same("small", &direct_get(&bucket, "small").unwrap(), &data);
    assert_eq!(proxy.count("PUT", "/small"), 1);

    lose_first_completion_by(&proxy, "large", stall.clone());
    let data = random_bytes(11 * MIB, 17);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), &data).unwrap();
    let file = std::fs::File::open(dir.path().join("f")).unwrap();
    storage
        .bucket(&bucket)
        .put_file("large", &file, data.len() as u64, &exclusive)
        .expect("multipart upload whose completion reply timed out");
    assert_same("large", &direct_get(&bucket, "large").unwrap(), &data);
    assert_eq!(uploads_of(&proxy, "large"), (1, 1, 0));

    // A metadata self-copy (of the multipart object: its copy gets a new ETag on some
    // servers, so a blind resend pinned to the old one would be refused) and a delete.
    let copy = Rule::new("PUT", "/large", stall.clone()).with_header("x-amz-copy-source");
    proxy.add(copy.times(1));
    let mut headers = Headers::new();
    headers.insert("x-amz-meta-state", "processed");
    storage
        .update_metadata("large", &headers)
        .expect("metadata update whose reply timed out");
    let info = server()
        .storage()
        .head_object(&obj(&bucket, "large"))
        .unwrap();
    assert_eq!(info.metadata.get("state"), Some("processed"));
    assert_eq!(copies_to(&proxy, "large"), 1);
    proxy.add(Rule::new("DELETE", "/large", stall).times(1));
    storage
        .delete("large")
        .expect("delete whose reply timed out");
    assert_eq!(direct_get(&bucket, "large"), None);
    assert_eq!(deletes_of(&proxy, "large"), 1);
    assert_eq!(proxy.faults(), 4, "{:?}", proxy.seen());
}

fn md5_of(data: &[u8]) -> impl std::fmt::LowerHex {
    use md5::Digest;
    md5::Md5::digest(data)
}

#[test]
fn a_lost_completion_on_a_server_whose_etags_are_not_md5s() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("opaque");
    let proxy = Proxy::start(&server().endpoint);
    let storage = storage_with(&proxy, &bucket, client_default_timeout());
    // The object's ETag, as HEAD gives it, is no MD5 of anything (as with SSE-KMS).
    proxy.add(Rule::new(
        "HEAD",
        "/opaque.bin",
        Fault::SetHeader(
            "ETag".into(),
            "\"e7d1a1cbd2f0c3b9a8e4d6f5c7b9a0e1-2\"".into(),
        ),
    ));
    lose_first_completion(&proxy, "opaque.bin");
    let data = random_bytes(7 * MIB, 18);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), &data).unwrap();
    let file = std::fs::File::open(dir.path().join("f")).unwrap();
    let opts = PutOptions {
        metadata: [("mtime", "1700000000.5")].into_iter().collect(),
        if_none_match_any: true,
        ..PutOptions::default()
    };
    storage
        .bucket(&bucket)
        .put_file("opaque.bin", &file, data.len() as u64, &opts)
        .expect("the upload is gone and the object has its size and metadata: completed");
    assert_same(
        "opaque.bin",
        &direct_get(&bucket, "opaque.bin").unwrap(),
        &data,
    );
    assert_eq!(uploads_of(&proxy, "opaque.bin"), (1, 1, 0));
    assert!(
        proxy.count("GET", "uploadId=") >= 1,
        "the ETag could not settle it; ListParts did: {:?}",
        proxy.seen()
    );
}

fn client_default_timeout() -> Duration {
    s3mount::s3::client::DEFAULT_IO_TIMEOUT
}

// ---- lost replies of copies and deletes: setfattr, mv, rm -----------------------------------
//
// A metadata change is a self-copy, a rename a copy and a delete, `rm` a delete: each reply is
// lost after the server acted (reset, or a reply body cut short), and the file operation must
// end as if it had arrived — the server checked through the S3 API, and the proxy's count
// showing that nothing was sent twice (a blind resend would copy or delete again).

/// Requests to `key` the proxy saw that `pick` picks.
fn requests_to(proxy: &Proxy, key: &str, pick: impl Fn(&common::proxy::Seen) -> bool) -> usize {
    let path = format!("/{key}");
    let of_key = |s: &&common::proxy::Seen| {
        s.target
            .split('?')
            .next()
            .is_some_and(|p| p.ends_with(&path))
    };
    proxy
        .seen()
        .iter()
        .filter(of_key)
        .filter(|s| pick(s))
        .count()
}

/// CopyObject requests to `key` the proxy saw.
fn copies_to(proxy: &Proxy, key: &str) -> usize {
    requests_to(proxy, key, |s| {
        s.method == "PUT" && s.header("x-amz-copy-source").is_some()
    })
}

/// Lose the reply of the next CopyObject to `key` by `fault` (after the server copied).
fn lose_copy_reply(key: &str, fault: Fault) -> Rule {
    Rule::new("PUT", &format!("/{key}"), fault)
        .with_header("x-amz-copy-source")
        .times(1)
}

/// DeleteObject requests of `key` the proxy saw.
fn deletes_of(proxy: &Proxy, key: &str) -> usize {
    requests_to(proxy, key, |s| s.method == "DELETE")
}

/// Upload `data` as `key` in parts (a multipart object, whose copies get a new ETag on some
/// servers), directly.
fn direct_put_multipart(bucket: &str, key: &str, data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), data).unwrap();
    let file = std::fs::File::open(dir.path().join("f")).unwrap();
    server()
        .storage_in(bucket)
        .bucket(bucket)
        .put_file(key, &file, data.len() as u64, &PutOptions::default())
        .unwrap_or_else(|e| panic!("direct multipart PUT {key}: {e}"));
}

#[test]
fn a_setfattr_whose_copy_reply_is_lost_is_not_redone() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("lostmeta");
    let big = random_bytes(20 * MIB + 3, 21);
    let small = random_bytes(100 * KIB, 22);
    direct_put_multipart(&bucket, "reset.bin", &big);
    direct_put(&bucket, "cut.bin", &small);
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    proxy.add(lose_copy_reply("reset.bin", Fault::ResetBeforeResponse));
    proxy.add(lose_copy_reply("cut.bin", Fault::TruncateBody(20)));
    for (name, data) in [("reset.bin", &big), ("cut.bin", &small)] {
        common::set_xattr(&mount.join(name), "user.x-amz-meta-color", b"blue", 0)
            .unwrap_or_else(|e| panic!("setfattr {name}: errno {e}; log:\n{}", mount.log()));
        let info = server().storage().head_object(&obj(&bucket, name)).unwrap();
        assert_eq!(info.metadata.get("color"), Some("blue"), "{name}");
        assert_same(name, &direct_get(&bucket, name).unwrap(), data);
        assert_eq!(
            copies_to(&proxy, name),
            1,
            "{name}: looked, not copied again"
        );
        // The mount follows the copy's ETag: the file reads whole.
        assert_same(name, &std::fs::read(mount.join(name)).unwrap(), data);
    }
    assert_eq!(proxy.faults(), 2, "{:?}", proxy.seen());
}

#[test]
fn a_rename_whose_copy_and_delete_replies_are_lost_moves_the_file_once() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("lostmv");
    let data = random_bytes(300 * KIB, 23);
    direct_put(&bucket, "src.bin", &data);
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    proxy.add(lose_copy_reply("dst.bin", Fault::ResetBeforeResponse));
    proxy.add(Rule::new("DELETE", "/src.bin", Fault::ResetBeforeResponse).times(1));
    sh(&format!(
        "mv {} {}",
        mount.join("src.bin").display(),
        mount.join("dst.bin").display()
    ));
    assert_same("dst.bin", &direct_get(&bucket, "dst.bin").unwrap(), &data);
    assert_eq!(direct_get(&bucket, "src.bin"), None);
    assert_eq!(copies_to(&proxy, "dst.bin"), 1);
    assert_eq!(deletes_of(&proxy, "src.bin"), 1);
    assert_eq!(proxy.faults(), 2);
    assert_same(
        "through the mount",
        &std::fs::read(mount.join("dst.bin")).unwrap(),
        &data,
    );
}

#[test]
fn a_directory_rename_whose_replies_are_lost_moves_every_key_once() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("lostmvdir");
    let keys = ["a", "b", "sub/c", "sub/d"];
    let contents: Vec<Vec<u8>> = (0..keys.len())
        .map(|i| random_bytes(50 * KIB + i, 30 + i as u64))
        .collect();
    for (k, data) in keys.iter().zip(&contents) {
        direct_put(&bucket, &format!("d/{k}"), data);
    }
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    proxy.add(lose_copy_reply("e/a", Fault::ResetBeforeResponse));
    proxy.add(lose_copy_reply("e/sub/c", Fault::TruncateBody(20)));
    proxy.add(Rule::new("POST", "?delete", Fault::ResetBeforeResponse).times(1));
    sh(&format!(
        "mv {} {}",
        mount.join("d").display(),
        mount.join("e").display()
    ));
    for (k, data) in keys.iter().zip(&contents) {
        let moved = format!("e/{k}");
        assert_same(&moved, &direct_get(&bucket, &moved).unwrap(), data);
        assert_eq!(direct_get(&bucket, &format!("d/{k}")), None, "d/{k}");
        assert_eq!(copies_to(&proxy, &moved), 1, "{moved}: copied once");
    }
    assert_eq!(proxy.count("POST", "?delete"), 1, "one DeleteObjects");
    assert_eq!(proxy.faults(), 3, "{:?}", proxy.seen());
    assert_eq!(std::fs::read_dir(mount.join("d")).map(|_| ()).ok(), None);
}

#[test]
fn rm_and_rm_r_whose_delete_replies_are_lost_end_as_if_they_had_arrived() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("lostrm");
    let data = random_bytes(10 * KIB, 40);
    for key in ["f.bin", "theirs.bin", "t/a", "t/b", "t/sub/c"] {
        direct_put(&bucket, key, &data);
    }
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    proxy.add(Rule::new("DELETE", "/f.bin", Fault::ResetBeforeResponse).times(1));
    proxy.add(Rule::new("DELETE", "/t/a", Fault::ResetBeforeResponse).times(1));
    proxy.add(Rule::new("DELETE", "/t/sub/c", Fault::ResetBeforeResponse).times(1));
    // The server deletes, the reply is lost, and another client writes the key before the
    // mount looks: theirs must survive.
    let theirs = random_bytes(2000, 41);
    let (b, t) = (bucket.clone(), theirs.clone());
    let meanwhile = Hook::new(move |_| {
        let direct = server().storage_in(&b);
        direct.delete_object(&obj(&b, "theirs.bin")).unwrap();
        direct_put(&b, "theirs.bin", &t);
        Some(Vec::new()) // the connection closes without a reply
    });
    proxy.add(Rule::new("DELETE", "/theirs.bin", Fault::Before(meanwhile)).times(1));

    sh(&format!("rm {}", mount.join("f.bin").display()));
    assert_eq!(direct_get(&bucket, "f.bin"), None);
    assert_eq!(deletes_of(&proxy, "f.bin"), 1);

    sh(&format!("rm {}", mount.join("theirs.bin").display()));
    assert_eq!(
        direct_get(&bucket, "theirs.bin").as_deref(),
        Some(&theirs[..]),
        "another client's object is never deleted by a second attempt"
    );
    assert_eq!(deletes_of(&proxy, "theirs.bin"), 1);

    sh(&format!("rm -r {}", mount.join("t").display()));
    for key in ["t/a", "t/b", "t/sub/c"] {
        assert_eq!(direct_get(&bucket, key), None, "{key}");
        assert_eq!(deletes_of(&proxy, key), 1, "{key}: deleted once");
    }
    assert_eq!(proxy.faults(), 4, "{:?}", proxy.seen());
}

#[test]
fn a_truncated_completion_reply_is_not_uploaded_twice() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("cutcomplete");
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);
    let (_dir, src, data) = local_file(20 * MIB + 9, 42);
    lose_first_completion_by(&proxy, "cut.bin", Fault::TruncateBody(40));
    sh(&format!(
        "cp {} {}",
        src.display(),
        mount.join("cut.bin").display()
    ));
    assert_same("cut.bin", &direct_get(&bucket, "cut.bin").unwrap(), &data);
    assert_eq!(
        uploads_of(&proxy, "cut.bin"),
        (1, 1, 0),
        "log:\n{}",
        mount.log()
    );
    assert_eq!(unsaved_files(&mount), Vec::<std::path::PathBuf>::new());
}

// ---- a server that rejects capabilities -----------------------------------------------------

/// Which capability a request uses that the lean server of
/// [`a_server_answering_501_to_capabilities_gets_the_weaker_behaviours`] rejects.
fn rejected_capability(s: &common::proxy::Seen) -> Option<&'static str> {
    let has = |h: &str| s.header(h).is_some();
    match s.method.as_str() {
        "PUT" | "POST" if has("if-none-match") => Some("If-None-Match"),
        "GET" if has("if-match") => Some("If-Match on GET"),
        "PUT" if s.header("x-amz-metadata-directive") == Some("REPLACE") => Some("REPLACE"),
        "PUT" if has("x-amz-copy-source-if-match") => Some("x-amz-copy-source-if-match"),
        "POST" if s.target.contains("?delete") => Some("DeleteObjects"),
        _ => None,
    }
}

#[test]
fn a_server_answering_501_to_capabilities_gets_the_weaker_behaviours() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("lean");
    let seeded = random_bytes(200 * KIB, 50);
    direct_put(&bucket, "seeded.bin", &seeded);
    for k in ["d/x", "d/y"] {
        direct_put(&bucket, k, &seeded);
    }
    let proxy = Proxy::start(&server().endpoint);
    let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = refused.clone();
    let lean = Hook::new(move |s| {
        let cap = rejected_capability(s)?;
        log.lock().unwrap().push(cap);
        Some(s3_error_reply(
            "501 Not Implemented",
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
            0,
        ))
    });
    proxy.add(Rule::new("*", "", Fault::Before(lean)));
    let mount = Mount::with_args(&via(&proxy), &bucket, &[]);

    // O_EXCL creates (cp), one PUT and one streamed multipart upload.
    let (_dir, small_src, small) = local_file(300 * KIB, 51);
    let (_dir2, big_src, big) = local_file(20 * MIB + 1, 52);
    for (src, name) in [(&small_src, "small.bin"), (&big_src, "big.bin")] {
        cp_into(&mount, src, &mount.join(name));
    }
    assert_same(
        "small.bin",
        &direct_get(&bucket, "small.bin").unwrap(),
        &small,
    );
    assert_same("big.bin", &direct_get(&bucket, "big.bin").unwrap(), &big);
    // A read (ranged GETs pinned to the version), a metadata change (a re-upload), a rename
    // of a file and of a directory, rm -r.
    assert_same(
        "cat",
        &std::fs::read(mount.join("seeded.bin")).unwrap(),
        &seeded,
    );
    common::set_xattr(
        &mount.join("seeded.bin"),
        "user.x-amz-meta-color",
        b"blue",
        0,
    )
    .unwrap_or_else(|e| panic!("setfattr: errno {e}; log:\n{}", mount.log()));
    let info = server()
        .storage()
        .head_object(&obj(&bucket, "seeded.bin"))
        .unwrap();
    assert_eq!(info.metadata.get("color"), Some("blue"));
    assert_same(
        "after setfattr",
        &direct_get(&bucket, "seeded.bin").unwrap(),
        &seeded,
    );
    sh(&format!(
        "mv {} {} && mv {} {}",
        mount.join("seeded.bin").display(),
        mount.join("moved.bin").display(),
        mount.join("d").display(),
        mount.join("e").display()
    ));
    assert_same(
        "moved.bin",
        &direct_get(&bucket, "moved.bin").unwrap(),
        &seeded,
    );
    assert_eq!(direct_get(&bucket, "seeded.bin"), None);
    for k in ["x", "y"] {
        assert_same(k, &direct_get(&bucket, &format!("e/{k}")).unwrap(), &seeded);
        assert_eq!(direct_get(&bucket, &format!("d/{k}")), None);
    }
    sh(&format!("rm -r {}", mount.join("e").display()));
    assert_eq!(direct_get(&bucket, "e/x"), None);

    // Each capability refused once, learnt, and announced by one warning — but REPLACE twice:
    // the self-copy also carries x-amz-copy-source-if-match, and the copy without that
    // condition is tried first (it was not the one refused). The guarded copy may first be
    // met by the directory rename, whose two copies are in flight together: each may be
    // refused before either reply is learnt (never more than the copies in flight).
    let mut refused = refused.lock().unwrap().clone();
    refused.sort_unstable();
    let guarded = refused
        .iter()
        .filter(|r| **r == "x-amz-copy-source-if-match")
        .count();
    assert!(
        (1..=2).contains(&guarded),
        "x-amz-copy-source-if-match refused {guarded} times; log:\n{}",
        mount.log()
    );
    refused.dedup_by(|a, b| a == b && *a == "x-amz-copy-source-if-match");
    assert_eq!(
        refused,
        [
            "DeleteObjects",
            "If-Match on GET",
            "If-None-Match",
            "REPLACE",
            "REPLACE",
            "x-amz-copy-source-if-match"
        ],
        "each refused once, then left out; log:\n{}",
        mount.log()
    );
    let warnings = mount
        .log()
        .lines()
        .filter(|l| l.contains("the server does not implement"))
        .count();
    assert_eq!(warnings, 5, "log:\n{}", mount.log());
}
