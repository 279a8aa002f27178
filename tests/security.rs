//! Who gets in: other users and a mount (private by default, `--allow-other`, the kernel's mode
//! checks), and the server (TLS verified against the system's CAs or `--ca-file`, `tls:` of
//! the config).
//!
//! Other users are played by uid/gid 65534 (`setpriv`). The TLS endpoint is a small Python TLS
//! terminator (certificates made with `openssl`: a CA and a server certificate for 127.0.0.1)
//! that forwards the bytes to the local S3 server, so SigV4 still verifies.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{Fault, Proxy, Rule};
use common::{as_nobody, is_fuse_mount, server, server_bytes, skip_on, Mount, Server, ServerLimit};
use s3mount::s3::ObjectStore;
use s3mount::s3::{PutOptions, RequestBody};
use s3mount::{Metadata, Storage};

const NOBODY: &str = "65534";

use common::obj;

fn put(st: &Storage, bucket: &str, key: &str, data: &[u8], meta: &[(&str, &str)]) {
    let metadata: Metadata = meta.iter().copied().collect();
    st.bucket(bucket)
        .put(
            key,
            RequestBody::Bytes(data),
            &PutOptions {
                metadata,
                ..PutOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

fn text(o: &Output) -> String {
    format!(
        "status {}, stdout {:?}, stderr {:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Let others walk to the mount point (the fixture's temp dir is 0700), so that what they get
/// is the mount's answer, not the parent directory's.
fn open_path_to(m: &Mount) {
    let parent = m.path().parent().unwrap();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `o` failed with EACCES ("Permission denied"); `what` names the attempt.
fn assert_denied(o: &Output, what: &str) {
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{what}: {}",
        text(o)
    );
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn a_private_mount_refuses_other_users() {
    let srv = server();
    let bucket = srv.fresh_bucket("private");
    let st = srv.storage_in(&bucket);
    put(&st, &bucket, "open.txt", b"hello", &[]);
    let m = Mount::new(srv, &bucket);
    open_path_to(&m);
    // The same user (root) reads it ...
    assert_eq!(std::fs::read(m.join("open.txt")).unwrap(), b"hello");
    // ... another one gets EACCES for everything, even for a world-readable file.
    for script in [
        format!("ls {}", q(m.path())),
        format!("stat {}", q(&m.join("open.txt"))),
        format!("cat {}", q(&m.join("open.txt"))),
        format!("echo x > {}", q(&m.join("new.txt"))),
    ] {
        assert_denied(&as_nobody(&script), &script);
    }
    assert_eq!(server_bytes(&st, "new.txt"), None);
}

#[test]
fn allow_other_lets_others_in_under_the_mode_bits() {
    // The 0700 directory's mode lives in its marker's metadata.
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("allow-other");
    let st = srv.storage_in(&bucket);
    // No mode metadata: 0644 owned by the mounting user (root).
    put(&st, &bucket, "public.txt", b"for everyone", &[]);
    // 0600 and a 0700 directory, owned by root, in metadata as s3fs writes it.
    put(
        &st,
        &bucket,
        "secret.txt",
        b"root only",
        &[
            ("mode", &(0o100600u32).to_string()),
            ("uid", "0"),
            ("gid", "0"),
        ],
    );
    put(
        &st,
        &bucket,
        "private/",
        b"",
        &[
            ("mode", &(0o040700u32).to_string()),
            ("uid", "0"),
            ("gid", "0"),
        ],
    );
    put(&st, &bucket, "private/inside.txt", b"hidden", &[]);
    // Owned by nobody, 0600: nobody's own.
    put(
        &st,
        &bucket,
        "nobodys.txt",
        b"mine",
        &[
            ("mode", &(0o100600u32).to_string()),
            ("uid", NOBODY),
            ("gid", NOBODY),
        ],
    );
    let m = Mount::with_args(srv, &bucket, &["--allow-other"]);
    open_path_to(&m);
    let run = |script: String| (as_nobody(&script), script);

    // Others can list and read what the modes allow ...
    let (o, s) = run(format!("ls {}", q(m.path())));
    assert!(o.status.success(), "{s}: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("public.txt"));
    let (o, s) = run(format!("cat {}", q(&m.join("public.txt"))));
    assert!(o.status.success(), "{s}: {}", text(&o));
    assert_eq!(o.stdout, b"for everyone");
    let (o, s) = run(format!("cat {}", q(&m.join("nobodys.txt"))));
    assert!(o.status.success(), "{s}: {}", text(&o));
    assert_eq!(o.stdout, b"mine");

    // ... and nothing else: the kernel checks the mode bits (default_permissions).
    for script in [
        format!("cat {}", q(&m.join("secret.txt"))),
        format!("ls {}", q(&m.join("private"))),
        format!("cat {}", q(&m.join("private/inside.txt"))),
        format!("echo x >> {}", q(&m.join("public.txt"))),
        format!("echo x > {}", q(&m.join("new.txt"))),
        format!("rm {}", q(&m.join("public.txt"))),
        format!(
            "setfattr -n user.x-amz-meta-a -v b {}",
            q(&m.join("public.txt"))
        ),
    ] {
        let (o, s) = run(script);
        assert_denied(&o, &s);
    }
    // Nothing changed on the server; root still reads everything.
    assert_eq!(
        server_bytes(&st, "public.txt").as_deref(),
        Some(&b"for everyone"[..])
    );
    assert_eq!(server_bytes(&st, "new.txt"), None);
    let h = st.head_object(&obj(&bucket, "public.txt")).unwrap();
    assert!(h.metadata.get("a").is_none());
    assert_eq!(std::fs::read(m.join("secret.txt")).unwrap(), b"root only");
    // Opening up the mode opens the file (the check follows the metadata).
    common::sh(&format!("chmod 644 {}", q(&m.join("secret.txt"))));
    let (o, s) = run(format!("cat {}", q(&m.join("secret.txt"))));
    assert!(o.status.success(), "{s}: {}", text(&o));
}

// ---- The cache directory -------------------------------------------------------------------

const MIB: usize = 1024 * 1024;
/// The umask the mount runs under in these tests: the usual one, which would leave 0755
/// directories and 0644 files if s3mount relied on it.
const USUAL_UMASK: libc::mode_t = 0o022;
/// A file this large, written front to back, is streamed as a multipart upload before close
/// (the threshold is 16 MiB), so its journal entry and staging file exist while it is open.
const STREAMED_SIZE: usize = 24 * MIB;
/// How long to wait for something the mount does in the background (a cached block, the
/// journal entry of a streamed upload) before failing.
const BACKGROUND_WAIT: Duration = Duration::from_secs(60);

/// Everything under `dir`, `dir` included, as its owner sees it (symlinks not followed). The
/// mount keeps working meanwhile (a block's temporary file renamed into place, a staging file
/// removed): what vanishes between the listing and the look is left out.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let is_dir = match std::fs::symlink_metadata(&out[i]) {
            Ok(md) => md.is_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => panic!("{}: {e}", out[i].display()),
        };
        if is_dir {
            let entries = match std::fs::read_dir(&out[i]) {
                Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => panic!("{}: {e}", out[i].display()),
            };
            let mut more: Vec<PathBuf> = entries;
            more.sort();
            out.extend(more);
        }
        i += 1;
    }
    out
}

/// Wait until some path under `dir` satisfies `pred`; panic naming `what` otherwise.
fn wait_for_path(dir: &Path, what: &str, pred: impl Fn(&Path) -> bool) -> PathBuf {
    let deadline = Instant::now() + BACKGROUND_WAIT;
    loop {
        if let Some(p) = tree(dir).into_iter().find(|p| pred(p)) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} under {} after {BACKGROUND_WAIT:?}: {:?}",
            dir.display(),
            tree(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Nothing under `cache` can be listed or read by another user: every directory is 0700 and
/// every file 0600, owned by the mounting user (root), and uid 65534 gets EACCES for each of
/// them (`find` lists nothing below `cache`; `ls`/`cat` of each path is refused).
fn assert_cache_private(cache: &Path) {
    let paths = tree(cache);
    for p in &paths {
        let md = match std::fs::symlink_metadata(p) {
            Ok(md) => md,
            // Gone since the walk (see `tree`): nothing left to be open.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", p.display()),
        };
        let mode = md.permissions().mode() & 0o7777;
        let want = if md.is_dir() {
            0o700
        } else if md.is_file() {
            0o600
        } else {
            panic!("{}: neither a file nor a directory", p.display())
        };
        assert_eq!(mode, want, "{}: mode {mode:04o}", p.display());
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&md),
            0,
            "{}",
            p.display()
        );
    }
    let o = as_nobody(&format!("find {}", q(cache)));
    assert_denied(&o, "find");
    let listed: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(listed, [cache.display().to_string()], "find: {}", text(&o));
    let mut script = String::new();
    for p in &paths {
        let try_it = if p.is_dir() { "ls -A --" } else { "cat --" };
        script.push_str(&format!(
            "if out=$({try_it} {} 2>&1 >/dev/null); then echo OPEN; else echo \"DENIED $out\"; fi\n",
            q(p)
        ));
    }
    let o = as_nobody(&script);
    let answers: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(answers.len(), paths.len(), "{}", text(&o));
    for (p, a) in paths.iter().zip(&answers) {
        assert!(
            a.starts_with("DENIED") && a.contains("Permission denied"),
            "{} is open to another user: {a}",
            p.display()
        );
    }
}

/// Mount privately or with `extra` (e.g. `--allow-other`) under umask 022, read a file others
/// may not read, write a small file, keep a streamed (multipart) one open, fail an upload on
/// purpose: then everything the cache dir holds — data blocks, the staging file, the journal
/// entry, `unsaved/` data and note, the log, the lock — is closed to another user.
fn cache_dir_holds_nothing_for_others(hint: &str, extra: &[&str]) {
    let srv = server();
    let bucket = srv.fresh_bucket(hint);
    let st = srv.storage_in(&bucket);
    let secret = common::random_bytes(3 * MIB + 5, 16);
    let root_only = (0o100600u32).to_string();
    put(
        &st,
        &bucket,
        "secret.bin",
        &secret,
        &[("mode", &root_only), ("uid", "0"), ("gid", "0")],
    );
    let proxy = Proxy::start(&srv.endpoint);
    let dir = tempfile::tempdir().unwrap();
    // Others may walk to the cache dir: what stops them must be the cache dir itself.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = dir.path().join("cache");
    let log = cache.join("s3mount.log");
    let log_s = log.display().to_string();
    // A short retry budget: the upload failed on purpose below fails for good.
    let mut args = vec!["--log-file", &log_s, "--retry-timeout", "1"];
    args.extend_from_slice(extra);
    let m = Mount::with_umask(
        &srv.via(proxy.endpoint()),
        &bucket,
        Some(&cache),
        &args,
        USUAL_UMASK,
    );
    open_path_to(&m);
    let said = || std::fs::read_to_string(&log).unwrap_or_default();

    // The mount refuses the other user (privately: everything; allow_other: by the mode) ...
    assert_denied(
        &as_nobody(&format!("cat {}", q(&m.join("secret.bin")))),
        "cat through the mount",
    );
    // ... while the owner reads it: its blocks land in the data cache.
    assert!(std::fs::read(m.join("secret.bin")).unwrap() == secret);
    wait_for_path(&cache, "cached data block", |p| {
        p.parent().and_then(Path::parent).map(Path::file_name) == Some(Some("data".as_ref()))
            && p.is_file()
    });
    std::fs::write(m.join("small.txt"), b"a small secret").unwrap();

    // A large file still being written: streamed, so its staging file and journal entry exist.
    // Another process holds it open: a copy of the descriptor in this process would be closed
    // (so flushed, so uploaded) by every child process any test thread spawns.
    let big = common::random_bytes(STREAMED_SIZE, 17);
    let big_src = dir.path().join("big.src");
    std::fs::write(&big_src, &big).unwrap();
    let mut writer = Command::new("python3")
        .arg("-c")
        .arg("import sys\nf=open(sys.argv[2],'wb')\nf.write(open(sys.argv[1],'rb').read())\nf.flush()\nprint('written',flush=True)\nsys.stdin.readline()\nf.close()")
        .arg(&big_src)
        .arg(m.join("big.bin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(writer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "written", "log:\n{}", said());
    wait_for_path(&cache, "journal entry of the streamed upload", |p| {
        p.extension().is_some_and(|e| e == "upload")
    });

    // An upload that fails: its content and note are kept under unsaved/.
    proxy.add(Rule::new("PUT", "/lost.txt", Fault::InternalError));
    let mut f = std::fs::File::create(m.join("lost.txt")).unwrap();
    std::io::Write::write_all(&mut f, b"kept after a failed upload").unwrap();
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: we own fd (taken out of the File) and close it once.
    assert_ne!(
        unsafe { libc::close(fd) },
        0,
        "close must report the failure"
    );
    assert!(proxy.faults() > 0);

    let paths = tree(&cache);
    let has = |what: &str, pred: &dyn Fn(&Path) -> bool| {
        assert!(
            paths.iter().any(|p| pred(p)),
            "no {what} in the cache dir: {paths:?}\nlog:\n{}",
            said()
        );
    };
    let under = |p: &Path, d: &str| p.parent().and_then(Path::file_name) == Some(d.as_ref());
    let ext = |p: &Path, e: &str| p.extension().is_some_and(|x| x == e);
    has("log", &|p| p == log);
    has("staging file", &|p| under(p, "staging"));
    has("unsaved data", &|p| under(p, "unsaved") && ext(p, "data"));
    has("unsaved note", &|p| under(p, "unsaved") && ext(p, "key"));
    has("journal entry", &|p| {
        under(p, "uploads") && ext(p, "upload")
    });
    has("data cache lock", &|p| {
        under(p, "data") && p.ends_with("lock")
    });
    assert_cache_private(&cache);

    // The streamed upload completes at close; the cache stays as closed as it was.
    drop(writer.stdin.take());
    assert!(writer.wait().unwrap().success());
    assert!(server_bytes(&st, "big.bin").unwrap() == big);
    assert_eq!(
        server_bytes(&st, "small.txt").as_deref(),
        Some(&b"a small secret"[..])
    );
    assert_eq!(server_bytes(&st, "lost.txt"), None);
    drop(m);
    assert_cache_private(&cache);
}

/// Issue 16: the cache dir of a private mount hands nobody the bytes the mount refuses.
#[test]
fn the_cache_dir_of_a_private_mount_is_closed_to_other_users() {
    cache_dir_holds_nothing_for_others("cache-private", &[]);
}

/// With `--allow-other` the kernel checks each object's mode through the mount; the cache dir
/// must not undo that.
#[test]
fn the_cache_dir_of_an_allow_other_mount_is_closed_to_other_users() {
    cache_dir_holds_nothing_for_others("cache-allow-other", &["--allow-other"]);
}

fn as_strs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

/// `s3mount ARGS` in the foreground, expected to refuse before mounting: what it said.
fn refused(args: &[&str], mnt: &Path) -> String {
    try_mount(args, mnt).expect_err("mounted on a cache dir it should refuse")
}

/// A cache dir (and bucket subdirectory) left open by an earlier version is tightened at
/// start, what was inside becomes unreachable; someone else's is refused with one line, unless
/// `--allow-shared-cache`; `--recover` follows the same rules.
#[test]
fn an_open_cache_dir_is_tightened_and_someone_elses_refused() {
    let srv = server();
    let bucket = srv.fresh_bucket("cache-open");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let open_dir = |p: &Path| {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;

    // Ours, 0755, with a 0644 block an earlier version left in a 0755 subdirectory.
    let cache = dir.path().join("ours");
    let old = cache.join(&bucket).join("data/ab/old-block");
    open_dir(old.parent().unwrap());
    open_dir(&cache.join(&bucket));
    open_dir(&cache);
    std::fs::write(&old, b"cached before the fix").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = as_nobody(&format!("cat {}", q(&old)));
    assert!(o.status.success(), "the setup is open: {}", text(&o));
    let m = Mount::with_umask(srv, &bucket, Some(&cache), &[], USUAL_UMASK);
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&cache.join(&bucket)), 0o700);
    assert_denied(
        &as_nobody(&format!("cat {}", q(&old))),
        "cat of an old block",
    );
    assert!(
        m.log()
            .contains("was mode 0755, open to other users; now 0700"),
        "{}",
        m.log()
    );
    drop(m);

    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt_s = mnt.display().to_string();
    let mount_args = |cache: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "-f",
            "--endpoint",
            &srv.endpoint,
            "--region",
            &srv.region,
            "--cache-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(cache.display().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push(bucket.clone());
        a.push(mnt_s.clone());
        a
    };
    let one_line_naming = |said: &str, path: &Path, mode: &str| {
        let line = said
            .lines()
            .find(|l| l.starts_with("s3mount: cache dir"))
            .unwrap_or_else(|| panic!("no refusal naming the cache dir: {said}"));
        for part in [
            &format!("s3mount: cache dir {} ", path.display()),
            mode,
            "owner uid 65534",
            "--allow-shared-cache",
        ] {
            assert!(line.contains(part), "{part:?} missing from {line:?}");
        }
    };

    // Someone else's (uid 65534), 0755: refused, left as it was, nothing created in it.
    let theirs = dir.path().join("theirs");
    open_dir(&theirs);
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let said = refused(&as_strs(&mount_args(&theirs, &[])), &mnt);
    one_line_naming(&said, &theirs, "mode 0755");
    assert_eq!(mode(&theirs), 0o755);
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
    // The operator says it is meant to be shared: used as it is; what s3mount creates in it
    // is private all the same.
    try_mount(
        &as_strs(&mount_args(&theirs, &["--allow-shared-cache"])),
        &mnt,
    )
    .expect("--allow-shared-cache mounts");
    assert_eq!(mode(&theirs), 0o755);
    assert_eq!(mode(&theirs.join(&bucket)), 0o700);
    // The same as a mount option.
    try_mount(
        &as_strs(&mount_args(&theirs, &["-o", "allow_shared_cache"])),
        &mnt,
    )
    .expect("-o allow_shared_cache mounts");

    // Ours, but the bucket's subdirectory is someone else's: refused too.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    open_dir(&mixed.join(&bucket));
    std::os::unix::fs::chown(mixed.join(&bucket), Some(65534), Some(65534)).unwrap();
    let said = refused(&as_strs(&mount_args(&mixed, &[])), &mnt);
    one_line_naming(&said, &mixed.join(&bucket), "mode 0755");

    // --recover: the same rules.
    let recover = |cache: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3mount"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", &srv.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
            .args(["--endpoint", &srv.endpoint, "--region", &srv.region])
            .arg("--recover")
            .arg("--cache-dir")
            .arg(cache)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let again = dir.path().join("again");
    open_dir(&again.join(&bucket));
    open_dir(&again);
    let o = recover(&again);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&again), 0o700);
    assert_eq!(mode(&again.join(&bucket)), 0o700);
    let o = recover(&theirs);
    assert!(!o.status.success(), "{}", text(&o));
    one_line_naming(&String::from_utf8_lossy(&o.stderr), &theirs, "mode 0755");
}

// ---- TLS -----------------------------------------------------------------------------------

/// A CA and a certificate for 127.0.0.1/localhost signed by it, in a temp dir.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn make() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        common::sh(&format!(
            "cd '{d}' && \
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
               -keyout ca.key -out ca.pem -days 2 -subj '/CN=s3mount test CA' \
               -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null && \
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
               -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null && \
             printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && \
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
               -out server.pem -days 2 -extfile ext.cnf 2>/dev/null"
        ));
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Python TLS terminator in front of the plain-HTTP test server; stopped on drop (and by
/// itself when this process goes away).
struct TlsFront {
    child: Child,
    port: u16,
}

const TLS_FRONT: &str = r#"
import os, socket, ssl, sys, threading, time
cert, key, up = sys.argv[1], sys.argv[2], int(sys.argv[3])
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0))
ls.listen(64)
print(ls.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except Exception:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except Exception:
            pass
def handle(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except Exception:
        c.close()
        return
    u = socket.create_connection(("127.0.0.1", up))
    threading.Thread(target=pipe, args=(t, u), daemon=True).start()
    pipe(u, t)
while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

impl TlsFront {
    fn start(certs: &Certs, upstream: &str) -> TlsFront {
        let port: u16 = upstream
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .expect("upstream port");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(TLS_FRONT)
            .arg(certs.path("server.pem"))
            .arg(certs.path("server.key"))
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("TLS front's port");
        let port = line.trim().parse().expect("a port number");
        TlsFront { child, port }
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test server's credentials with another endpoint.
fn at(endpoint: &str) -> Server {
    let s = server();
    Server {
        endpoint: endpoint.to_string(),
        access_key: s.access_key.clone(),
        secret_key: s.secret_key.clone(),
        region: s.region.clone(),
        pid: s.pid,
        log: s.log.clone(),
    }
}

/// Run s3mount in the foreground with `args` (ending with the mount point `mnt`): `Ok` once
/// mounted (then unmounted again), `Err(output)` if it exits first.
fn try_mount(args: &[&str], mnt: &Path) -> Result<(), String> {
    let srv = server();
    let log = mnt.with_extension("log");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3mount"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &srv.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &srv.secret_key)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if is_fuse_mount(mnt) {
            let ok = Command::new("fusermount3").arg("-u").arg(mnt).status();
            assert!(
                matches!(ok, Ok(s) if s.success()),
                "unmount {}",
                mnt.display()
            );
            let _ = child.wait();
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!st.success(), "exited 0 without mounting: {said}");
            return Err(said);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("neither mounted nor refused after 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config_file(dir: &Path, name: &str, bucket: &str, endpoint: &str, tls: Option<bool>) -> PathBuf {
    let srv = server();
    let tls = tls.map(|t| format!("    tls: {t}\n")).unwrap_or_default();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "s3:\n    access_key_id: \"{}\"\n    secret_access_key: \"{}\"\n    default_bucket: \"{bucket}\"\n    endpoint: \"{endpoint}\"\n    region: \"{}\"\n{tls}",
            srv.access_key, srv.secret_key, srv.region
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn tls_is_verified_unless_the_ca_is_given() {
    let srv = server();
    let bucket = srv.fresh_bucket("tls");
    let certs = Certs::make();
    let front = TlsFront::start(&certs, &srv.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.display().to_string();
    let mnt_s = mnt.display().to_string();
    let ep = front.endpoint();

    // A self-signed chain the system does not trust: refused before mounting, saying why.
    let said = try_mount(
        &[
            "-f",
            "--endpoint",
            &ep,
            "--region",
            &srv.region,
            "--cache-dir",
            &cache_s,
            &bucket,
            &mnt_s,
        ],
        &mnt,
    )
    .expect_err("mounted through an untrusted certificate");
    assert!(
        said.to_lowercase().contains("certificate"),
        "no word of the certificate: {said}"
    );
    assert!(!said.contains(&srv.secret_key));

    // Trusting that CA: it works end to end, through TLS.
    let m = Mount::with_args(
        &at(&ep),
        &bucket,
        &["--ca-file", &certs.path("ca.pem").display().to_string()],
    );
    std::fs::write(m.join("over-tls.txt"), b"encrypted in transit").unwrap();
    assert_eq!(
        server_bytes(&srv.storage_in(&bucket), "over-tls.txt").as_deref(),
        Some(&b"encrypted in transit"[..])
    );
    assert_eq!(
        std::fs::read(m.join("over-tls.txt")).unwrap(),
        b"encrypted in transit"
    );
    drop(m);

    // A CA file with no certificate in it is an error, not "trust nothing" or "trust all".
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let said = try_mount(
        &[
            "-f",
            "--endpoint",
            &ep,
            "--region",
            &srv.region,
            "--cache-dir",
            &cache_s,
            "--ca-file",
            &empty.display().to_string(),
            &bucket,
            &mnt_s,
        ],
        &mnt,
    )
    .expect_err("mounted with an empty CA file");
    assert!(said.contains("no PEM certificate"), "{said}");
}

#[test]
fn the_tls_setting_picks_the_scheme_and_never_downgrades_an_https_endpoint() {
    let srv = server();
    let bucket = srv.fresh_bucket("tls-setting");
    let certs = Certs::make();
    let front = TlsFront::start(&certs, &srv.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cache_s = dir.path().join("cache").display().to_string();
    let mnt_s = mnt.display().to_string();
    let ca = certs.path("ca.pem").display().to_string();
    let plain_hostport = srv
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let tls_hostport = front.endpoint().trim_start_matches("https://").to_string();
    let mount_with = |config: &Path, extra: &[&str]| {
        let cfg = config.display().to_string();
        let mut args = vec![
            "-f",
            "--config",
            &cfg,
            "--cache-dir",
            &cache_s,
            "--force-path-style",
        ];
        args.extend_from_slice(extra);
        args.push(&mnt_s);
        try_mount(&args, &mnt)
    };

    // `tls: false` with an https:// endpoint: refused (no silent downgrade), one clear line.
    let c = config_file(
        dir.path(),
        "a.yaml",
        &bucket,
        &front.endpoint(),
        Some(false),
    );
    let said = mount_with(&c, &["--ca-file", &ca]).expect_err("https with tls: false");
    assert!(said.contains("uses https:// but tls is false"), "{said}");
    // `tls: false` with a bare host:port: plain HTTP.
    let c = config_file(dir.path(), "b.yaml", &bucket, plain_hostport, Some(false));
    mount_with(&c, &[]).expect("plain http with tls: false");
    // No `tls:` (default true) with a bare host:port: HTTPS, verified.
    let c = config_file(dir.path(), "c.yaml", &bucket, &tls_hostport, None);
    mount_with(&c, &["--ca-file", &ca]).expect("https by default");
    let said = mount_with(&c, &[]).expect_err("https to an untrusted certificate");
    assert!(said.to_lowercase().contains("certificate"), "{said}");
    // ... so the default never speaks plain HTTP to a server that only does HTTP.
    let c = config_file(dir.path(), "d.yaml", &bucket, plain_hostport, None);
    mount_with(&c, &[]).expect_err("https by default to a plain-http server");
}
