//! Shared harness of the integration tests (`mod common;` in each test binary).
//!
//! - [`server()`]: one local, authenticated S3 server (via `scripts/s3-server start`) per test
//!   binary, started on first use. Which server: [`ServerKind::current`], from
//!   `S3MOUNT_TEST_SERVER` (`moto`, the default; `s3s-fs`; `garage`). The script is given this process's PID
//!   (`--parent-pid`) and starts a watchdog that stops the server within about a second after
//!   this process is gone — however it ends (normal exit, panic=abort, SIGKILL) — so tests never
//!   leave servers running and nothing has to be registered to run at exit.
//! - [`Server::storage`] / [`Server::fresh_bucket`] / [`Server::config_file`]: clients, a
//!   bucket per test (tests never share state through the server), a seed-style YAML config.
//! - [`Mount`]: the `s3mount` binary mounted on a temp dir, unmounted on drop even when the
//!   test panics.
//! - [`skip_on`]: a test that needs what the current server cannot do (a [`ServerLimit`])
//!   prints `SKIP <server>: <test>: <reason>` and returns.
//! - [`random_bytes`], [`sh`], [`obj`], [`Rng`], [`put_direct`], [`assert_same`]: small helpers.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod proxy;
pub mod versioned;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use s3mount::config::{AddressingStyle, LoadRequest, Overrides, Secret};
use s3mount::s3::{ClientConfig, ObjectStore, S3Client};
use s3mount::{Config, Storage};
use tempfile::TempDir;

/// How long a mount may take to appear before the test fails.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the mount process may take to exit after the unmount before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variable naming the server the tests run against (see [`ServerKind`]).
pub const SERVER_ENV: &str = "S3MOUNT_TEST_SERVER";

/// The S3 implementations the tests run against, each started by `scripts/s3-server --server
/// NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// moto 5.2.5 (the default).
    Moto,
    /// s3s-fs 0.14.1 with the shared bench patch.
    S3sFs,
    /// Garage 2.5.0, one node.
    Garage,
}

impl ServerKind {
    /// Every kind, in the order `scripts/test --server all` runs them.
    pub const ALL: [ServerKind; 3] = [ServerKind::Moto, ServerKind::S3sFs, ServerKind::Garage];

    /// The name `scripts/s3-server --server` and [`SERVER_ENV`] use.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Moto => "moto",
            ServerKind::S3sFs => "s3s-fs",
            ServerKind::Garage => "garage",
        }
    }

    /// The kind named by [`SERVER_ENV`] (moto when unset or empty); panics on an unknown name,
    /// so a typo never silently tests moto.
    pub fn current() -> ServerKind {
        static KIND: OnceLock<ServerKind> = OnceLock::new();
        *KIND.get_or_init(|| match std::env::var(SERVER_ENV) {
            Err(_) => ServerKind::Moto,
            Ok(v) if v.is_empty() => ServerKind::Moto,
            Ok(v) => ServerKind::ALL
                .into_iter()
                .find(|k| k.name() == v)
                .unwrap_or_else(|| panic!("{SERVER_ENV}={v:?}: not one of moto, s3s-fs, garage")),
        })
    }
}

/// What some server cannot do that a test needs: a documented limit of that server (each
/// checked by a direct request, see docs/servers.md), not a defect of s3mount.
/// One place for the reasons, so every skip says the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerLimit {
    /// s3s-fs keeps a `dir/` marker as a directory on disk.
    MarkerObjects,
    /// s3s-fs keeps objects as files.
    FileBesideDirectory,
    /// s3s-fs keeps objects as files named after their keys.
    KeysAreFileNames,
    /// s3s-fs 0.14.1 echoes `encoding-type=url` but sends raw keys.
    ListingKeysNotEncoded,
    /// s3s-fs 0.14.1 has no ListMultipartUploads.
    NoListMultipartUploads,
    /// s3s-fs decodes RFC 2047 metadata values.
    DecodesEncodedMetadata,
    /// s3s-fs answers a GET in a missing bucket with NoSuchKey.
    MissingBucketIsNoSuchKey,
    /// s3s-fs makes a deleted bucket again for a PUT into it.
    PutRecreatesBucket,
    /// s3s-fs and Garage keep the source's ETag on a copy.
    CopyKeepsMultipartEtag,
    /// Garage 2.5 ignores `If-None-Match` on PUT and CompleteMultipartUpload.
    IgnoresIfNoneMatch,
    /// Garage 2.5 drops a key's leading `/`.
    DropsLeadingSlash,
    /// Garage 2.5 answers a wrong signature with AccessDenied.
    BadSignatureIsAccessDenied,
    /// s3s-fs and Garage keep no storage class or server-side encryption.
    NoStorageClasses,
    /// s3s-fs and Garage keep no object tags.
    NoObjectTags,
}

