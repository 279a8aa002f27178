//! What a running mount tells: `s3mount status` (text and `--json`, read from the
//! `status.PID.json` each mount rewrites once a second) and the Prometheus endpoint of
//! `--metrics-listen`, which must serve the same figures. Checked against what the test did:
//! a failed upload kept under `unsaved/`, a large copy in flight, reads through the data cache,
//! requests per kind.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{random_bytes, server, skip_on, Mount, ServerLimit};
use s3mount::s3::{ObjectStore, PutOptions, RequestBody};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_s3mount");
/// Longer than the mount's rewrite interval (1 s), so a snapshot taken after an action has it.
const FIGURES_SETTLE: Duration = Duration::from_millis(2500);
/// How long to wait for a figure to show.
const SHOW_TIMEOUT: Duration = Duration::from_secs(30);

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `s3mount status --json --cache-dir CACHE MOUNTPOINT`: the one mount's object.
fn status_json(m: &Mount) -> Value {
    let out = Command::new(BIN)
        .args(["status", "--json", "--cache-dir"])
        .arg(m.cache_dir())
        .arg(m.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\nlog:\n{}", text(&out), m.log());
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = all.as_array().expect("an array");
    assert_eq!(arr.len(), 1, "{all}");
    arr[0].clone()
}

/// `s3mount status` (text) for the mount.
fn status_text(m: &Mount) -> String {
    let out = Command::new(BIN)
        .args(["status", "--cache-dir"])
        .arg(m.cache_dir())
        .arg(m.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loopback address nothing listens on (a moment ago).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// `GET http://addr/metrics`.
fn scrape(addr: &str) -> String {
    let mut resp = ureq::get(&format!("http://{addr}/metrics")).call().unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    resp.body_mut().read_to_string().unwrap()
}

/// The value of the sample `name` (with exactly these `labels`, e.g. `operation="GetObject"`,
/// or none) in a Prometheus text page.
fn sample(page: &str, name: &str, labels: &str) -> Option<f64> {
    let want = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    page.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_for(what: &str, m: &Mount, mut ok: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SHOW_TIMEOUT;
    loop {
        let s = status_json(m);
        if ok(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not shown after {SHOW_TIMEOUT:?}: {s}\nlog:\n{}",
                m.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// A mount's identity, and the cache's figures, in the status and the metrics alike.
#[test]
fn status_and_metrics_show_the_mount_and_its_cache() {
    let server = server();
    let bucket = server.fresh_bucket("status-id");
    let storage = server.storage_in(&bucket);
    let data = random_bytes(3 << 20, 7);
    storage
        .put_object(
            &common::obj(&bucket, "data.bin"),
            RequestBody::Bytes(&data),
            &PutOptions::default(),
        )
        .unwrap();
    let addr = free_addr();
    let m = Mount::with_args(server, &bucket, &["--metrics-listen", &addr]);
    // The first read fetches (misses); a later one is served by the cache (hits). Not
    // necessarily the second: the kernel's pages would answer it (they are dropped), and so
    // would the read-ahead's part while the file's last `release`, which the kernel sends
    // after `close` returns, has not reached the mount — so read again until the figures say
    // the cache answered.
    let path = m.join("data.bin");
    assert_eq!(std::fs::read(&path).unwrap().len(), 3 << 20);
    let mut s = Value::Null;
    for _ in 0..10 {
        common::drop_kernel_pages(&path);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(std::fs::read(&path).unwrap().len(), 3 << 20);
        std::thread::sleep(FIGURES_SETTLE);
        s = status_json(&m);
        if u(&s["cache"]["hits"]) >= 3 {
            break;
        }
    }
    assert_eq!(s["bucket"], bucket.as_str(), "{s}");
    assert_eq!(s["prefix"], "", "{s}");
    assert_eq!(s["endpoint"], server.endpoint.as_str(), "{s}");
    assert_eq!(
        Path::new(s["mountpoint"].as_str().unwrap()),
        m.path().canonicalize().unwrap()
    );
    assert_eq!(u(&s["pid"]), m.pid().unwrap() as u64);
    let cache = &s["cache"];
    assert!(u(&cache["misses"]) >= 3, "{s}");
    assert!(
        u(&cache["hits"]) >= 3,
        "a later read came from the cache: {s}"
    );
    assert!(u(&cache["used_bytes"]) >= 3 << 20, "{s}");
    assert_eq!(
        u(&cache["limit_bytes"]),
        s3mount::cache::data::DEFAULT_CACHE_SIZE,
        "the default --cache-size: {s}"
    );
    let text = status_text(&m);
    assert!(text.contains(&format!("s3://{bucket}/")), "{text}");
    assert!(text.contains("hit ratio"), "{text}");

    // The metrics: the same figures. Nothing reads meanwhile, so the counters stand still.
    let page = scrape(&addr);
    let s = status_json(&m);
    assert!(
        page.contains(&format!(
            "s3mount_info{{bucket=\"{bucket}\",prefix=\"\",endpoint=\"{}\",",
            server.endpoint
        )),
        "{page}"
    );
    for (metric, field) in [
        ("s3mount_cache_hits_total", "hits"),
        ("s3mount_cache_misses_total", "misses"),
        ("s3mount_cache_used_bytes", "used_bytes"),
        ("s3mount_cache_limit_bytes", "limit_bytes"),
    ] {
        assert_eq!(
            sample(&page, metric, ""),
            Some(u(&s["cache"][field]) as f64),
            "{metric}: {page}"
        );
    }
    let mp = m.path().to_path_buf();
    drop(m);
    // Stopped: its status file is gone, and status no longer lists it.
    assert!(!common::is_fuse_mount(&mp));
}

/// A failed upload shows under `unsaved/` in the status (text and JSON) and in the metrics;
/// `--recover`'s hint is in the text.
#[test]
fn a_failed_upload_shows_as_unsaved() {
    if skip_on(ServerLimit::PutRecreatesBucket) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("status-unsaved");
    let addr = free_addr();
    let m = Mount::with_args(server, &bucket, &["--metrics-listen", &addr]);
    let s = status_json(&m);
    assert_eq!(u(&s["unsaved"]["files"]), 0, "{s}");
    // The bucket goes away under the mount: the upload at close fails, the bytes are kept.
    server.storage().delete_bucket(&bucket).unwrap();
    let mut f = std::fs::File::create(m.join("doomed.txt")).unwrap();
    std::io::Write::write_all(&mut f, b"kept for later").unwrap();
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: closing the descriptor we own; close(2)'s error is the upload's.
    let rc = unsafe { libc::close(fd) };
    let err = std::io::Error::last_os_error();
    assert_eq!((rc, err.raw_os_error()), (-1, Some(libc::EIO)), "{err}");
    let s = wait_for("the unsaved file", &m, |s| u(&s["unsaved"]["files"]) == 1);
    assert_eq!(
        u(&s["unsaved"]["bytes"]),
        b"kept for later".len() as u64,
        "{s}"
    );
    let text = status_text(&m);
    assert!(text.contains("unsaved/: 1 file(s)"), "{text}");
    assert!(text.contains("s3mount --recover"), "{text}");
    let page = scrape(&addr);
    assert_eq!(
        sample(&page, "s3mount_unsaved_files", ""),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "s3mount_unsaved_bytes", ""),
        Some(b"kept for later".len() as f64),
        "{page}"
    );
    // The failed PUT is counted as an error, in both.
    let s = status_json(&m);
    let put = s["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"] == "PutObject")
        .unwrap_or_else(|| panic!("no PutObject: {s}"));
    assert!(u(&put["errors"]) >= 1, "{s}");
    assert_eq!(
        sample(
            &page,
            "s3mount_request_errors_total",
            "operation=\"PutObject\""
        ),
        Some(u(&put["errors"]) as f64),
        "{page}"
    );
}

/// Without `--cache-dir`, `status` looks in the default cache dir and names the mount it
/// found no figures for; `--no-status` publishes none.
#[test]
fn a_mount_without_figures_is_named_with_the_hint() {
    let server = server();
    let bucket = server.fresh_bucket("status-none");
    let m = Mount::with_args(server, &bucket, &["--no-status"]);
    let published = std::fs::read_dir(m.cache_dir().join(&bucket))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("status"))
        .collect::<Vec<_>>();
    assert!(published.is_empty(), "{published:?}");
    let out = Command::new(BIN)
        .args(["status", "--cache-dir"])
        .arg(m.cache_dir())
        .arg(m.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&m.path().canonicalize().unwrap().display().to_string())
            && stderr.contains("--cache-dir"),
        "{}",
        text(&out)
    );
    // Not a mount at all.
    let out = Command::new(BIN).args(["status", "/"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no s3mount"),
        "{}",
        text(&out)
    );
}

/// The size of the copy watched in flight: 256 MiB, not the 1 GiB, because moto takes
/// ~50 MiB/s for uploads (20 s and more for 1 GiB, times the suite's other tests); 256 MiB is
/// 32 parts of 8 MiB.
const BIG_COPY: u64 = 256 << 20;

/// A large copy into the mount shows in `s3mount status` while it runs: its key, bytes sent
/// growing, less than the total until done; then the list is empty, and the metrics count the
/// same requests per kind as the status. The copy (`dd` reading a pipe) is held after its first
/// half until the status has shown parts of it sent: a quiet machine copies 256 MiB into moto
/// in about a second, between two looks at the status (a `cp` was seen done with no progress
/// shown in between).
#[test]
fn status_shows_a_large_copy_while_it_runs() {
    use std::io::Write;
    let server = server();
    let bucket = server.fresh_bucket("status-cp");
    let addr = free_addr();
    let m = Mount::with_args(server, &bucket, &["--metrics-listen", &addr]);
    let data = random_bytes(BIG_COPY as usize, 11);
    let mut dd = Command::new("dd")
        .arg(format!("of={}", m.join("big.bin").display()))
        .args(["bs=1M", "iflag=fullblock", "status=none"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = dd.stdin.take().unwrap();
    let half = data.len() / 2;
    input.write_all(&data[..half]).unwrap();
    // Snapshots: big.bin in flight, with progress.
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let look = |seen: &mut Vec<(u64, u64)>| {
        let s = status_json(&m);
        if let Some(up) = s["uploads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["key"] == "big.bin")
        {
            let (sent, total) = (u(&up["sent_bytes"]), u(&up["total_bytes"]));
            assert!(sent <= total && total <= BIG_COPY, "{s}");
            seen.push((sent, total));
            if seen.len() == 1 {
                let text = status_text(&m);
                assert!(
                    text.contains("uploads in flight: 1") && text.contains("big.bin"),
                    "{text}"
                );
            }
        }
    };
    // The first half written, the rest held back: parts of it are sent meanwhile.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !seen.iter().any(|&(sent, _)| sent > 0) {
        assert!(
            Instant::now() < deadline,
            "no part of the first half sent: {seen:?}; log:\n{}",
            m.log()
        );
        look(&mut seen);
        std::thread::sleep(Duration::from_millis(200));
    }
    input.write_all(&data[half..]).unwrap();
    drop(input);
    while dd.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "dd still running; log:\n{}",
            m.log()
        );
        look(&mut seen);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(dd.wait().unwrap().success());
    eprintln!("snapshots of big.bin in flight (sent, total): {seen:?}");
    assert!(
        seen.iter().any(|&(sent, _)| sent > 0 && sent < BIG_COPY),
        "no progress seen while the copy ran: {seen:?}\nlog:\n{}",
        m.log()
    );
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "bytes sent went back: {seen:?}"
    );
    let s = wait_for("the upload done", &m, |s| {
        s["uploads"].as_array().unwrap().is_empty()
    });
    let ops: Vec<&Value> = s["requests"].as_array().unwrap().iter().collect();
    let op = |name: &str| {
        ops.iter()
            .find(|o| o["operation"] == name)
            .unwrap_or_else(|| panic!("no {name} in {s}"))
    };
    assert!(
        u(&op("UploadPart")["count"]) >= BIG_COPY / (16 << 20),
        "{s}"
    );
    assert_eq!(u(&op("CompleteMultipartUpload")["count"]), 1, "{s}");
    assert!(
        op("UploadPart")["p50_seconds"].as_f64().unwrap() > 0.0,
        "{s}"
    );
    let text = status_text(&m);
    assert!(text.contains("UploadPart"), "{text}");
    assert_eq!(
        server
            .storage_in(&bucket)
            .head_object(&common::obj(&bucket, "big.bin"))
            .unwrap()
            .size,
        BIG_COPY
    );

    // The metrics: the same counts per kind (nothing runs meanwhile).
    let page = scrape(&addr);
    let s = status_json(&m);
    for o in s["requests"].as_array().unwrap() {
        let label = format!("operation=\"{}\"", o["operation"].as_str().unwrap());
        assert_eq!(
            sample(&page, "s3mount_requests_total", &label),
            Some(u(&o["count"]) as f64),
            "{label}: {page}"
        );
        assert_eq!(
            sample(&page, "s3mount_request_errors_total", &label),
            Some(u(&o["errors"]) as f64),
            "{label}: {page}"
        );
        assert_eq!(
            sample(&page, "s3mount_request_duration_seconds_count", &label),
            Some(u(&o["count"]) as f64),
            "{label}: {page}"
        );
    }
    assert_eq!(sample(&page, "s3mount_uploads_in_flight", ""), Some(0.0));
}

/// Two mounts of one bucket sharing a cache dir (the default one, or one `--cache-dir`) each
/// publish figures of their own: both are listed, each at its mount point, at every look (they
/// overwrote one file, so one at a time was listed and the other named as started "with
/// another --cache-dir"); the one that stops takes only its own figures away.
#[test]
fn two_mounts_of_one_bucket_on_one_cache_dir_are_both_listed() {
    let server = server();
    let bucket = server.fresh_bucket("status-two");
    let shared = tempfile::tempdir().unwrap();
    let first = Mount::with_cache_dir(server, &bucket, shared.path(), &[]);
    let second = Mount::with_cache_dir(server, &bucket, shared.path(), &[]);
    let listed = || -> (Vec<String>, String) {
        let out = Command::new(BIN)
            .args(["status", "--json", "--cache-dir"])
            .arg(shared.path())
            .output()
            .unwrap();
        let all: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut points: Vec<String> = all
            .as_array()
            .expect("an array")
            .iter()
            .map(|s| s["mountpoint"].as_str().unwrap_or_default().to_string())
            .filter(|p| p.contains("s3mount-test."))
            .collect();
        points.sort();
        (points, text(&out))
    };
    let mut want: Vec<String> = [&first, &second]
        .iter()
        .map(|m| m.path().canonicalize().unwrap().display().to_string())
        .collect();
    want.sort();
    // Several looks, across rewrites of the figures (once a second).
    for _ in 0..4 {
        let (points, out) = listed();
        assert_eq!(points, want, "{out}");
        std::thread::sleep(Duration::from_millis(700));
    }
    drop(first);
    std::thread::sleep(FIGURES_SETTLE);
    let (points, out) = listed();
    let second_at = second.path().canonicalize().unwrap().display().to_string();
    assert_eq!(points, [second_at], "{out}");
}

/// A mount whose s3mount was killed (SIGKILL, the OOM killer) is named as dead, with the
/// command that clears it — not as one started "with another --cache-dir".
#[test]
fn a_dead_mount_is_named_as_dead() {
    let server = server();
    let bucket = server.fresh_bucket("status-dead");
    let m = Mount::new(server, &bucket);
    let at = m.path().canonicalize().unwrap();
    let pid = m.pid().expect("running");
    // SAFETY: sending a signal to the test's own child.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + SHOW_TIMEOUT;
    while std::fs::metadata(&at).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(BIN)
        .args(["status", "--cache-dir"])
        .arg(m.cache_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("{} ", at.display())))
        .unwrap_or_else(|| panic!("not named: {}", text(&out)));
    assert!(
        line.contains("dead") && line.contains(&format!("fusermount3 -u {}", at.display())),
        "{line}"
    );
}

/// A reader that stops early (`s3mount status | head -1`, `s3mount status 2>&1 | head`) ends
/// `status` quietly, as it ends `ls`: the process is stopped by SIGPIPE. It used to panic
/// ("failed printing to stdout: Broken pipe") and exit 101. The pipes here are closed before
/// `status` starts, so its first write meets the closed pipe every time.
#[test]
fn status_ends_quietly_when_its_reader_has_gone() {
    use std::os::unix::process::ExitStatusExt;
    let server = server();
    let bucket = server.fresh_bucket("status-pipe");
    let m = Mount::new(server, &bucket);
    // The figures (on stdout) of a mount that publishes them; then an error (on stderr).
    let figures = || {
        let mut c = Command::new(BIN);
        c.args(["status", "--cache-dir"])
            .arg(m.cache_dir())
            .arg(m.path());
        c
    };
    let _ = wait_for("the first figures", &m, |_| true);
    let mut not_a_mount = Command::new(BIN);
    not_a_mount.args(["status", "/"]);
    for (what, mut cmd, closed_stdout) in [
        ("figures to a closed stdout", figures(), true),
        ("an error to a closed stderr", not_a_mount, false),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        if closed_stdout {
            cmd.stdout(writer);
        } else {
            cmd.stderr(writer);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{what}: {}\nstderr: {stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
}

/// Options before `status` (`s3mount --cache-dir DIR status [MOUNTPOINT]`, as with `git -C`)
/// make clap take `status` for a bucket or a mount point: refused with the way to write it,
/// instead of a mount attempt that failed with "no bucket" or "already in use" (and would have
/// mounted the config's bucket at ./status had it existed).
#[test]
fn options_before_status_are_refused_with_the_right_order() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--cache-dir", "/nonexistent", "status"],
        vec!["--cache-dir", "/nonexistent", "status", "/"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("s3mount: `status` is a command: put its options after it"),
            "{args:?}: {}",
            text(&out)
        );
    }
}
