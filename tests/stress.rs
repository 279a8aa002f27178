//! Concurrency stress and crash tests on one mount.
//!
//! `many_threads_in_overlapping_directories`: several threads (`STRESS_THREADS`, default 6)
//! create, write, read, rename (files and directories), delete, mkdir/rmdir and setfattr for
//! `STRESS_SECS` seconds (default 30) in the same few directories. Races between them give the
//! errors a local file system gives (ENOENT, EEXIST, ENOTEMPTY, ...); nothing may give EIO or
//! any other error, and no operation may take longer than a minute (a watchdog kills the mount
//! then, so the test fails instead of hanging). Every file is written with self-describing
//! content (writer, sequence number, length, then a payload derived from them), so a torn or
//! mixed object is caught. At the end, with everything closed: the tree through the mount is
//! the tree the S3 API lists, every file's bytes and metadata through the mount are those
//! through the API, every file is one complete version that some thread wrote, no upload was
//! left unsaved, and s3mount is alive and logged no panic.
//!
//! `kill_9_during_uploads_leaves_old_or_new_objects_never_partial`: s3mount is SIGKILLed while
//! single and multipart uploads are in flight; every key then holds its old complete version
//! or its new complete version (new keys: nothing or the complete version).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::versioned::{self, Version};
use common::{server, server_bytes, skip_on, Mount, ServerLimit};
use s3mount::fs::attr::STAT_METADATA;
use s3mount::s3::ObjectStore;
use s3mount::Storage;

/// Longest a single file operation may take before the watchdog fails the test.
const OP_LIMIT: Duration = Duration::from_secs(60);
/// Directory names the threads share (they overlap on purpose; renames move between them).
const DIRS: &[&str] = &["a", "b", "c", "d", "e", "a/x", "b/y", "c/z"];
/// File names per writer: `w{writer}_{0..FILES_PER_WRITER}`. Only its writer rewrites a name
/// in place; everyone reads, renames, deletes and tags every name.
const FILES_PER_WRITER: usize = 3;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

use common::Rng;

/// Picking from a slice.
trait Pick {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T;
}

impl Pick for Rng {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn rc(r: libc::c_int) -> Result<(), i32> {
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// What the threads share.
struct Shared {
    root: PathBuf,
    t0: Instant,
    stop: AtomicBool,
    /// Per thread: start of the running operation in ms since `t0` plus one (0: idle), and what
    /// it is.
    running: Vec<(AtomicU64, Mutex<String>)>,
    /// Every version written (before its close).
    written: Mutex<HashSet<Version>>,
    /// Failures: what went wrong.
    failures: Mutex<Vec<String>>,
    /// Outcomes: (operation, "ok" or errno name) → count.
    outcomes: Mutex<BTreeMap<(String, String), u64>>,
    /// Reads by what they saw.
    reads_complete: AtomicU64,
    reads_partial: AtomicU64,
}

/// Errors two threads racing on the same names get on any file system.
fn expected_race(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOENT | libc::EEXIST | libc::ENOTEMPTY | libc::ENOTDIR | libc::EISDIR | libc::EINVAL
    )
}

fn errno_name(e: i32) -> String {
    match e {
        libc::ENOENT => "ENOENT".into(),
        libc::EEXIST => "EEXIST".into(),
        libc::ENOTEMPTY => "ENOTEMPTY".into(),
        libc::ENOTDIR => "ENOTDIR".into(),
        libc::EISDIR => "EISDIR".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EIO => "EIO".into(),
        other => format!("errno {other}"),
    }
}

impl Shared {
    fn note(&self, op: &str, result: &Result<(), i32>, what: &str) {
        let outcome = match result {
            Ok(()) => "ok".to_string(),
            Err(e) => errno_name(*e),
        };
        *self
            .outcomes
            .lock()
            .unwrap()
            .entry((op.to_string(), outcome))
            .or_default() += 1;
        if let Err(e) = result {
            if !expected_race(*e) {
                self.fail(format!("{op} {what}: {}", errno_name(*e)));
            }
        }
    }