impl ServerLimit {
    /// True if the server the tests run against has this limit: for a test that checks the
    /// rest of what it checks there (see [`skip_on`] to skip a test).
    pub fn here(self) -> bool {
        self.servers().contains(&ServerKind::current())
    }

    /// The servers that have this limit.
    pub fn servers(self) -> &'static [ServerKind] {
        use ServerKind::{Garage, S3sFs};
        match self {
            ServerLimit::MarkerObjects
            | ServerLimit::FileBesideDirectory
            | ServerLimit::KeysAreFileNames
            | ServerLimit::ListingKeysNotEncoded
            | ServerLimit::NoListMultipartUploads
            | ServerLimit::DecodesEncodedMetadata
            | ServerLimit::MissingBucketIsNoSuchKey
            | ServerLimit::PutRecreatesBucket => &[S3sFs],
            ServerLimit::CopyKeepsMultipartEtag
            | ServerLimit::NoStorageClasses
            | ServerLimit::NoObjectTags => &[S3sFs, Garage],
            ServerLimit::IgnoresIfNoneMatch
            | ServerLimit::DropsLeadingSlash
            | ServerLimit::BadSignatureIsAccessDenied => &[Garage],
        }
    }

    /// Why a test needing it cannot pass there (the text of the SKIP line).
    pub fn reason(self) -> &'static str {
        match self {
            ServerLimit::MarkerObjects => {
                "a `dir/` marker is a directory on its disk: never listed, no metadata (a \
                 self-copy of it is a 500), no ETag on its PUT, its Last-Modified moves with \
                 what is made in it, and a directory emptied on disk still answers HEAD dir/"
            }
            ServerLimit::FileBesideDirectory => {
                "it cannot hold `a` beside `a/b` (a file and a directory of one name): 500"
            }
            ServerLimit::KeysAreFileNames => {
                "keys are file names on its disk: `.`, `..` or empty components (`//`, a \
                 leading `/`) and keys over ~150 bytes (its side files are named after the \
                 base64 of bucket and key) are refused with 500"
            }
            ServerLimit::ListingKeysNotEncoded => {
                "ListObjectsV2 with encoding-type=url answers <EncodingType>url</EncodingType> \
                 but raw keys, so every client that asked (s3mount, boto3) reads `a+b` as \
                 `a b` and `%41` as `A`"
            }
            ServerLimit::NoListMultipartUploads => {
                "ListMultipartUploads answers 501 NotImplemented (s3s-fs 0.14.1)"
            }
            ServerLimit::DecodesEncodedMetadata => {
                "it decodes RFC 2047 metadata values and sends ASCII ones back plain, so \
                 surrounding spaces (kept by encoding) are lost and a value that looks encoded \
                 is changed"
            }
            ServerLimit::MissingBucketIsNoSuchKey => {
                "a GET in a missing bucket answers 404 NoSuchKey, not NoSuchBucket"
            }
            ServerLimit::PutRecreatesBucket => {
                "a PUT into a deleted bucket succeeds and makes the bucket again, so a bucket \
                 deleted under the mount does not make an upload fail"
            }
            ServerLimit::CopyKeepsMultipartEtag => {
                "a copy keeps the source's multipart ETag (`...-N`), so a test of ETags changed \
                 by a copy proves nothing"
            }
            ServerLimit::IgnoresIfNoneMatch => {
                "Garage 2.5 does not check If-None-Match: * on PUT or CompleteMultipartUpload \
                 (the object is overwritten), and nothing in its reply tells"
            }
            ServerLimit::DropsLeadingSlash => {
                "Garage 2.5 drops a key's leading `/` (PUT /bucket//k stores k)"
            }
            ServerLimit::NoStorageClasses => {
                "it keeps no storage class or server-side encryption (Garage 2.5 accepts \
                 x-amz-storage-class and forgets it; s3s-fs 0.14.1 refuses any but STANDARD \
                 with InvalidStorageClass; neither names an encryption in a HEAD)"
            }
            ServerLimit::NoObjectTags => {
                "it keeps no object tags (s3s-fs 0.14.1 and Garage 2.5 answer GetObjectTagging \
                 with 501 NotImplemented)"
            }
            ServerLimit::BadSignatureIsAccessDenied => {
                "Garage 2.5 answers a wrong signature with 403 AccessDenied (\"Forbidden: \
                 Invalid signature\"), not SignatureDoesNotMatch"
            }
        }
    }
}

