//! Streamed uploads and crash safety, on real mounts against the real local S3 server.
//!
//! - A file written front to back is uploaded while it is written: the server holds a multipart
//!   upload with parts before the writer closes the file, and the object is exact after.
//! - Whatever gives a streamed upload up (a write into what was sent, a metadata change, an
//!   unlink) leaves an exact object (or none) and no multipart upload behind.
//! - `kill -9` of s3mount in the middle of a streamed upload over an existing object leaves
//!   the old object untouched; the journal in `<cache-dir>/<bucket>/uploads/` lets the next
//!   start abort the orphaned upload; the half-written staging file is kept under `unsaved/`
//!   and never uploaded.
//! - `s3mount --recover` aborts journal entries of dead mounts but not of live ones;
//!   `s3mount --abort-stale-uploads AGE` aborts uploads by age under the mount's prefix.
//!
//! Writers are separate processes fed through a pipe (`dd` reading stdin, or a small python3
//! writer taking `pwrite` commands), so "before close" is a state the test controls, not a race
//! it hopes to win. Not this process's own descriptors: every `fork` + `exec` of another test
//! thread (`dd`, `sh`) would close an inherited copy of them, and each such close is a FUSE
//! `flush` — an upload of the file as it is at that moment.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    is_fuse_mount, random_bytes, server, server_bytes, skip_on, Mount, Server, ServerLimit,
};
use s3mount::s3::journal::UploadJournal;
use s3mount::s3::ObjectStore;
use s3mount::s3::{PendingUpload, PutOptions, RequestBody, StreamingUpload};
use s3mount::{Metadata, Storage};

const BIN: &str = env!("CARGO_BIN_EXE_s3mount");
const MIB: usize = 1024 * 1024;
/// How long the server may take to show parts that are being sent.
const PARTS_TIMEOUT: Duration = Duration::from_secs(120);

use common::obj;

/// In-progress multipart uploads of `key`.
fn uploads_of(storage: &Storage, bucket: &str, key: &str) -> Vec<PendingUpload> {
    storage
        .bucket(bucket)
        .list_uploads("")
        .expect("ListMultipartUploads")
        .into_iter()
        .filter(|u| u.key == key)
        .collect()
}