    fn fail(&self, msg: String) {
        eprintln!("FAILURE: {msg}");
        self.failures.lock().unwrap().push(msg);
        self.stop.store(true, Ordering::SeqCst);
    }

    fn begin(&self, thread: usize, what: String) {
        *self.running[thread].1.lock().unwrap() = what;
        let ms = self.t0.elapsed().as_millis() as u64 + 1;
        self.running[thread].0.store(ms, Ordering::SeqCst);
    }

    fn end(&self, thread: usize) {
        self.running[thread].0.store(0, Ordering::SeqCst);
    }
}

fn file_path(sh: &Shared, rng: &mut Rng, writer: Option<usize>, threads: usize) -> PathBuf {
    let w = writer.unwrap_or_else(|| rng.below(threads));
    let name = format!("w{w}_{}", rng.below(FILES_PER_WRITER));
    sh.root.join(rng.pick(DIRS)).join(name)
}

fn dir_path(sh: &Shared, rng: &mut Rng) -> PathBuf {
    sh.root.join(rng.pick(DIRS))
}

/// Write version `v` to `p` in a few `write` calls, close, and report close's own result.
fn write_version(p: &Path, data: &[u8], rng: &mut Rng) -> Result<(), i32> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(p)
        .map_err(|e| io_errno(&e))?;
    let mut at = 0;
    while at < data.len() {
        let n = (1 + rng.below(256 * 1024)).min(data.len() - at);
        if let Err(e) = f.write_all(&data[at..at + n]) {
            return Err(io_errno(&e));
        }
        at += n;
    }
    // SAFETY: the fd is owned and closed once.
    rc(unsafe { libc::close(f.into_raw_fd()) })
}