/// True (after printing `SKIP <server>: <test>: <reason>` to stderr) when the current server
/// has `limit`: the caller returns at once, `if skip_on(ServerLimit::X) { return; }`. The line
/// bypasses the test harness's output capture, so `scripts/test` can count the skips.
pub fn skip_on(limit: ServerLimit) -> bool {
    let kind = ServerKind::current();
    if !limit.here() {
        return false;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let line = format!("SKIP {}: {test}: {}\n", kind.name(), limit.reason());
    // One write, straight to fd 2 (eprintln! would be captured and shown only on failure).
    let _ = std::io::stderr().write_all(line.as_bytes());
    true
}

/// The local S3 server of this test binary.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Access key id of the server's IAM user.
    pub access_key: String,
    /// Its secret key.
    pub secret_key: String,
    /// Signing region (`us-east-1`).
    pub region: String,
    /// PID (and process group) of the server.
    pub pid: u32,
    /// The server's log file.
    pub log: PathBuf,
}

/// Serializes the tests of one binary that take it.
///
/// A test that holds a file of a mount open in this process and then counts the mount's
/// requests must not run beside a test that starts child processes: a child started by
/// another thread holds a copy of every descriptor of this process until its `exec` closes
/// them, and the kernel answers each such close with a FUSE `FLUSH` — which uploads the file
/// half-written and adds requests the test did not make. (A program that forks while it holds
/// a file of the mount open gets the same extra upload, as on any FUSE file system that uploads
/// at `close`.)
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The server of this test binary, started on first use.
pub fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

impl Server {
    /// Which implementation it is: every server of a test process is of the
    /// [current](ServerKind::current) kind (not a field, so that tests building a `Server`
    /// for another endpoint need not name it).
    pub fn kind(&self) -> ServerKind {
        ServerKind::current()
    }

    /// The same server and credentials reached at another endpoint (e.g. a `proxy::Proxy`).
    pub fn via(&self, endpoint: String) -> Server {
        Server {
            endpoint,
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            region: self.region.clone(),
            pid: self.pid,
            log: self.log.clone(),
        }
    }

