//! Unmodified programs (tar, rsync, zipfile, git, sqlite3, cp, ln) through a real mount, with
//! results also checked through the S3 API; the upload-failure path at `close()`; start-up
//! refusals; daemon mode.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    is_fuse_mount, random_bytes, server, server_bytes, sh, skip_on, Mount, Server, ServerLimit,
};
use s3mount::s3::ObjectStore;
use s3mount::Storage;

/// Every key of `bucket`.
fn server_keys(storage: &Storage, bucket: &str) -> Vec<String> {
    let (objects, _) = storage.bucket(bucket).list_all("", None).expect("LIST");
    objects.into_iter().map(|o| o.key).collect()
}

/// A small tree: nested dirs, small files, one ~3 MiB file, a symlink, modes 0755/0600.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("top.txt"), b"top level\n").unwrap();
    std::fs::write(root.join("a/one.txt"), b"one\n").unwrap();
    std::fs::write(root.join("a/b/two.bin"), random_bytes(10_000, 2)).unwrap();
    std::fs::write(
        root.join("a/b/c/big.bin"),
        random_bytes(3 * 1024 * 1024 + 17, 3),
    )
    .unwrap();
    std::fs::write(root.join("a/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("a/run.sh"), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(root.join("a/b/secret"), b"shh\n").unwrap();
    std::fs::set_permissions(root.join("a/b/secret"), PermissionsExt::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("b/c/big.bin", root.join("a/link")).unwrap();
    // Old, distinct mtimes, so "kept" and "now" cannot be confused.
    sh(&format!(
        "cd '{}' && touch -h -d '2020-01-02 03:04:05' a/link && find . -not -type l -exec touch -d '2021-05-06 07:08:09' {{}} +",
        root.display()
    ));
}

fn run_out(cmd: &str) -> String {
    String::from_utf8(sh(cmd).stdout).unwrap()
}

#[test]
fn tar_extract_then_create_roundtrips() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("tar");
    let m = Mount::new(server, &bucket);
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src");
    make_tree(&src);
    let l = local.path().display();
    sh(&format!("tar cf {l}/src.tar -C {l}/src ."));
    std::fs::create_dir(m.join("t")).unwrap();
    sh(&format!(
        "tar xf {l}/src.tar -C '{}'",
        m.join("t").display()
    ));
    sh(&format!(
        "tar cf {l}/back.tar -C '{}' .",
        m.join("t").display()
    ));

    let list = |tar: &str| {
        let mut v: Vec<String> = run_out(&format!("tar tf {l}/{tar}"))
            .lines()
            .map(|s| s.trim_end_matches('/').to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list("src.tar"), list("back.tar"));
    // Verbose listings: modes, sizes, mtimes and link targets (owners too: we run as root).
    let verbose = |tar: &str| {
        let mut v: Vec<String> = run_out(&format!("tar tvf {l}/{tar} --full-time"))
            .lines()
            .filter(|s| !s.starts_with('d')) // directory sizes/mtimes are not kept
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(verbose("src.tar"), verbose("back.tar"));
    sh(&format!(
        "mkdir {l}/out && tar xf {l}/back.tar -C {l}/out && diff -r --no-dereference {l}/src {l}/out"
    ));
    // Extracting again over the existing tree (tar unlinks and recreates each member).
    sh(&format!(
        "tar xf {l}/src.tar -C '{}'",
        m.join("t").display()
    ));
    sh(&format!(
        "diff -r --no-dereference {l}/src '{}'",
        m.join("t").display()
    ));

    // Through the S3 API.
    let st = server.storage_in(&bucket);
    assert_eq!(
        server_bytes(&st, "t/a/b/c/big.bin").as_deref(),
        Some(&random_bytes(3 * 1024 * 1024 + 17, 3)[..])
    );
    let meta = st.exists("t/a/b/secret").unwrap().expect("secret exists");
    let mode: u32 = meta.get("mode").expect("mode kept").parse().unwrap();
    assert_eq!(mode & 0o7777, 0o600);
    let meta = st.exists("t/a/link").unwrap().expect("link exists");
    let mode: u32 = meta.get("mode").expect("mode kept").parse().unwrap();
    assert_eq!(mode & 0o170000, 0o120000, "symlink type in x-amz-meta-mode");
    assert_eq!(server_bytes(&st, "t/a/link").unwrap(), b"b/c/big.bin");
}

#[test]
fn rsync_into_mount() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("rsync");
    let m = Mount::new(server, &bucket);
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src");
    make_tree(&src);
    let dst = m.join("r");
    sh(&format!(
        "rsync -a '{}/' '{}/'",
        src.display(),
        dst.display()
    ));
    let changes = run_out(&format!(
        "rsync -a --dry-run --itemize-changes '{}/' '{}/'",
        src.display(),
        dst.display()
    ));
    // Nothing, directories included: rsync set their times after filling them, and the times
    // set replace the ones their new entries moved (else every run copies every marker again).
    assert!(
        changes.trim().is_empty(),
        "rsync would still change:\n{changes}"
    );
    sh(&format!(
        "diff -r --no-dereference '{}' '{}'",
        src.display(),
        dst.display()
    ));

    // Every file is on the server with the right bytes.
    let st = server.storage_in(&bucket);
    let keys = server_keys(&st, &bucket);
    for rel in [
        "top.txt",
        "a/one.txt",
        "a/b/two.bin",
        "a/b/c/big.bin",
        "a/run.sh",
        "a/b/secret",
    ] {
        let want = std::fs::read(src.join(rel)).unwrap();
        let key = format!("r/{rel}");
        assert!(keys.contains(&key), "{key} not in {keys:?}");
        assert_eq!(server_bytes(&st, &key).unwrap(), want, "{key}");
    }
    // No rsync temp files (.name.XXXXXX) left behind.
    assert!(
        keys.iter()
            .all(|k| !k.rsplit('/').next().unwrap().starts_with('.')),
        "{keys:?}"
    );

    // A second run after local changes: rsync writes a temp file and renames it over the old
    // one; a deleted file goes with --delete.
    std::fs::write(src.join("a/one.txt"), b"one, changed and longer\n").unwrap();
    std::fs::remove_file(src.join("top.txt")).unwrap();
    sh(&format!(
        "rsync -a --delete '{}/' '{}/'",
        src.display(),
        dst.display()
    ));
    sh(&format!(
        "diff -r --no-dereference '{}' '{}'",
        src.display(),
        dst.display()
    ));
    assert_eq!(
        server_bytes(&st, "r/a/one.txt").unwrap(),
        b"one, changed and longer\n"
    );
    assert!(st.exists("r/top.txt").unwrap().is_none());
    let keys = server_keys(&st, &bucket);
    assert!(
        keys.iter()
            .all(|k| !k.rsplit('/').next().unwrap().starts_with('.')),
        "{keys:?}"
    );
}

#[test]
fn python_zipfile_roundtrip() {
    let server = server();
    let bucket = server.fresh_bucket("zip");
    let m = Mount::new(server, &bucket);
    let zip = m.join("archive.zip");
    let script = format!(
        r#"
import zipfile, hashlib
members = {{f"m{{i}}.txt": (f"member {{i}} " * (i * 1000 + 1)).encode() for i in range(6)}}
members["blob.bin"] = bytes((i * 7919) % 251 for i in range(300000))
with zipfile.ZipFile({zip:?}, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for n, d in members.items():
        z.writestr(n, d)
    z.writestr("stored.txt", b"stored" * 100, compress_type=zipfile.ZIP_STORED)
members["stored.txt"] = b"stored" * 100
with zipfile.ZipFile({zip:?}) as z:
    assert z.testzip() is None
    assert sorted(z.namelist()) == sorted(members), z.namelist()
    for n, d in members.items():
        assert z.read(n) == d, n
# Append mode: modify in place.
with zipfile.ZipFile({zip:?}, "a") as z:
    z.writestr("later.txt", b"appended")
with zipfile.ZipFile({zip:?}) as z:
    assert z.testzip() is None
    assert z.read("later.txt") == b"appended"
    assert z.read("blob.bin") == members["blob.bin"]
print("ok")
"#,
        zip = zip.display().to_string()
    );
    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("z.py");
    std::fs::write(&py, script).unwrap();
    assert_eq!(run_out(&format!("python3 '{}'", py.display())).trim(), "ok");

    // The object on the server is the same zip.
    let st = server.storage_in(&bucket);
    let bytes = server_bytes(&st, "archive.zip").expect("archive.zip on the server");
    assert_eq!(bytes, std::fs::read(&zip).unwrap());
    let copy = dir.path().join("copy.zip");
    std::fs::write(&copy, bytes).unwrap();
    sh(&format!(
        "python3 -c 'import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; assert len(z.namelist())==9' '{}'",
        copy.display()
    ));
}

#[test]
fn git_init_commit_log_fsck() {
    let server = server();
    let bucket = server.fresh_bucket("git");
    let m = Mount::new(server, &bucket);
    let repo = m.join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("README"), b"hello git\n").unwrap();
    std::fs::create_dir(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/main.c"), b"int main(void) { return 0; }\n").unwrap();
    let g = format!(
        "cd '{}' && git -c user.name=T -c user.email=t@example.com -c init.defaultBranch=main",
        repo.display()
    );
    sh(&format!("{g} init -q"));
    sh(&format!("{g} add -A"));
    sh(&format!("{g} commit -q -m first"));
    std::fs::write(repo.join("README"), b"hello again\n").unwrap();
    sh(&format!("{g} commit -q -am second"));
    let log = run_out(&format!("{g} log --format=%s"));
    assert_eq!(log.lines().collect::<Vec<_>>(), ["second", "first"]);
    sh(&format!("{g} fsck --full --strict"));
    assert_eq!(run_out(&format!("{g} status --porcelain")), "");
    // A clone out of the mount is a working repository too.
    let local = tempfile::tempdir().unwrap();
    sh(&format!(
        "git clone -q '{}' '{}/c' && cat '{}/c/README'",
        repo.display(),
        local.path().display(),
        local.path().display()
    ));
    assert_eq!(
        std::fs::read(local.path().join("c/README")).unwrap(),
        b"hello again\n"
    );
    // The repository is in the bucket.
    let st = server.storage_in(&bucket);
    assert_eq!(
        server_bytes(&st, "repo/.git/HEAD").expect("repo/.git/HEAD on the server"),
        b"ref: refs/heads/main\n"
    );
    let head = run_out(&format!("{g} rev-parse HEAD"));
    assert_eq!(
        server_bytes(&st, "repo/.git/refs/heads/main").expect("the branch ref on the server"),
        head.as_bytes()
    );
    assert!(st.exists("repo/src/main.c").unwrap().is_some());
}

/// A file keeps its inode number across a remount, as on a disk: git's index records `st_ino`,
/// and a file whose number changed is one git must read again (here: download) to know it did
/// not change; `tar --listed-incremental` dumps a directory whose number changed whole. The
/// numbers counted up in the order names were looked up, so after each remount `git status`
/// re-read every file of the work tree (`git diff-files` listed all of them).
#[test]
fn a_remount_keeps_inode_numbers_so_git_reads_no_file_again() {
    let server = server();
    let bucket = server.fresh_bucket("git-ino");
    let m = Mount::new(server, &bucket);
    let repo = m.join("repo");
    std::fs::create_dir_all(repo.join("src/deep")).unwrap();
    for i in 0..8 {
        std::fs::write(repo.join(format!("src/f{i}.c")), format!("int f{i};\n")).unwrap();
    }
    std::fs::write(repo.join("src/deep/d.c"), b"int d;\n").unwrap();
    std::fs::write(repo.join("README"), b"r\n").unwrap();
    let g = |repo: &Path| {
        format!(
            "cd '{}' && git -c user.name=T -c user.email=t@example.com -c init.defaultBranch=main",
            repo.display()
        )
    };
    sh(&format!(
        "{} init -q && {0} add -A && {0} commit -q -m one",
        g(&repo)
    ));
    assert_eq!(run_out(&format!("{} status --porcelain", g(&repo))), "");
    let names = [
        "README",
        "src",
        "src/f0.c",
        "src/f7.c",
        "src/deep",
        "src/deep/d.c",
    ];
    let inos = |m: &Mount| -> Vec<u64> {
        names
            .iter()
            .map(|n| std::fs::metadata(m.join("repo").join(n)).unwrap().ino())
            .collect()
    };
    let before = inos(&m);
    assert!(m.unmount().success());

    let m = Mount::new(server, &bucket);
    let repo = m.join("repo");
    // Names looked up in another order than at the first mount.
    let _ = std::fs::metadata(repo.join("src/deep/d.c"));
    let _ = std::fs::metadata(repo.join("src/f7.c"));
    assert_eq!(
        inos(&m),
        before,
        "inode numbers of {names:?} after a remount"
    );
    assert_eq!(
        run_out(&format!("{} diff-files --name-only", g(&repo))),
        "",
        "files git takes for changed (their stat differs from its index) after a remount"
    );
    assert_eq!(run_out(&format!("{} status --porcelain", g(&repo))), "");
}

#[test]
fn sqlite_database() {
    let server = server();
    let bucket = server.fresh_bucket("sqlite");
    let m = Mount::new(server, &bucket);
    let db = m.join("data.db");
    let q = |sql: &str| run_out(&format!("sqlite3 '{}' \"{sql}\"", db.display()));
    q("PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);");
    q("BEGIN; INSERT INTO t(name) VALUES ('a'),('b'),('c'); COMMIT;");
    q("INSERT INTO t(name) SELECT name || 'x' FROM t;");
    assert_eq!(q("SELECT count(*) FROM t;").trim(), "6");
    assert_eq!(
        q("SELECT group_concat(name, ',') FROM (SELECT name FROM t ORDER BY id);").trim(),
        "a,b,c,ax,bx,cx"
    );
    assert_eq!(q("PRAGMA integrity_check;").trim(), "ok");
    // The journal is gone, locally and on the server.
    assert!(!m.join("data.db-journal").exists());
    let st = server.storage_in(&bucket);
    assert_eq!(server_keys(&st, &bucket), ["data.db"]);
    // The server's copy is the same database.
    let local = tempfile::tempdir().unwrap();
    let copy = local.path().join("copy.db");
    std::fs::write(&copy, server_bytes(&st, "data.db").unwrap()).unwrap();
    assert_eq!(
        run_out(&format!(
            "sqlite3 '{}' 'SELECT count(*) FROM t; PRAGMA integrity_check;'",
            copy.display()
        )),
        "6\nok\n"
    );

    // WAL mode too: the -shm file is mmap'ed shared, locks are the kernel's local ones.
    let wal = m.join("wal.db");
    let w = |sql: &str| run_out(&format!("sqlite3 '{}' \"{sql}\"", wal.display()));
    assert_eq!(w("PRAGMA journal_mode=WAL;").trim(), "wal");
    w("CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);");
    assert_eq!(
        w("SELECT sum(x) FROM t; PRAGMA integrity_check;"),
        "6\nok\n"
    );
    // The last connection checkpoints and removes -wal and -shm.
    let mut keys = server_keys(&st, &bucket);
    keys.sort();
    assert_eq!(keys, ["data.db", "wal.db"]);
}

#[test]
fn make_rebuilds_a_target_whose_prerequisite_changed_within_the_same_second() {
    let server = server();
    let bucket = server.fresh_bucket("make");
    // TTL 0: every `stat` of make's reads the times the server keeps, as after the TTL.
    let m = Mount::with_args(server, &bucket, &["--metadata-ttl", "0"]);
    let dir = m.path().display().to_string();
    std::fs::write(m.join("Makefile"), "out: in\n\tcat in > out\n").unwrap();
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    // A build, then its prerequisite changed (an editor's save), within one second of the
    // clock: tried again when the two straddle a second.
    for _ in 0..5 {
        let start = second();
        sh(&format!(
            "cd '{dir}' && rm -f out && echo a > in && make -s"
        ));
        sh(&format!("cd '{dir}' && echo b >> in"));
        if second() == start {
            break;
        }
    }
    let times = || run_out(&format!("cd '{dir}' && stat -c '%n %y' in out"));
    let out_of_date = || {
        Command::new("make")
            .args(["-q", "-C", &dir])
            .status()
            .unwrap()
            .code()
    };
    // Whole seconds of Last-Modified made both the same, and `make` rebuilt nothing.
    assert_eq!(
        out_of_date(),
        Some(1),
        "make -q says out of date:\n{}",
        times()
    );
    drop(m);
    let m = Mount::new(server, &bucket);
    let dir = m.path().display().to_string();
    assert_eq!(
        Command::new("make")
            .args(["-q", "-C", &dir])
            .status()
            .unwrap()
            .code(),
        Some(1),
        "and after a remount"
    );
    sh(&format!("cd '{dir}' && make -s"));
    assert_eq!(std::fs::read(m.join("out")).unwrap(), b"a\nb\n");
}

#[test]
fn cp_a_out_of_the_mount_keeps_mtimes() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("cpa");
    let m = Mount::new(server, &bucket);
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src");
    make_tree(&src);
    sh(&format!(
        "cp -a '{}' '{}'",
        src.display(),
        m.join("tree").display()
    ));
    let out = local.path().join("out");
    sh(&format!(
        "cp -a '{}' '{}'",
        m.join("tree").display(),
        out.display()
    ));
    for rel in [
        "top.txt",
        "a/one.txt",
        "a/b/two.bin",
        "a/b/c/big.bin",
        "a/run.sh",
        "a/b/secret",
        "a/link",
    ] {
        let in_mount = std::fs::symlink_metadata(m.join("tree").join(rel)).unwrap();
        let copied = std::fs::symlink_metadata(out.join(rel)).unwrap();
        let orig = std::fs::symlink_metadata(src.join(rel)).unwrap();
        assert_eq!(
            (copied.mtime(), copied.mtime_nsec()),
            (in_mount.mtime(), in_mount.mtime_nsec()),
            "{rel}: mtime of the copy vs the mount"
        );
        assert_eq!(
            in_mount.mtime(),
            orig.mtime(),
            "{rel}: mtime kept by cp -a in"
        );
        assert_eq!(copied.mode(), orig.mode(), "{rel}: mode");
        assert_eq!(copied.len(), orig.len(), "{rel}: size");
    }
    sh(&format!(
        "diff -r --no-dereference '{}' '{}'",
        src.display(),
        out.display()
    ));
}

#[test]
fn symlink_and_readlink() {
    let server = server();
    let bucket = server.fresh_bucket("symlink");
    let m = Mount::new(server, &bucket);
    std::fs::write(m.join("target.txt"), b"pointed at\n").unwrap();
    sh(&format!(
        "cd '{}' && ln -s target.txt rel && ln -s /nonexistent/abs dangling",
        m.path().display()
    ));
    assert_eq!(
        run_out(&format!("readlink '{}'", m.join("rel").display())),
        "target.txt\n"
    );
    assert_eq!(
        run_out(&format!("readlink '{}'", m.join("dangling").display())),
        "/nonexistent/abs\n"
    );
    assert_eq!(std::fs::read(m.join("rel")).unwrap(), b"pointed at\n");
    assert!(std::fs::symlink_metadata(m.join("rel"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!m.join("dangling").exists());
    // Stored the s3fs way.
    let st = server.storage_in(&bucket);
    assert_eq!(server_bytes(&st, "rel").unwrap(), b"target.txt");
    let mode: u32 = st
        .exists("rel")
        .unwrap()
        .unwrap()
        .get("mode")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(mode & 0o170000, 0o120000);
    // A second mount reads them the same.
    drop(m);
    let m2 = Mount::new(server, &bucket);
    assert_eq!(
        std::fs::read_link(m2.join("dangling")).unwrap(),
        PathBuf::from("/nonexistent/abs")
    );
    sh(&format!("rm '{}'", m2.join("rel").display()));
    assert!(st.exists("rel").unwrap().is_none());
    assert!(st.exists("target.txt").unwrap().is_some());
}

/// A separate server this test can stop, stopped on drop in any case.
struct OwnServer {
    server: Server,
    stopped: bool,
}

impl OwnServer {
    fn start() -> OwnServer {
        OwnServer {
            server: Server::start(),
            stopped: false,
        }
    }

    fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-server");
            let st = Command::new(script)
                .arg("stop")
                .arg(self.server.pid.to_string())
                .stdin(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "s3-server stop failed");
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-server");
            let _ = Command::new(script)
                .arg("stop")
                .arg(self.server.pid.to_string())
                .status();
        }
    }
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn close_fails_with_eio_keeps_the_bytes_and_recover_uploads_them() {
    let started = Instant::now();
    let mut own = OwnServer::start();
    let bucket = own.server.fresh_bucket("durable");
    let st = own.server.storage_in(&bucket);
    // A short budget: the server stopped below is not coming back.
    let m = Mount::with_args(&own.server, &bucket, &["--retry-timeout", "1"]);
    let data = random_bytes(1024 * 1024, 42);
    // A name ending in a space: a note read line by line and trimmed would send the content
    // to `precious.bin`, another object.
    let name = "precious.bin ";
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("data"), &data).unwrap();
    // The writer is a separate process that does not fork: any process forked while the file
    // is open (by this multi-threaded test binary, e.g. `s3-server stop`) inherits the
    // descriptor, and its exec closes it, which FLUSHes — and uploads — before we stop the
    // server.
    let script = r#"
import os, sys
data = open(sys.argv[2], "rb").read()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data)
print("written", flush=True)
sys.stdin.readline()
try:
    os.close(fd)
    print("close ok", flush=True)
except OSError as e:
    print("close errno", e.errno, flush=True)
"#;
    let mut writer = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(m.join(name))
        .arg(local.path().join("data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(writer.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "written");
    // Nothing is uploaded before close.
    assert!(st.exists(name).unwrap().is_none());
    own.stop();
    writer.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(writer.wait().unwrap().success());
    assert_eq!(
        line.trim(),
        format!("close errno {}", libc::EIO),
        "close() must fail with EIO when the server is gone; log:\n{}",
        m.log()
    );

    // The bytes are kept under <cache-dir>/…/unsaved/, with a note naming the key.
    let unsaved: Vec<PathBuf> = files_under(m.cache_dir())
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "unsaved"))
        .collect();
    let note = unsaved
        .iter()
        .find(|p| {
            p.extension().is_some_and(|e| e == "key")
                && std::fs::read_to_string(p).is_ok_and(|s| {
                    s.lines().next() == Some(format!("s3://{bucket}/{name}").as_str())
                })
        })
        .unwrap_or_else(|| {
            panic!(
                "no .key note for {name:?} in {unsaved:?}\nlog:\n{}",
                m.log()
            )
        });
    let saved = note.with_extension("data");
    assert_eq!(std::fs::read(&saved).unwrap(), data, "{}", saved.display());
    assert!(
        m.log().contains(&saved.display().to_string()),
        "the log names the saved copy:\n{}",
        m.log()
    );
    // The last release tries again, fails again, and drops the staging file: the saved copy
    // stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.log().matches("upload failed").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second upload attempt; log:\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    let staging: Vec<PathBuf> = files_under(m.cache_dir())
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "staging"))
        .collect();
    assert!(staging.is_empty(), "staging files left: {staging:?}");

    // `s3mount --recover` uploads it once a server is back (a new one here, with the same
    // bucket), with the Content-Type the upload carried, and removes the saved copy.
    let note_text = std::fs::read_to_string(note).unwrap();
    assert!(note_text.contains("content-type: "), "{note_text}");
    let back = OwnServer::start();
    back.server.storage().create_bucket(&bucket).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_s3mount"))
        .arg("--recover")
        .args(["--endpoint", &back.server.endpoint, "--region", "us-east-1"])
        .arg("--cache-dir")
        .arg(m.cache_dir())
        .env("AWS_ACCESS_KEY_ID", &back.server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &back.server.secret_key)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("1 uploaded, 0 left"), "{said}");
    let recovered = back.server.storage_in(&bucket);
    assert_eq!(server_bytes(&recovered, name).as_deref(), Some(&data[..]));
    let obj = s3mount::s3::ObjectRef {
        bucket: bucket.clone(),
        key: name.into(),
    };
    let info = recovered.head_object(&obj).unwrap();
    assert!(recovered.exists("precious.bin").unwrap().is_none());
    assert_eq!(info.content_type(), Some("application/octet-stream"));
    assert!(
        !saved.exists() && !note.exists(),
        "the saved copy is removed once uploaded"
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
}