/// Wait until an in-progress multipart upload of `key` has at least `parts` parts on the
/// server; returns its id.
fn wait_for_parts(
    storage: &Storage,
    bucket: &str,
    key: &str,
    parts: usize,
    log: &dyn Fn() -> String,
) -> String {
    let deadline = Instant::now() + PARTS_TIMEOUT;
    loop {
        for u in uploads_of(storage, bucket, key) {
            let listed = storage
                .bucket(bucket)
                .list_parts(key, &u.upload_id)
                .map(|p| p.len())
                .unwrap_or(0);
            if listed >= parts {
                return u.upload_id;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "no multipart upload of {key} with {parts} part(s) on the server after {PARTS_TIMEOUT:?}; log:\n{}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `dd` writing its stdin to `target` in 1 MiB blocks; the test feeds and closes the pipe.
fn dd_from_pipe(target: &Path) -> (Child, ChildStdin) {
    let mut child = Command::new("dd")
        .arg(format!("of={}", target.display()))
        .args(["bs=1M", "iflag=fullblock", "status=none"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dd");
    let stdin = child.stdin.take().expect("dd stdin");
    (child, stdin)
}

fn wait_child(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A python3 process holding `path` open (created or truncated) and writing what it is told.
struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

const WRITER: &str = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
inp = sys.stdin.buffer
while True:
    cmd = inp.readline().split()
    if not cmd:
        break
    if cmd[0] == b"W":
        off, n = int(cmd[1]), int(cmd[2])
        data = memoryview(inp.read(n))
        assert len(data) == n, "short command"
        pos = 0
        while pos < n:
            pos += os.pwrite(fd, data[pos:], off + pos)
        print("ok", flush=True)
    elif cmd[0] == b"C":
        os.close(fd)
        print("closed", flush=True)
        break
"#;

impl Writer {
    fn open(path: &Path) -> Writer {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(WRITER)
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Writer {
            child,
            stdin,
            stdout,
        }
    }

    fn answer(&mut self, want: &str) {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.stdout, &mut line).unwrap();
        assert_eq!(line.trim(), want, "writer failed (see its stderr)");
    }

    /// `pwrite(data, offset)`, returning once it is done.
    fn write_at(&mut self, offset: usize, data: &[u8]) {
        writeln!(self.stdin, "W {offset} {}", data.len()).unwrap();
        self.stdin.write_all(data).unwrap();
        self.stdin.flush().unwrap();
        self.answer("ok");
    }

    /// `close`, returning once it returned (success required).
    fn close(mut self) {
        self.stdin.write_all(b"C\n").unwrap();
        self.stdin.flush().unwrap();
        self.answer("closed");
        let st = self.child.wait().unwrap();
        assert!(st.success(), "writer: {st}");
    }
}

fn etag_of(storage: &Storage, bucket: &str, key: &str) -> String {
    storage
        .head_object(&obj(bucket, key))
        .expect("HEAD")
        .etag
        .expect("an ETag")
}

// ---------------------------------------------------------------------------------------------
// Streaming

/// `dd` of 100 MiB (and a bit) into a new file: before `dd` closes the file, the server already
/// holds a multipart upload of it with parts (and no more of the object than the empty file
/// `dd`'s first `close` created); after, the object is byte-exact, its ETag is a 13-part
/// multipart ETag, and no upload is left in progress.
#[test]
fn streamed_write_sends_parts_before_close() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("stream-dd");
    let m = Mount::new(srv, &bucket);
    let storage = srv.storage_in(&bucket);
    let data = random_bytes(100 * MIB + 12_345, 1);
    let (mut dd, mut pipe) = dd_from_pipe(&m.join("big.bin"));
    pipe.write_all(&data[..96 * MIB]).expect("feed dd");
    // dd has written (almost) 96 MiB and still holds the file open.
    let id = wait_for_parts(&storage, &bucket, "big.bin", 2, &|| m.log());
    assert!(dd.try_wait().unwrap().is_none(), "dd must still be writing");
    // dd opened the file, moved it to stdout with dup2 and closed the first descriptor: that
    // close created the (new) file empty, as for `touch`. The data is only in the upload.
    assert_eq!(
        server_bytes(&storage, "big.bin").map(|b| b.len()),
        Some(0),
        "before close the object is the empty one dd's first close created"
    );
    pipe.write_all(&data[96 * MIB..]).expect("feed dd");
    drop(pipe);
    let st = wait_child(&mut dd, Duration::from_secs(300), "dd");
    assert!(st.success(), "dd: {st}; log:\n{}", m.log());

    let got = server_bytes(&storage, "big.bin").expect("object after close");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "object differs from what dd wrote");
    let etag = etag_of(&storage, &bucket, "big.bin");
    assert!(
        etag.ends_with("-13"),
        "8 MiB parts: 13 of them, got ETag {etag}"
    );
    assert!(
        uploads_of(&storage, &bucket, "big.bin").is_empty(),
        "no upload left in progress"
    );
    let log = m.log();
    assert!(
        log.contains(&format!(
            "streaming the upload while the file is written (upload {id})"
        )),
        "the upload seen before close was the streamed one; log:\n{log}"
    );
    assert!(
        !log.contains("aborting the streamed upload"),
        "the streamed upload was completed, not given up; log:\n{log}"
    );
    // A later close of a clean file uploads nothing: the object stays the same version.
    drop(
        std::fs::OpenOptions::new()
            .write(true)
            .open(m.join("big.bin"))
            .unwrap(),
    );
    assert_eq!(etag_of(&storage, &bucket, "big.bin"), etag);
}

/// A writer that goes back into the part already sent: the streamed upload is aborted, the
/// whole file is uploaded at close, the bytes are exact and no upload is left over.
#[test]
fn write_into_sent_part_falls_back_to_whole_upload() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("stream-seek");
    let m = Mount::new(srv, &bucket);
    let storage = srv.storage_in(&bucket);
    let mut expected = random_bytes(40 * MIB, 2);
    let mut w = Writer::open(&m.join("f.bin"));
    w.write_at(0, &expected);
    let id = wait_for_parts(&storage, &bucket, "f.bin", 1, &|| m.log());
    // Part 1 (bytes 0..8 MiB) is on the server: change 1 MiB inside it.
    let patch = random_bytes(MIB, 3);
    w.write_at(MIB, &patch);
    expected[MIB..2 * MIB].copy_from_slice(&patch);
    let tail = random_bytes(5 * MIB, 4);
    w.write_at(expected.len(), &tail);
    expected.extend_from_slice(&tail);
    w.close(); // uploads

    let got = server_bytes(&storage, "f.bin").expect("object after close");
    assert!(got == expected, "object differs from the file written");
    let left = uploads_of(&storage, &bucket, "f.bin");
    assert!(left.is_empty(), "uploads left: {left:?}");
    let log = m.log();
    assert!(
        log.contains("f.bin: a write changed bytes already sent: aborting the streamed upload"),
        "{log}"
    );
    assert!(log.contains(&id), "{log}");
}

/// `setfattr` on a file while its upload is being streamed: the metadata lands (the streamed
/// upload, whose metadata was fixed at its start, is given up for a whole-file upload).
#[test]
fn setxattr_while_streaming_lands() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("stream-xattr");
    let m = Mount::new(srv, &bucket);
    let storage = srv.storage_in(&bucket);
    let mut expected = random_bytes(30 * MIB, 5);
    let mut w = Writer::open(&m.join("x.bin"));
    w.write_at(0, &expected);
    wait_for_parts(&storage, &bucket, "x.bin", 1, &|| m.log());
    common::sh(&format!(
        "setfattr -n user.x-amz-meta-color -v blue '{}'",
        m.join("x.bin").display()
    ));
    let more = random_bytes(3 * MIB, 6);
    w.write_at(expected.len(), &more);
    expected.extend_from_slice(&more);
    w.close();

    assert!(
        m.log()
            .contains("x.bin: metadata changed while the file was being uploaded: aborting"),
        "the change came while the upload was streamed; log:\n{}",
        m.log()
    );
    let info = storage.head_object(&obj(&bucket, "x.bin")).expect("HEAD");
    assert_eq!(info.metadata.get("color"), Some("blue"), "{info:?}");
    assert!(
        info.metadata.get("mode").is_some(),
        "the file's own metadata is kept too: {info:?}"
    );
    let got = server_bytes(&storage, "x.bin").expect("object");
    assert!(got == expected, "object differs from the file written");
    assert!(uploads_of(&storage, &bucket, "x.bin").is_empty());
}

/// `rm` of a file while its upload is being streamed: no object appears at close and the
/// upload is aborted.
#[test]
fn unlink_while_streaming_aborts() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("stream-unlink");
    let m = Mount::new(srv, &bucket);
    let storage = srv.storage_in(&bucket);
    let mut w = Writer::open(&m.join("gone.bin"));
    w.write_at(0, &random_bytes(24 * MIB, 7));
    wait_for_parts(&storage, &bucket, "gone.bin", 1, &|| m.log());
    std::fs::remove_file(m.join("gone.bin")).unwrap();
    w.write_at(24 * MIB, &random_bytes(MIB, 8));
    w.close();
    assert!(server_bytes(&storage, "gone.bin").is_none());
    assert!(uploads_of(&storage, &bucket, "gone.bin").is_empty());
}

/// `mv` of a file while its upload is being streamed: the rename uploads what is written so far
/// (completing the streamed upload) and moves it; the writer goes on, a new streamed upload
/// starts under the new name, and at close the new name holds the whole file, the old none.
#[test]
fn rename_while_streaming_moves_the_whole_file() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("stream-mv");
    let m = Mount::new(srv, &bucket);
    let storage = srv.storage_in(&bucket);
    let mut expected = random_bytes(24 * MIB, 12);
    let mut w = Writer::open(&m.join("f.bin"));
    w.write_at(0, &expected);
    wait_for_parts(&storage, &bucket, "f.bin", 1, &|| m.log());
    std::fs::rename(m.join("f.bin"), m.join("g.bin")).unwrap();
    let more = random_bytes(10 * MIB, 13);
    w.write_at(expected.len(), &more);
    expected.extend_from_slice(&more);
    w.close();
    assert!(server_bytes(&storage, "f.bin").is_none());
    let got = server_bytes(&storage, "g.bin").expect("object under the new name");
    assert!(got == expected, "object differs from the file written");
    assert!(storage.bucket(&bucket).list_uploads("").unwrap().is_empty());
    let log = m.log();
    assert!(
        log.contains("g.bin: streaming the upload while the file is written"),
        "{log}"
    );
}