    /// Start a server of its own, of the [current](ServerKind::current) kind (stopped when
    /// this test process exits, or by `stop`).
    pub fn start() -> Server {
        let kind = ServerKind::current();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-server");
        let out = Command::new(&script)
            .arg("--server")
            .arg(kind.name())
            .arg("start")
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} start failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let get = |name: &str| -> String {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("s3-server start printed no {name}:\n{stdout}"))
        };
        let server = Server {
            endpoint: get("S3_ENDPOINT"),
            access_key: get("AWS_ACCESS_KEY_ID"),
            secret_key: get("AWS_SECRET_ACCESS_KEY"),
            region: get("AWS_REGION"),
            pid: get("S3_SERVER_PID")
                .parse()
                .expect("S3_SERVER_PID is a number"),
            log: PathBuf::from(get("S3_SERVER_LOG")),
        };
        eprintln!(
            "test server {} at {} (pid {}, log {})",
            kind.name(),
            server.endpoint,
            server.pid,
            server.log.display()
        );
        server
    }

    /// A configuration for this server (path style), loaded the way the binary loads one but
    /// without looking at the real environment or `~/.aws`.
    pub fn config(&self, default_bucket: Option<&str>) -> Config {
        self.config_with(default_bucket, &self.secret_key)
    }

    /// Like [`Server::config`] with another secret key (to test refused signatures).
    pub fn config_with(&self, default_bucket: Option<&str>, secret_key: &str) -> Config {
        let no_env = |_: &str| None;
        let req = LoadRequest {
            file: None,
            allow_insecure: false,
            overrides: Overrides {
                endpoint: Some(self.endpoint.clone()),
                region: Some(self.region.clone()),
                bucket: default_bucket.map(str::to_string),
                addressing_style: Some(AddressingStyle::Path),
                access_key_id: Some(self.access_key.clone()),
                secret_access_key: Some(Secret::new(secret_key)),
                ..Overrides::default()
            },
            env: &no_env,
            profile: None,
        };
        Config::load(&req).unwrap_or_else(|e| panic!("config for the test server: {e}"))
    }

    /// A client with no default bucket.
    pub fn storage(&self) -> Storage {
        self.storage_for(None)
    }

    /// A client whose default bucket is `bucket` (for the seed-style calls with plain keys).
    pub fn storage_in(&self, bucket: &str) -> Storage {
        self.storage_for(Some(bucket))
    }

    /// The tests' own client: six tries, as the library's retries were counted before they got
    /// a 30 s budget — a request a server refuses for good with a 5xx (s3s-fs answers some of
    /// the fuzzed keys so) fails in a few seconds, not half a minute. What the budget does is
    /// `outages.rs`'s to test.
    fn storage_for(&self, bucket: Option<&str>) -> Storage {
        let mut cc = ClientConfig::from_config(&self.config(bucket));
        cc.retry.max_attempts = 6;
        let client = S3Client::new(cc).expect("client for the test server");
        Storage::with_client(client, bucket.map(str::to_string))
    }

    /// Create a bucket no other test uses: `t-<hint>-<pid>-<n>-<time>`, lower case, at most
    /// 63 characters.
    pub fn fresh_bucket(&self, name_hint: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let suffix = format!("-{}-{n}-{nanos:x}", std::process::id());
        let mut hint: String = name_hint
            .chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_lowercase() || c.is_ascii_digit() {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        hint.truncate(63 - 2 - suffix.len());
        let name = format!("t-{}{suffix}", hint.trim_matches('-'));
        assert!(name.len() <= 63, "{name}");
        self.storage()
            .create_bucket(&name)
            .unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
        name
    }

    /// A seed-style YAML config file (mode 0600) for this server and `bucket`, in a new temp
    /// dir (kept as long as the returned `TempDir` lives).
    pub fn config_file(&self, bucket: &str) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s3.yaml");
        let yaml = format!(
            "---\ns3:\n    access_key_id: \"{}\"\n    secret_access_key: \"{}\"\n    default_bucket: \"{bucket}\"\n    endpoint: \"{}\"\n    region: \"{}\"\n    addressing_style: path\n",
            self.access_key, self.secret_key, self.endpoint, self.region
        );
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .expect("create config file");
        f.write_all(yaml.as_bytes()).expect("write config file");
        // Whatever the umask did, the loader refuses files others can read.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod config file");
        (dir, path)
    }
}

/// `s3mount` running in the foreground, mounted on a temp dir.
pub struct Mount {
    child: Option<Child>,
    mountpoint: PathBuf,
    cache_dir: PathBuf,
    log: PathBuf,
    mounted: bool,
    _dir: TempDir,
}

impl Mount {
    /// Mount the whole of `bucket`.
    pub fn new(server: &Server, bucket: &str) -> Mount {
        Mount::with_args(server, bucket, &[])
    }

