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

use common::{is_fuse_mount, server, server_bytes, Mount, Server};
use s3mount::s3::{PutOptions, RequestBody};
use s3mount::{Metadata, Storage};

const NOBODY: &str = "65534";

use common::obj;

fn put(st: &Storage, bucket: &str, key: &str, data: &[u8], meta: &[(&str, &str)]) {
    let metadata: Metadata = meta.iter().copied().collect();
    st.put_object(
        &obj(bucket, key),
        RequestBody::Bytes(data),
        &PutOptions {
            metadata,
            ..PutOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

/// Run `script` with `sh -c` as uid/gid 65534 with no supplementary groups.
fn as_nobody(script: &str) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("setpriv")
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
        let o = as_nobody(&script);
        assert!(!o.status.success(), "{script}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
            "{script}: {}",
            text(&o)
        );
    }
    assert_eq!(server_bytes(&st, "new.txt"), None);
}

#[test]
fn allow_other_lets_others_in_under_the_mode_bits() {
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
        assert!(!o.status.success(), "{s}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
            "{s}: {}",
            text(&o)
        );
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