/// The library's `StreamingUpload` over a file, with a journal: the entry exists from the start
/// of the upload until it is completed (or aborted), the parts shipped while "writing" and the
/// tail sent at `finish` make the exact object with the upload's metadata.
#[test]
fn streaming_upload_keeps_a_journal_entry_while_it_runs() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("stream-api");
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(UploadJournal::open(dir.path().join("uploads")).unwrap());
    let storage = srv.storage_in(&bucket).with_journal(journal.clone());
    let data = random_bytes(20 * MIB + 5, 11);
    let path = dir.path().join("staging");
    std::fs::write(&path, &data).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut meta = Metadata::new();
    meta.insert("color", "green");
    let opts = PutOptions {
        metadata: meta,
        ..PutOptions::default()
    };

    let mut up = StreamingUpload::start_in(
        &storage.bucket(&bucket),
        "s.bin",
        &opts,
        file.try_clone().unwrap(),
    )
    .unwrap();
    let id = up.upload_id().unwrap().to_string();
    let entries = files_in(journal.dir());
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(read(&entries[0]).contains(&id));
    up.ship_up_to(17 * MIB as u64).unwrap();
    assert_eq!(up.shipped_end(), 16 * MIB as u64, "whole 8 MiB parts only");
    let etag = up
        .finish(data.len() as u64, &PutOptions::default())
        .unwrap()
        .expect("an ETag");
    assert!(etag.ends_with("-3"), "{etag}");
    assert!(
        files_in(journal.dir()).is_empty(),
        "entry removed once completed"
    );
    assert!(server_bytes(&storage, "s.bin").unwrap() == data);
    let info = storage.head_object(&obj(&bucket, "s.bin")).unwrap();
    assert_eq!(info.metadata.get("color"), Some("green"));

    // Aborted: nothing on the server, no entry.
    let mut up = StreamingUpload::start_in(&storage.bucket(&bucket), "t.bin", &opts, file).unwrap();
    up.ship_up_to(data.len() as u64).unwrap();
    assert_eq!(files_in(journal.dir()).len(), 1);
    up.abort().unwrap();
    assert!(files_in(journal.dir()).is_empty());
    assert!(storage.bucket(&bucket).list_uploads("").unwrap().is_empty());
    assert!(server_bytes(&storage, "t.bin").is_none());
}