    /// Mount `bucket_spec` (`BUCKET` or `BUCKET:PREFIX/`) with extra options (e.g.
    /// `["--metadata-ttl", "0"]`, `["--read-only"]`).
    pub fn with_args(server: &Server, bucket_spec: &str, extra_args: &[&str]) -> Mount {
        Mount::start(server, bucket_spec, extra_args, None, None)
    }

    /// Like [`Mount::with_cache_dir`] (`None`: a cache dir of its own), with the s3mount
    /// process's umask set to `umask`, so a test of the modes it creates does not depend on
    /// the umask the tests run under.
    pub fn with_umask(
        server: &Server,
        bucket_spec: &str,
        cache_dir: Option<&Path>,
        extra_args: &[&str],
        umask: libc::mode_t,
    ) -> Mount {
        Mount::start(server, bucket_spec, extra_args, cache_dir, Some(umask))
    }

    /// Like [`Mount::with_args`] with `--cache-dir cache_dir` (which outlives the mount, e.g.
    /// to remount on the same cache) instead of a cache dir of its own.
    pub fn with_cache_dir(
        server: &Server,
        bucket_spec: &str,
        cache_dir: &Path,
        extra_args: &[&str],
    ) -> Mount {
        Mount::start(server, bucket_spec, extra_args, Some(cache_dir), None)
    }

    fn start(
        server: &Server,
        bucket_spec: &str,
        extra_args: &[&str],
        cache_dir: Option<&Path>,
        umask: Option<libc::mode_t>,
    ) -> Mount {
        let dir = tempfile::Builder::new()
            .prefix("s3mount-test.")
            .tempdir()
            .expect("temp dir");
        let mountpoint = dir.path().join("mnt");
        let cache_dir = match cache_dir {
            Some(d) => d.to_path_buf(),
            None => {
                let d = dir.path().join("cache");
                std::fs::create_dir(&d).expect("mkdir cache");
                d
            }
        };
        let log = dir.path().join("s3mount.log");
        std::fs::create_dir(&mountpoint).expect("mkdir mnt");
        let log_file = File::create(&log).expect("create log file");
        let log_out = log_file.try_clone().expect("dup log file");

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3mount"));
        cmd.arg("--endpoint")
            .arg(&server.endpoint)
            .arg("--region")
            .arg(&server.region)
            .arg("--foreground")
            .arg("--cache-dir")
            .arg(&cache_dir)
            .args(extra_args)
            .arg(bucket_spec)
            .arg(&mountpoint);
        for var in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_CONFIG_FILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ACCESS_KEY_ID", &server.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "s3mount=debug".to_string()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_out))
            .stderr(Stdio::from(log_file));
        if let Some(mask) = umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask(2) is async-signal-safe and touches no memory.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask);
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_s3mount")));
        let mut mount = Mount {
            child: Some(child),
            mountpoint,
            cache_dir,
            log,
            mounted: false,
            _dir: dir,
        };
        mount.wait_mounted();
        mount
    }

    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if is_fuse_mount(&self.mountpoint) {
                self.mounted = true;
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "s3mount exited ({status}) before {} was mounted; log:\n{}",
                        self.mountpoint.display(),
                        self.log()
                    );
                }
            }
            if Instant::now() >= deadline {
                // Drop kills the process; show what it said.
                panic!(
                    "{} not mounted after {MOUNT_TIMEOUT:?}; log:\n{}",
                    self.mountpoint.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// `path()/rel`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// The `--cache-dir` given to the mount.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// What the mount process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()))
    }

    /// The log file's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// PID of the s3mount process (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the s3mount process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL the s3mount process (a crash: nothing is flushed), reap it, and detach the dead
    /// mount. The temp dir (cache dir included) stays until the `Mount` is dropped.
    pub fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if is_fuse_mount(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
        self.mounted = false;
    }

    /// Unmount now and return how the process exited (the test can then check the bucket
    /// after every upload has finished).
    pub fn unmount(mut self) -> std::process::ExitStatus {
        self.shutdown()
            .unwrap_or_else(|| panic!("s3mount did not exit after unmount; log:\n{}", self.log()))
    }

    /// Unmount (if mounted) and reap the process; `None` if it had to be killed.
    fn shutdown(&mut self) -> Option<std::process::ExitStatus> {
        if self.mounted || is_fuse_mount(&self.mountpoint) {
            let ok = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                let lazy = Command::new("umount")
                    .arg("-l")
                    .arg(&self.mountpoint)
                    .status();
                if !matches!(lazy, Ok(s) if s.success()) {
                    eprintln!(
                        "could not unmount {} (fusermount3 -u and umount -l failed)",
                        self.mountpoint.display()
                    );
                }
            }
            self.mounted = false;
        }
        let mut child = self.child.take()?;
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    eprintln!(
                        "s3mount (pid {}) still running {EXIT_TIMEOUT:?} after unmount; killing it",
                        child.id()
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    // The kernel may still hold the mount if the process died first.
                    if is_fuse_mount(&self.mountpoint) {
                        let _ = Command::new("umount")
                            .arg("-l")
                            .arg(&self.mountpoint)
                            .status();
                    }
                    return None;
                }
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Runs during unwinding too: never panic here.
        let _ = self.shutdown();
    }
}