fn one_op(sh: &Shared, thread: usize, threads: usize, rng: &mut Rng, seq: &mut u64) {
    let roll = rng.below(100);
    match roll {
        // Write one of this thread's own names: create or replace its whole content.
        0..=29 => {
            let p = file_path(sh, rng, Some(thread), threads);
            *seq += 1;
            let v = Version {
                writer: thread as u32,
                seq: *seq,
            };
            let len = if rng.below(150) == 0 {
                17 * 1024 * 1024 + rng.below(1024 * 1024) // a multipart upload
            } else if rng.below(10) == 0 {
                1024 * 1024 + rng.below(2 * 1024 * 1024)
            } else {
                rng.below(64 * 1024)
            };
            let data = versioned::content(v, len);
            sh.written.lock().unwrap().insert(v);
            sh.begin(thread, format!("write {} ({v}, {len} bytes)", p.display()));
            let r = write_version(&p, &data, rng);
            sh.end(thread);
            sh.note("write", &r, &p.display().to_string());
        }
        // Read any file.
        30..=49 => {
            let p = file_path(sh, rng, None, threads);
            sh.begin(thread, format!("read {}", p.display()));
            let r = std::fs::File::open(&p).and_then(|mut f| {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).map(|_| buf)
            });
            sh.end(thread);
            let r = match r {
                Ok(buf) => {
                    if versioned::check(&buf).is_ok() {
                        sh.reads_complete.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // Being rewritten in this mount at the same time: it shares the open
                        // file's content, as on a local disk. Checked whole at the end.
                        sh.reads_partial.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
                // Renamed, its directory renamed, tagged (a self-copy) while being read: the
                // read follows the copy. Replaced by a rename or unlinked: ENOENT. Never EIO.
                Err(e) => Err(io_errno(&e)),
            };
            sh.note("read", &r, &p.display().to_string());
        }
        // Rename a file, replacing the target or not.
        50..=61 => {
            let from = file_path(sh, rng, None, threads);
            let to = file_path(sh, rng, None, threads);
            let replace = rng.below(2) == 0;
            sh.begin(
                thread,
                format!(
                    "rename {} -> {} (replace: {replace})",
                    from.display(),
                    to.display()
                ),
            );
            let (a, b) = (cpath(&from), cpath(&to));
            // SAFETY: valid NUL-terminated paths.
            let r = rc(unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    if replace { 0 } else { libc::RENAME_NOREPLACE },
                )
            });
            sh.end(thread);
            sh.note("rename-file", &r, &from.display().to_string());
        }
        // Delete a file.
        62..=69 => {
            let p = file_path(sh, rng, None, threads);
            sh.begin(thread, format!("unlink {}", p.display()));
            let r = std::fs::remove_file(&p).map_err(|e| io_errno(&e));
            sh.end(thread);
            sh.note("unlink", &r, &p.display().to_string());
        }
        // Make a directory.
        70..=77 => {
            let p = dir_path(sh, rng);
            sh.begin(thread, format!("mkdir {}", p.display()));
            let r = std::fs::create_dir(&p).map_err(|e| io_errno(&e));
            sh.end(thread);
            sh.note("mkdir", &r, &p.display().to_string());
        }
        // Remove a directory (only succeeds when empty).
        78..=82 => {
            let p = dir_path(sh, rng);
            sh.begin(thread, format!("rmdir {}", p.display()));
            let r = std::fs::remove_dir(&p).map_err(|e| io_errno(&e));
            sh.end(thread);
            sh.note("rmdir", &r, &p.display().to_string());
        }
        // Rename a directory (with everything in it).
        83..=89 => {
            let from = dir_path(sh, rng);
            let to = dir_path(sh, rng);
            sh.begin(
                thread,
                format!("rename dir {} -> {}", from.display(), to.display()),
            );
            let (a, b) = (cpath(&from), cpath(&to));
            // Half of them may replace an empty directory.
            let flags = if rng.below(2) == 0 {
                0
            } else {
                libc::RENAME_NOREPLACE
            };
            // SAFETY: valid NUL-terminated paths.
            let r = rc(unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    flags,
                )
            });
            sh.end(thread);
            sh.note("rename-dir", &r, &from.display().to_string());
        }
        // Tag a file or a directory.
        _ => {
            let p = if rng.below(4) == 0 {
                dir_path(sh, rng)
            } else {
                file_path(sh, rng, None, threads)
            };
            let name = CString::new(format!("user.x-amz-meta-s{}", rng.below(3))).unwrap();
            let value = format!("t{thread}-{}", rng.next() % 1000);
            sh.begin(thread, format!("setfattr {} {value}", p.display()));
            let c = cpath(&p);
            // SAFETY: valid path and name, a buffer of the given length.
            let r = rc(unsafe {
                libc::setxattr(
                    c.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            });
            sh.end(thread);
            sh.note("setfattr", &r, &p.display().to_string());
        }
    }
}

/// Everything under `root` through the mount: directories (relative, no trailing `/`) and
/// files (relative path → bytes).
fn walk(root: &Path) -> (BTreeSet<String>, BTreeMap<String, Vec<u8>>) {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("readdir {}: {e}", d.display())) {
            let e = e.expect("dir entry");
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p)
                .unwrap_or_else(|err| panic!("stat {}: {err}", p.display()));
            if meta.is_dir() {
                dirs.insert(rel);
                todo.push(p);
            } else {
                let bytes =
                    std::fs::read(&p).unwrap_or_else(|err| panic!("read {}: {err}", p.display()));
                files.insert(rel, bytes);
            }
        }
    }
    (dirs, files)
}

/// The same from the S3 API's listing.
fn server_tree(st: &Storage, bucket: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (objects, _) = st
        .bucket(bucket)
        .list_all("", None)
        .expect("list the bucket");
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    for o in objects {
        let k = o.key;
        let parts: Vec<&str> = k.split('/').collect();
        for i in 1..parts.len() {
            dirs.insert(parts[..i].join("/"));
        }
        if !k.ends_with('/') {
            files.insert(k);
        }
    }
    (dirs, files)
}