// ---------------------------------------------------------------------------------------------
// Crashes

/// A foreground s3mount of `bucket` at `mnt` with `cache` as its cache dir, logging to `log`.
fn spawn_mount(srv: &Server, bucket: &str, mnt: &Path, cache: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("AWS_ACCESS_KEY_ID", &srv.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
        .env("RUST_LOG", "s3mount=debug")
        .args([
            "--endpoint",
            &srv.endpoint,
            "--region",
            &srv.region,
            "--foreground",
        ])
        .arg("--cache-dir")
        .arg(cache)
        .arg(bucket)
        .arg(mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start s3mount");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !is_fuse_mount(mnt) {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("s3mount exited ({st}); log:\n{}", read(log));
        }
        assert!(
            Instant::now() < deadline,
            "not mounted; log:\n{}",
            read(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn read(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Lazily unmounts on drop, whatever the test did.
struct LazyUnmount(PathBuf);

impl Drop for LazyUnmount {
    fn drop(&mut self) {
        if is_fuse_mount(&self.0) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
        }
    }
}

/// `kill -9` of s3mount while `dd` overwrites an existing object with 200 MiB and parts are
/// already on the server: the server still has the old object, exactly (content and
/// metadata), next to an orphaned multipart upload; the journal names it. Restarting s3mount
/// with the same cache dir aborts it (nothing left in progress), moves the half-written
/// staging file to `unsaved/`, and `--recover` does not upload it.
#[test]
fn kill_9_mid_upload_keeps_the_old_object_and_restart_aborts_the_upload() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("kill9");
    let storage = srv.storage_in(&bucket);
    let old = random_bytes(3 * MIB + 17, 9);
    let mut meta = Metadata::new();
    meta.insert("color", "old");
    storage
        .bucket(&bucket)
        .put(
            "big.bin",
            RequestBody::Bytes(&old),
            &PutOptions {
                metadata: meta,
                ..PutOptions::default()
            },
        )
        .expect("PUT the old object");
    let dir = tempfile::Builder::new()
        .prefix("s3mount-kill9.")
        .tempdir()
        .unwrap();
    let (mnt, cache, log) = (
        dir.path().join("mnt"),
        dir.path().join("cache"),
        dir.path().join("log"),
    );
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&cache).unwrap();
    let _unmount = LazyUnmount(mnt.clone());
    let mut s3mount = spawn_mount(srv, &bucket, &mnt, &cache, &log);

    // 200 MiB are to be written; s3mount dies once some parts are on the server.
    let new = random_bytes(200 * MIB, 10);
    let (mut dd, mut pipe) = dd_from_pipe(&mnt.join("big.bin"));
    pipe.write_all(&new[..40 * MIB]).expect("feed dd");
    let id = wait_for_parts(&storage, &bucket, "big.bin", 2, &|| read(&log));
    s3mount.kill().expect("kill -9 s3mount");
    let _ = s3mount.wait();
    let _ = pipe.write_all(&new[40 * MIB..41 * MIB]); // dd may already have failed
    drop(pipe);
    let dd_status = wait_child(&mut dd, Duration::from_secs(60), "dd");
    assert!(!dd_status.success(), "dd cannot succeed on a dead mount");
    let st = Command::new("fusermount3")
        .arg("-uz")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "fusermount3 -uz");

    // The server: the old object, exactly; the new bytes only in an invisible upload.
    let info = storage.head_object(&obj(&bucket, "big.bin")).expect("HEAD");
    assert_eq!(info.metadata.get("color"), Some("old"));
    let got = server_bytes(&storage, "big.bin").expect("the old object");
    assert!(got == old, "the object changed: {} bytes", got.len());
    let orphans = uploads_of(&storage, &bucket, "big.bin");
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0].upload_id, id);
    // The journal names it; the staging file holds a prefix of what dd wrote.
    let mount_cache = cache.join(&bucket);
    let entries = files_in(&mount_cache.join("uploads"));
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(read(&entries[0]).contains(&id), "{}", read(&entries[0]));
    let staged = files_in(&mount_cache.join("staging"));
    assert_eq!(staged.len(), 1, "{staged:?}");
    let partial = std::fs::read(&staged[0]).unwrap();
    assert!(partial.len() >= 16 * MIB && partial.len() < new.len());
    assert!(
        partial[..] == new[..partial.len()],
        "staging file is what dd wrote"
    );

    // Restart with the same cache dir: the orphan is aborted before the mount is ready.
    let mut s3mount = spawn_mount(srv, &bucket, &mnt, &cache, &log);
    let left = storage.bucket(&bucket).list_uploads("").unwrap();
    assert!(left.is_empty(), "uploads left after restart: {left:?}");
    assert!(files_in(&mount_cache.join("uploads")).is_empty());
    assert!(files_in(&mount_cache.join("staging")).is_empty());
    let kept = files_in(&mount_cache.join("unsaved"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(std::fs::read(&kept[0]).unwrap() == partial);
    assert!(
        read(&log).contains(&format!("aborted multipart upload {id} left unfinished")),
        "{}",
        read(&log)
    );
    assert!(std::fs::read(mnt.join("big.bin")).unwrap() == old);
    let st = Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    wait_child(&mut s3mount, Duration::from_secs(20), "s3mount");

    // --recover reports the half-written file and does not upload it.
    let out = recover_cmd(srv, &cache).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("maybe incomplete"), "{text}");
    assert!(server_bytes(&storage, "big.bin").unwrap() == old);
}