pub use s3mount::fs::mountinfo::is_fuse_mount;

/// The bytes of `key` on the server, `None` if it does not exist.
#[allow(dead_code)] // not every test binary reads objects back whole
pub fn server_bytes(storage: &Storage, key: &str) -> Option<Vec<u8>> {
    storage.exists(key).expect("HEAD through the S3 API")?;
    let dir = tempfile::tempdir().expect("temp dir");
    let local = dir.path().join("obj");
    storage.read(key, &local).expect("GET through the S3 API");
    Some(std::fs::read(&local).expect("read back"))
}

/// Put `data` at `key` in `bucket` directly on the server (not through a mount).
pub fn put_direct(bucket: &str, key: &str, data: &[u8]) {
    use s3mount::s3::{PutOptions, RequestBody};
    server()
        .storage_in(bucket)
        .bucket(bucket)
        .put(key, RequestBody::Bytes(data), &PutOptions::default())
        .unwrap_or_else(|e| panic!("direct PUT {key}: {e}"));
}

/// `got` is `want`; else a panic naming `what` and the first differing byte (not megabytes of
/// both).
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first differing byte at {i}");
    }
}

/// Drop the kernel's cached pages of `path` (they would answer a re-read of the same version
/// without a request to the mount), and wait (up to 5 s) until none is left: pages still
/// being read ahead, or held in a per-CPU batch, survive one `POSIX_FADV_DONTNEED`.
pub fn drop_kernel_pages(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: a valid descriptor; advice only.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0, "posix_fadvise");
        if len == 0 || resident_pages(&f, len) == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: the kernel keeps {} pages",
            path.display(),
            resident_pages(&f, len)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Which pages of `f` (of `len` > 0 bytes) the kernel's page cache holds (`mincore` of a
/// read-only shared mapping, which itself reads nothing).
pub fn resident(f: &std::fs::File, len: usize) -> Vec<bool> {
    use std::os::fd::AsRawFd;
    let page = 4096;
    // SAFETY: a fresh read-only mapping of `len` bytes of a valid descriptor, unmapped below;
    // `vec` holds one byte per page.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let mut vec = vec![0u8; len.div_ceil(page)];
        let rc = libc::mincore(p, len, vec.as_mut_ptr());
        libc::munmap(p, len);
        assert_eq!(rc, 0, "mincore");
        vec.iter().map(|b| b & 1 == 1).collect()
    }
}

/// `cachestat(2)`: the same number on every architecture (system calls from 424 on share one).
const SYS_CACHESTAT: libc::c_long = 451;