/// Run the binary in the foreground against `endpoint` with these keys; it must refuse before
/// mounting. Returns its stderr.
fn refused_mount(endpoint: &str, access: &str, secret: &str, bucket: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_s3mount"))
        .args([
            "--foreground",
            "--region",
            "us-east-1",
            "--endpoint",
            endpoint,
        ])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg(bucket)
        .arg(&mnt)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("RUST_LOG")
        .env("AWS_ACCESS_KEY_ID", access)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: kill it if it mounted (or hangs) instead of refusing.
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if is_fuse_mount(&mnt) || started.elapsed() > Duration::from_secs(60) {
            let _ = Command::new("fusermount3").arg("-u").arg(&mnt).status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "s3mount did not refuse (mounted or still running after {:?})",
                started.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!status.success(), "exit status {status}; stderr:\n{stderr}");
    assert!(!is_fuse_mount(&mnt), "mounted anyway");
    // Warnings may precede it; the last line says why, once.
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("s3mount: "),
        "a clear last line:\n{stderr}"
    );
    eprintln!("refused in {:?}: {stderr}", started.elapsed());
    stderr
}

#[test]
fn refuses_a_missing_bucket() {
    let s = server();
    let err = refused_mount(
        &s.endpoint,
        &s.access_key,
        &s.secret_key,
        "no-such-bucket-here",
    );
    assert!(err.contains("no-such-bucket-here"), "{err}");
    assert!(
        err.contains("NoSuchBucket") || err.to_lowercase().contains("does not exist"),
        "{err}"
    );
}