/// The metadata of `p` through the mount: what `listxattr` names, and the metadata that holds
/// `stat`'s attributes, which it does not name (programs would copy it) but which reads by name.
fn xattrs_through_mount(p: &Path) -> BTreeMap<String, String> {
    let c = cpath(p);
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: a buffer of the given length.
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr {}: errno {}", p.display(), last_errno());
    let mut out = BTreeMap::new();
    let by_name = STAT_METADATA.map(|s| format!("user.x-amz-meta-{s}"));
    for name in buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .chain(by_name.iter().map(|s| s.as_bytes()))
    {
        let cname = CString::new(name).unwrap();
        let mut val = vec![0u8; 4096];
        // SAFETY: as above.
        let m = unsafe {
            libc::getxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        if m < 0 && last_errno() == libc::ENODATA && by_name.iter().any(|s| s.as_bytes() == name) {
            continue;
        }
        assert!(m >= 0, "getxattr {}: errno {}", p.display(), last_errno());
        let short = String::from_utf8_lossy(name)
            .trim_start_matches("user.")
            .to_string();
        out.insert(
            short,
            String::from_utf8_lossy(&val[..m as usize]).into_owned(),
        );
    }
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn many_threads_in_overlapping_directories() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let secs = env_or("STRESS_SECS", 25);
    let threads = env_or("STRESS_THREADS", 6) as usize;
    let srv = server();
    let bucket = srv.fresh_bucket("stress");
    let st = srv.storage_in(&bucket);
    let mut m = Mount::new(srv, &bucket);
    let pid = m.pid().expect("s3mount runs");
    let sh = Arc::new(Shared {
        root: m.path().to_path_buf(),
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        running: (0..threads)
            .map(|_| (AtomicU64::new(0), Mutex::new(String::new())))
            .collect(),
        written: Mutex::new(HashSet::new()),
        failures: Mutex::new(Vec::new()),
        outcomes: Mutex::new(BTreeMap::new()),
        reads_complete: AtomicU64::new(0),
        reads_partial: AtomicU64::new(0),
    });
    for d in ["a", "b", "c"] {
        std::fs::create_dir(m.join(d)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let workers_done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        // The watchdog: an operation stuck for a minute fails the test; killing s3mount makes
        // every blocked call return (ENOTCONN), so the threads end and the test reports.
        let (sh_w, done) = (sh.clone(), workers_done.clone());
        s.spawn(move || {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(500));
                let now = sh_w.t0.elapsed().as_millis() as u64 + 1;
                for (started, what) in &sh_w.running {
                    let t = started.load(Ordering::SeqCst);
                    if t != 0 && now.saturating_sub(t) > OP_LIMIT.as_millis() as u64 {
                        let what = what.lock().unwrap().clone();
                        sh_w.fail(format!("hung for over {OP_LIMIT:?}: {what}"));
                        // SAFETY: kill(2) on the PID of the child we started.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                        return;
                    }
                }
            }
        });
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let sh = sh.clone();
                s.spawn(move || {
                    let mut rng = Rng(0xC0FFEE ^ ((t as u64 + 1) << 32));
                    let mut seq = 0u64;
                    while Instant::now() < deadline && !sh.stop.load(Ordering::SeqCst) {
                        one_op(&sh, t, threads, &mut rng, &mut seq);
                    }
                })
            })
            .collect();
        for w in workers {
            if w.join().is_err() {
                sh.fail("a worker thread panicked".into());
            }
        }
        workers_done.store(true, Ordering::SeqCst);
    });
    let failures = sh.failures.lock().unwrap().clone();
    if !failures.is_empty() {
        // Keep the whole log (the mount's temp dir goes away with it).
        let kept = std::env::temp_dir().join(format!("s3mount-stress-{}.log", std::process::id()));
        let _ = std::fs::copy(m.log_path(), &kept);
        panic!(
            "{} failures, first: {}\nthe mount's log: {}; its tail:\n{}",
            failures.len(),
            failures[0],
            kept.display(),
            tail(&m.log(), 40)
        );
    }
    assert!(m.is_running(), "s3mount died; log:\n{}", tail(&m.log(), 40));

    // Quiesce: every file is closed; let cached attributes and listings expire.
    std::thread::sleep(Duration::from_millis(1500));
    let (mdirs, mfiles) = walk(m.path());
    let (sdirs, sfiles) = server_tree(&st, &bucket);
    assert_eq!(mdirs, sdirs, "directories: mount vs S3 API");
    assert_eq!(
        mfiles.keys().cloned().collect::<BTreeSet<_>>(),
        sfiles,
        "files: mount vs S3 API"
    );
    let written = sh.written.lock().unwrap().clone();
    for (rel, bytes) in &mfiles {
        let on_server = server_bytes(&st, rel).unwrap_or_else(|| panic!("{rel} vanished"));
        assert!(
            *bytes == on_server,
            "{rel}: mount has {} bytes ({:?}), the server {} ({:?})",
            bytes.len(),
            versioned::check(bytes),
            on_server.len(),
            versioned::check(&on_server)
        );
        let v = versioned::check(bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(written.contains(&v), "{rel}: {v} was never written");
        let through_mount = xattrs_through_mount(&m.join(rel));
        let head = st
            .head_object(&s3mount::s3::ObjectRef {
                bucket: bucket.clone(),
                key: rel.clone(),
            })
            .unwrap();
        let through_api: BTreeMap<String, String> = head
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(through_mount, through_api, "{rel}: metadata");
    }
    let unsaved: Vec<PathBuf> = files_under(m.cache_dir())
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "unsaved"))
        .collect();
    assert!(
        unsaved.is_empty(),
        "uploads were kept as unsaved: {unsaved:?}"
    );
    let log = m.log();
    assert!(
        !log.contains("panicked"),
        "s3mount panicked:\n{}",
        tail(&log, 40)
    );
    assert!(m.is_running(), "s3mount died");

    let outcomes = sh.outcomes.lock().unwrap().clone();
    let total: u64 = outcomes.values().sum();
    eprintln!(
        "stress: {threads} threads, {secs} s: {total} operations, {} versions written, {} files and {} directories at the end checked against the S3 API; reads: {} complete, {} during a rewrite",
        written.len(),
        mfiles.len(),
        mdirs.len(),
        sh.reads_complete.load(Ordering::Relaxed),
        sh.reads_partial.load(Ordering::Relaxed)
    );
    for ((op, outcome), n) in &outcomes {
        eprintln!("  {op:12} {outcome:10} {n}");
    }
    assert!(
        outcomes
            .get(&("write".into(), "ok".into()))
            .copied()
            .unwrap_or(0)
            > 0
            && outcomes
                .get(&("rename-dir".into(), "ok".into()))
                .copied()
                .unwrap_or(0)
                > 0,
        "the run did too little to mean anything: {outcomes:?}"
    );
    let status = m.unmount();
    assert!(status.success(), "s3mount exit status {status}");
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn kill_9_during_uploads_leaves_old_or_new_objects_never_partial() {
    // The crash must hit at least one upload, or the run proved nothing: on a fast server the
    // last parts and the completion of a streamed upload can all land within the pause before
    // the kill, so an inconclusive run is repeated with a shorter pause.
    let mut runs = Vec::new();
    for pause_ms in [10, 3, 0] {
        let outcome = kill_9_once(Duration::from_millis(pause_ms));
        if outcome.get("old").copied().unwrap_or(0) > 0 {
            return;
        }
        runs.push(outcome);
    }
    panic!("every rewrite finished before the kill, in every run: {runs:?}");
}