fn recover_cmd(srv: &Server, cache: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", &srv.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
        .args([
            "--endpoint",
            &srv.endpoint,
            "--region",
            &srv.region,
            "--recover",
        ])
        .arg("--cache-dir")
        .arg(cache)
        .stdin(Stdio::null());
    cmd
}

/// `--recover` aborts the uploads of journal entries no running process holds, and leaves
/// alone the one this (live) process still holds.
#[test]
fn recover_aborts_dead_journal_entries_only() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("journal");
    let storage = srv.storage_in(&bucket);
    let cache = tempfile::tempdir().unwrap();
    let journal = UploadJournal::open(cache.path().join(&bucket).join("uploads")).unwrap();
    let dead = storage
        .create_multipart_upload(&obj(&bucket, "dead"), &PutOptions::default())
        .unwrap();
    let live = storage
        .create_multipart_upload(&obj(&bucket, "live"), &PutOptions::default())
        .unwrap();
    drop(journal.record(&obj(&bucket, "dead"), &dead).unwrap()); // its "process" is gone
    let held = journal.record(&obj(&bucket, "live"), &live).unwrap();

    let out = recover_cmd(srv, cache.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("aborted multipart upload {dead}")),
        "{text}"
    );
    assert!(
        text.contains("1 upload(s) of a running s3mount left alone"),
        "{text}"
    );
    let left: Vec<String> = storage
        .bucket(&bucket)
        .list_uploads("")
        .unwrap()
        .into_iter()
        .map(|u| u.key)
        .collect();
    assert_eq!(left, vec!["live".to_string()]);
    assert_eq!(files_in(journal.dir()), vec![held.path().to_path_buf()]);
    storage
        .abort_multipart_upload(&obj(&bucket, "live"), &live)
        .unwrap();
    held.remove();
    assert!(files_in(journal.dir()).is_empty());
}