#[test]
fn refuses_a_wrong_secret() {
    let s = server();
    let bucket = s.fresh_bucket("badsecret");
    let err = refused_mount(
        &s.endpoint,
        &s.access_key,
        "definitely-not-the-secret",
        &bucket,
    );
    // S3 and moto answer SignatureDoesNotMatch; Garage 2.5 AccessDenied ("Invalid signature").
    assert!(
        err.contains("SignatureDoesNotMatch")
            || err.contains("AccessDenied")
            || err.contains("403"),
        "{err}"
    );
    assert!(
        !err.contains("definitely-not-the-secret"),
        "the secret leaked: {err}"
    );
}

#[test]
fn refuses_an_endpoint_that_does_not_answer() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = refused_mount(
        &format!("http://127.0.0.1:{port}"),
        "AKIAX",
        "secret",
        "bucket",
    );
    assert!(
        err.contains(&port.to_string()) || err.to_lowercase().contains("connect"),
        "{err}"
    );
}

/// PIDs of processes whose command line mentions `needle`.
fn pids_with_arg(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if cmd.split(|&b| b == 0).any(|a| a == needle.as_bytes()) {
                out.push(pid);
            }
        }
    }
    out
}

/// Unmounts on drop (the daemon is not our child).
struct DaemonGuard(PathBuf);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if is_fuse_mount(&self.0) {
            let _ = Command::new("fusermount3").arg("-u").arg(&self.0).status();
            if is_fuse_mount(&self.0) {
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
    }
}