/// Rewrite four objects (two multipart) and create four, kill -9 the mount `pause` after every
/// rewrite reached `close`, and check that each object is the old or the new version, whole,
/// and that what was being uploaded is whole on the local disk. Returns how the objects ended.
fn kill_9_once(pause: Duration) -> BTreeMap<&'static str, usize> {
    let srv = server();
    let bucket = srv.fresh_bucket("kill9");
    let st = srv.storage_in(&bucket);
    const MIB: usize = 1024 * 1024;
    // Old versions: two small, two large (multipart when rewritten).
    let sizes = [20_000, 300_000, 20 * MIB, 24 * MIB];
    for (i, len) in sizes.iter().enumerate() {
        let old = versioned::content(
            Version {
                writer: 0,
                seq: i as u64,
            },
            *len,
        );
        st.bucket(&bucket)
            .put(
                &format!("k{i}"),
                s3mount::s3::RequestBody::Bytes(&old),
                &s3mount::s3::PutOptions::default(),
            )
            .unwrap();
    }
    let mut m = Mount::new(srv, &bucket);
    let pid = m.pid().expect("s3mount runs");
    let root = m.path().to_path_buf();
    let closing = AtomicU64::new(0);
    std::thread::scope(|s| {
        for (i, len) in sizes.iter().enumerate() {
            let (root, closing) = (&root, &closing);
            s.spawn(move || {
                for (key, writer) in [(format!("k{i}"), 1), (format!("n{i}"), 2)] {
                    let data = versioned::content(
                        Version {
                            writer,
                            seq: i as u64,
                        },
                        *len,
                    );
                    let Ok(mut f) = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(root.join(&key))
                    else {
                        return;
                    };
                    if f.write_all(&data).is_err() {
                        return;
                    }
                    if writer == 1 {
                        closing.fetch_add(1, Ordering::SeqCst);
                    }
                    // The upload runs in close; s3mount dies during it (ENOTCONN then).
                    // SAFETY: the fd is owned and closed once.
                    unsafe { libc::close(f.into_raw_fd()) };
                }
            });
        }
        // Once every writer has reached its first close, let the uploads get going, then crash
        // (soon: the last parts and the completion of a streamed upload to a local server take
        // tens of milliseconds, and every rewrite done before the kill would prove nothing).
        let until = Instant::now() + Duration::from_secs(60);
        while closing.load(Ordering::SeqCst) < sizes.len() as u64 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(pause);
        // SAFETY: kill(2) on the PID of the child we started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    m.kill_9(); // reap it and detach the dead mount
    let mut outcome = BTreeMap::new();
    for (i, len) in sizes.iter().enumerate() {
        let k = format!("k{i}");
        let got = server_bytes(&st, &k).unwrap_or_else(|| panic!("{k} vanished"));
        let v = versioned::check(&got).unwrap_or_else(|e| panic!("{k} ({len} bytes): {e}"));
        assert!(
            v.seq == i as u64 && (v.writer == 0 || v.writer == 1),
            "{k}: {v}"
        );
        *outcome
            .entry(if v.writer == 0 { "old" } else { "new" })
            .or_insert(0) += 1;
        let n = format!("n{i}");
        match server_bytes(&st, &n) {
            None => *outcome.entry("absent").or_insert(0) += 1,
            Some(b) => {
                let v = versioned::check(&b).unwrap_or_else(|e| panic!("{n}: {e}"));
                assert_eq!(
                    v,
                    Version {
                        writer: 2,
                        seq: i as u64
                    },
                    "{n}"
                );
                *outcome.entry("created").or_insert(0) += 1;
            }
        }
    }
    // What was being uploaded is still on the local disk, whole. A new file (writer 2) whose
    // writer had not reached `close` may be cut anywhere: nobody was told it was written (a
    // rewrite that returned fast enough lets its new file's writer start before the kill).
    let staged: Vec<_> = files_under(m.cache_dir())
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "staging"))
        .collect();
    let mut cut = 0;
    for p in &staged {
        let b = std::fs::read(p).unwrap();
        match versioned::check(&b) {
            Ok(v) => assert!(v.writer == 1 || v.writer == 2, "{}: {v}", p.display()),
            Err(e) => {
                assert!(
                    b.starts_with(b"S3V w=0002 ") && versioned::is_prefix_of_a_version(&b),
                    "{}: {e}",
                    p.display()
                );
                cut += 1;
            }
        }
    }
    eprintln!(
        "kill -9: {outcome:?}; {} staging files left, each a whole new version but {cut} new \
         files still being written",
        staged.len()
    );
    outcome
}