/// What the kernel's page cache says of the pages of `f` in `[offset, offset + len)`
/// (`cachestat`, Linux 6.5 on; `None` before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStat {
    /// Pages held.
    pub cached: u64,
    /// Pages that were held and that the kernel's memory reclaim took (LRU eviction under
    /// memory pressure leaves a shadow entry where the page was; dropping by
    /// `POSIX_FADV_DONTNEED`, invalidation or truncation does not).
    pub evicted: u64,
}

/// [`CacheStat`] of the pages of `f` in `[offset, offset + len)`; `None` where the kernel has
/// no `cachestat`.
pub fn cachestat(f: &std::fs::File, offset: u64, len: u64) -> Option<CacheStat> {
    use std::os::fd::AsRawFd;
    // struct cachestat_range { __u64 off; __u64 len; } and struct cachestat { __u64 nr_cache,
    // nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; }.
    let range = [offset, len];
    let mut out = [0u64; 5];
    // SAFETY: a valid descriptor and pointers to the two structs the call reads and fills.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            f.as_raw_fd(),
            range.as_ptr(),
            out.as_mut_ptr(),
            0u32,
        )
    };
    (rc == 0).then_some(CacheStat {
        cached: out[0],
        evicted: out[3],
    })
}

/// How many pages of `f` (of `len` > 0 bytes) the kernel's page cache holds.
pub fn resident_pages(f: &std::fs::File, len: usize) -> usize {
    resident(f, len).iter().filter(|&&r| r).count()
}

/// `n` pseudo-random bytes, the same for the same `seed` (SplitMix64).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Run `python3 -c script args...`, assert it succeeded (the message has its stderr), and
/// return its output.
pub fn python(script: &str, args: &[&std::ffi::OsStr]) -> Output {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    assert!(
        out.status.success(),
        "python3 failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `cmd` with `bash -c`, assert it succeeded (the message has its stdout and stderr), and
/// return its output.
pub fn sh(cmd: &str) -> Output {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash for {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Let [`NOBODY`] reach `p`: the directories above it (temporary ones are 0700) get 0755's
/// bits, up to `/tmp`.
pub fn open_path_to(p: &Path) {
    let mut cur = p.parent();
    while let Some(d) = cur {
        if d == Path::new("/") || d == Path::new("/tmp") {
            break;
        }
        let mode = std::fs::metadata(d).unwrap().permissions().mode();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o755)).unwrap();
        cur = d.parent();
    }
}

/// The second, unprivileged user the tests play (`setpriv`).
pub const NOBODY: u32 = 65534;

/// Run `script` with `sh -c` as uid/gid [`NOBODY`] with no supplementary groups.
pub fn as_nobody(script: &str) -> Output {
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

/// `bucket`/`key` as an [`s3mount::s3::ObjectRef`].
pub fn obj(bucket: &str, key: &str) -> s3mount::s3::ObjectRef {
    s3mount::s3::ObjectRef {
        bucket: bucket.to_string(),
        key: key.to_string(),
    }
}

/// SplitMix64: a small deterministic generator for test workloads.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `setxattr(2)` on `path` with `flags`; the errno on failure (EINVAL for a name with a NUL,
/// which cannot even be passed).
pub fn set_xattr(path: &Path, name: impl AsRef<[u8]>, value: &[u8], flags: i32) -> Result<(), i32> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in test paths");
    let Ok(n) = std::ffi::CString::new(name.as_ref()) else {
        return Err(libc::EINVAL);
    };
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// close(2) a file, returning its error (dropping a `File` ignores it).
pub fn close(f: std::fs::File) -> std::io::Result<()> {
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: we own fd (taken out of the File) and close it once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The `.data` files the mount kept under `<cache-dir>/*/unsaved/`.
pub fn unsaved_files(mount: &Mount) -> Vec<std::path::PathBuf> {
    let mut kept = Vec::new();
    for sub in std::fs::read_dir(mount.cache_dir()).unwrap() {
        let unsaved = sub.unwrap().path().join("unsaved");
        if let Ok(entries) = std::fs::read_dir(&unsaved) {
            for e in entries {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "data") {
                    kept.push(p);
                }
            }
        }
    }
    kept
}