#[test]
fn daemon_mode_returns_once_mounted_and_exits_on_umount() {
    let s = server();
    let bucket = s.fresh_bucket("daemon");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hi\n").unwrap();
    s.storage_in(&bucket)
        .write(
            dir.path().join("hello.txt"),
            "hello.txt",
            &s3mount::Headers::new(),
        )
        .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = File::create(dir.path().join("log")).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_s3mount"))
        .args(["--region", &s.region, "--endpoint", &s.endpoint])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg(&bucket)
        .arg(&mnt)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", &s.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &s.secret_key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // The daemon keeps stderr for its log: never a pipe we would wait on.
        .stderr(Stdio::from(log))
        .status()
        .unwrap();
    let _guard = DaemonGuard(mnt.clone());
    let log_text = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert!(status.success(), "{status}; log:\n{}", log_text());
    // Usable at once: no waiting.
    assert!(is_fuse_mount(&mnt), "not mounted when the command returned");
    assert_eq!(run_out(&format!("ls '{}'", mnt.display())), "hello.txt\n");
    assert_eq!(std::fs::read(mnt.join("hello.txt")).unwrap(), b"hi\n");
    let pids = pids_with_arg(&mnt.display().to_string());
    assert_eq!(pids.len(), 1, "one background process: {pids:?}");
    let pid = pids[0];

    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success(), "umount failed");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Path::new(&format!("/proc/{pid}")).exists() {
        // A zombie would need a parent to reap it; init does that for a daemon.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.split(' ').nth(2) == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the background process {pid} still runs after umount; log:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_fuse_mount(&mnt));
}