/// `--abort-stale-uploads AGE BUCKET:PREFIX/` aborts the uploads under the prefix started more
/// than AGE ago, and nothing else.
///
/// Servers differ in the `<Initiated>` they give: moto (5.2) answers every upload with the
/// fixed date 2010-11-10T20:48:33Z of the S3 documentation's example, Garage and S3 with the
/// real start. Either way an AGE of 100 years keeps the upload and an AGE of 0 aborts it (the
/// date parsing itself is unit-tested on the reference reply in `xml.rs`).
#[test]
fn abort_stale_uploads_by_age_under_the_prefix() {
    if skip_on(ServerLimit::NoListMultipartUploads) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("stale");
    let storage = srv.storage_in(&bucket);
    let inside = storage
        .create_multipart_upload(&obj(&bucket, "in/a"), &PutOptions::default())
        .unwrap();
    let outside = storage
        .create_multipart_upload(&obj(&bucket, "out/b"), &PutOptions::default())
        .unwrap();
    let listed = storage.bucket(&bucket).list_uploads("in/").unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].initiated.is_some(),
        "Initiated is read: {listed:?}"
    );
    let run = |age: &str| {
        let out = Command::new(BIN)
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", &srv.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
            .args(["--endpoint", &srv.endpoint, "--region", &srv.region])
            .args(["--abort-stale-uploads", age])
            .arg(format!("{bucket}:in/"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let text = run("100y");
    assert!(text.contains("0 aborted, 1 younger than"), "{text}");
    assert_eq!(storage.bucket(&bucket).list_uploads("").unwrap().len(), 2);
    let text = run("0s");
    assert!(
        text.contains(&format!(
            "aborted multipart upload {inside} of s3://{bucket}/in/a"
        )),
        "{text}"
    );
    let left = storage.bucket(&bucket).list_uploads("").unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (left[0].key.as_str(), left[0].upload_id.as_str()),
        ("out/b", outside.as_str())
    );
    storage
        .abort_multipart_upload(&obj(&bucket, "out/b"), &outside)
        .unwrap();
}

#[test]
fn a_streamed_file_reads_back_right_after_close() {
    let bucket = server().fresh_bucket("stream-read");
    let mount = Mount::new(server(), &bucket);
    let data = random_bytes(17 * MIB + 300_001, 77);
    let path = mount.join("s.bin");
    // Written front to back in odd-sized writes: streamed (past 16 MiB).
    {
        let mut f = std::fs::File::create(&path).unwrap();
        for chunk in data.chunks(100_003) {
            std::io::Write::write_all(&mut f, chunk).unwrap();
        }
    }
    // After the release too (the kernel sends it after close returns): read from the server.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let back =
        std::fs::read(&path).unwrap_or_else(|e| panic!("read back: {e}; log:\n{}", mount.log()));
    assert!(back == data, "bytes differ");
}
