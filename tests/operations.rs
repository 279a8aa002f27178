//! Operating s3mount: fstab lines through mount(8), the systemd units, sd_notify, SIGTERM in the
//! middle of a write, secrets kept out of logs, refused `-o` options and a busy mount point.
//!
//! The mount(8) tests run in a private mount namespace (`unshare -m`): mount(8) drops `PATH`
//! before running a helper, and `/sbin/mount.fuse` then runs the subtype (`s3mount`) through
//! `/bin/sh` with its default `PATH`, so the test's binary has to be found in a system
//! directory. Inside the namespace a temp dir holding a `s3mount` link to the built binary is
//! bind-mounted over `/usr/local/sbin` (and the binary over a `/sbin/mount.fuse.s3mount` left
//! by an earlier `make install`), which the rest of the system never sees.

mod common;

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{is_fuse_mount, random_bytes, server, server_bytes, skip_on, Server, ServerLimit};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_s3mount");
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);

/// A temp dir with `mnt/`, `cache/` and a 0600 config for `bucket` in the form an admin writes
/// it (`endpoint: http://127.0.0.1:PORT`, `tls: false`).
struct Setup {
    dir: TempDir,
}

impl Setup {
    fn new(server: &Server, bucket: &str) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("s3mount-ops.")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        std::fs::create_dir(dir.path().join("cache")).unwrap();
        let yaml = format!(
            "---\ns3:\n    access_key_id: \"{}\"\n    secret_access_key: \"{}\"\n    default_bucket: \"{bucket}\"\n    endpoint: \"{}\"\n    tls: false\n    region: \"{}\"\n",
            server.access_key, server.secret_key, server.endpoint, server.region
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.path().join("s3.yaml"))
            .unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        Setup { dir }
    }
    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("s3.yaml")
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The binary with a clean environment (no AWS_* from the caller), logging to `log`.
fn command(log: &Path) -> Command {
    command_as(Path::new(BIN), log)
}

/// [`command`] run as `program` (a link to the binary, such as a mount(8) helper's name).
fn command_as(program: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") || k == "RUST_LOG" || k == "NOTIFY_SOCKET" {
            cmd.env_remove(k);
        }
    }
    let out = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out));
    cmd
}

/// A foreground s3mount of `setup`'s bucket at its mount point, with `extra` flags, logging
/// to `log` (not spawned yet, so a test can add to it).
fn foreground(setup: &Setup, log: &Path, extra: &[&str]) -> Command {
    let mut cmd = command(log);
    cmd.arg("--foreground")
        .args(extra)
        .arg("--config")
        .arg(setup.config())
        .arg("--cache-dir")
        .arg(setup.cache())
        .arg(setup.mnt());
    cmd
}

/// Wait until `mnt` is a FUSE mount; panics (with the log) if `child` exits first or it takes
/// too long.
fn wait_mounted(child: &mut Child, mnt: &Path, log: &Path) {
    let deadline = Instant::now() + MOUNT_TIMEOUT;
    while !is_fuse_mount(mnt) {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("s3mount exited ({st}) before mounting; log:\n{}", read(log));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("not mounted after {MOUNT_TIMEOUT:?}; log:\n{}", read(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for `child` to exit; kill it (and fail) after `limit`.
fn wait_exit(child: &mut Child, limit: Duration, log: &Path) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("s3mount still running after {limit:?}; log:\n{}", read(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn sigterm(child: &Child) {
    // SAFETY: sending a signal to our own child.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Unmounts (lazily) on drop, whatever the test did.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_fuse_mount(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// mount(8) and fstab

/// Run `script` with bash in a private mount namespace where `s3mount` (the built binary) is
/// on the default PATH of /bin/sh, i.e. where `/sbin/mount.fuse` finds it.
fn in_mount_namespace(setup: &Setup, script: &str) -> Output {
    let bin_dir = setup.path().join("sbin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let _ = std::fs::remove_file(bin_dir.join("s3mount"));
    std::os::unix::fs::symlink(BIN, bin_dir.join("s3mount")).unwrap();
    let prologue = format!(
        r#"set -eu
mount --bind '{bin_dir}' /usr/local/sbin
# A helper left by an earlier `make install` would win over /sbin/mount.fuse: make it ours.
if [ -e /sbin/mount.fuse.s3mount ]; then mount --bind '{bin}' /sbin/mount.fuse.s3mount; fi
trap 'umount -l "{mnt}" 2>/dev/null || true' EXIT
"#,
        bin_dir = bin_dir.display(),
        bin = BIN,
        mnt = setup.mnt().display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "bash", "-c"])
        .arg(format!("{prologue}{script}"))
        .stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run unshare")
}

/// Checks run inside the namespace once mounted: the fs type, a write, a read back, umount.
fn mounted_checks(mnt: &Path) -> String {
    let mnt = mnt.display();
    format!(
        r#"
grep -q " {mnt} .* - fuse.s3mount " /proc/self/mountinfo || {{ echo "not mounted as fuse.s3mount"; cat /proc/self/mountinfo; exit 1; }}
grep " {mnt} " /proc/self/mountinfo
echo "written through mount(8)" > "{mnt}/from-fstab.txt"
[ "$(cat "{mnt}/from-fstab.txt")" = "written through mount(8)" ]
ls -la "{mnt}"
umount "{mnt}"
if grep -q " {mnt} " /proc/self/mountinfo; then echo "still mounted after umount"; exit 1; fi
echo UNMOUNTED
"#
    )
}

/// An fstab with one line mounting `bucket` at the setup's mount point, with `options` (empty,
/// or ending in a comma) before its config and cache dir.
fn write_fstab(setup: &Setup, bucket: &str, options: &str) -> PathBuf {
    let fstab = setup.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# test fstab\n{bucket} {} fuse.s3mount {options}config={},cache_dir={} 0 0\n",
            setup.mnt().display(),
            setup.config().display(),
            setup.cache().display()
        ),
    )
    .unwrap();
    fstab
}

#[test]
fn fstab_line_through_mount_dash_big_t() {
    let server = server();
    let bucket = server.fresh_bucket("fstab");
    let setup = Setup::new(server, &bucket);
    let fstab = write_fstab(&setup, &bucket, "_netdev,allow_other,");
    let out = in_mount_namespace(
        &setup,
        &format!(
            "mount -T '{}' '{}'\n{}",
            fstab.display(),
            setup.mnt().display(),
            mounted_checks(&setup.mnt())
        ),
    );
    let log = read(&setup.cache().join(&bucket).join("s3mount.log"));
    assert!(out.status.success(), "{}\ns3mount log:\n{log}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("UNMOUNTED"), "{}", text(&out));
    // allow_other reached the mount (mount.fuse passed it on; _netdev was dropped on the way).
    assert!(stdout.contains("allow_other"), "{}", text(&out));
    assert!(
        !is_fuse_mount(&setup.mnt()),
        "mount leaked out of the namespace"
    );
    assert_eq!(
        server_bytes(&server.storage_in(&bucket), "from-fstab.txt").as_deref(),
        Some(&b"written through mount(8)\n"[..])
    );
}

/// Mount a fresh bucket `name-…` by a one-line fstab (`mount -a -T`) in a mount namespace, then
/// run `script(mount point, bucket)` there; panics with the log unless it succeeds. The
/// bucket and what the script printed.
fn after_mount_dash_a(name: &str, script: impl Fn(&str, &str) -> String) -> (String, String) {
    let server = server();
    let bucket = server.fresh_bucket(name);
    let setup = Setup::new(server, &bucket);
    let fstab = write_fstab(&setup, &bucket, "");
    let mnt = setup.mnt().display().to_string();
    let out = in_mount_namespace(
        &setup,
        &format!(
            "mount -a -T '{}'\n{}\necho DONE\n",
            fstab.display(),
            script(&mnt, &bucket)
        ),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "{}\ns3mount log:\n{}",
        text(&out),
        read(&setup.cache().join(&bucket).join("s3mount.log"))
    );
    (bucket, stdout)
}

/// The mount's source is the fstab line's first field, so mount(8) knows the line as mounted:
/// `mount -a` run again leaves it alone (it failed with "already in use", exit 32, when the
/// source was `s3mount:BUCKET`), and `umount BUCKET` unmounts it, as on other file systems.
#[test]
fn mount_dash_a_again_leaves_a_mounted_fstab_line_alone() {
    let (bucket, stdout) = after_mount_dash_a("fstab-again", |mnt, bucket| {
        format!(
            r#"grep " {mnt} " /proc/self/mountinfo
fstab=$(dirname {mnt})/fstab
mount -a -T "$fstab" || {{ echo "mount -a again: exit $?"; exit 1; }}
[ "$(grep -c " {mnt} " /proc/self/mountinfo)" = 1 ] || {{ echo "mounted twice"; exit 1; }}
umount {bucket}
if grep -q " {mnt} " /proc/self/mountinfo; then echo "still mounted after umount {bucket}"; exit 1; fi"#
        )
    });
    assert!(
        stdout.contains(&format!(" - fuse.s3mount {bucket} ")),
        "{stdout}"
    );
}

/// `mount -o remount,ro DIR` (mount(8) runs the helper for it) makes the running mount
/// read-only in the kernel, and `remount,rw` writable again, keeping `nodev,nosuid,noatime`;
/// it was refused ("-o remount: unknown mount option", xfstests generic/294 and 306).
#[test]
fn mount_dash_o_remount_switches_read_only_and_back() {
    let (bucket, _) = after_mount_dash_a("remount", |mnt, _| {
        format!(
            r#"echo before > {mnt}/f
mount -o remount,ro {mnt}
grep " {mnt} ro,nosuid,nodev,noatime" /proc/self/mountinfo || {{ echo "not ro"; exit 1; }}
if err=$( (echo more >> {mnt}/f) 2>&1 ); then echo "written while ro"; exit 1; fi
case "$err" in *"Read-only file system"*) ;; *) echo "$err"; exit 1;; esac
mount -o remount,rw {mnt}
grep " {mnt} rw,nosuid,nodev,noatime" /proc/self/mountinfo || {{ echo "not rw"; exit 1; }}
echo after >> {mnt}/f
umount {mnt}"#
        )
    });
    assert_eq!(
        server_bytes(&server().storage_in(&bucket), "f").as_deref(),
        Some(&b"before\nafter\n"[..])
    );
}

#[test]
fn mount_dash_t_fuse_s3mount() {
    let server = server();
    let bucket = server.fresh_bucket("mount-t");
    let setup = Setup::new(server, &bucket);
    // The bucket comes from the command line; the config's default_bucket is another one.
    let other = server.fresh_bucket("mount-t-other");
    let yaml = read(&setup.config()).replace(&bucket, &other);
    std::fs::write(setup.config(), yaml).unwrap();
    let out = in_mount_namespace(
        &setup,
        &format!(
            "mount -t fuse.s3mount {bucket} '{}' -o config={},cache_dir={}\n{}",
            setup.mnt().display(),
            setup.config().display(),
            setup.cache().display(),
            mounted_checks(&setup.mnt())
        ),
    );
    assert!(
        out.status.success(),
        "{}\ns3mount log:\n{}",
        text(&out),
        read(&setup.cache().join(&bucket).join("s3mount.log"))
    );
    assert_eq!(
        server_bytes(&server.storage_in(&bucket), "from-fstab.txt").as_deref(),
        Some(&b"written through mount(8)\n"[..])
    );
    assert_eq!(
        server_bytes(&server.storage_in(&other), "from-fstab.txt"),
        None
    );
}

/// `mount -f` (fake) runs the helper with `-f`, as `/sbin/mount.fuse.s3mount BUCKET DIR -f -o
/// OPTS`: it must check and return 0 without mounting, not take `-f` for --foreground and
/// mount for real without ever returning (mount(8) waits for it).
#[test]
fn mount_dash_f_is_fake_and_mounts_nothing() {
    let server = server();
    let bucket = server.fresh_bucket("fake");
    let setup = Setup::new(server, &bucket);
    let helper = setup.path().join("mount.fuse.s3mount");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let _guard = Unmount(setup.mnt());
    let opts = format!(
        "rw,config={},cache_dir={}",
        setup.config().display(),
        setup.cache().display()
    );
    let log = setup.path().join("log");
    let mut fake = command_as(&helper, &log)
        .arg(&bucket)
        .arg(setup.mnt())
        .args(["-f", "-o", &opts])
        .spawn()
        .unwrap();
    let st = wait_exit(&mut fake, Duration::from_secs(20), &log);
    assert!(st.success(), "{st}: {}", read(&log));
    assert!(!is_fuse_mount(&setup.mnt()), "mount -f mounted");
    // Fake or not, a bad option is still refused.
    let mut bad = command_as(&helper, &log)
        .arg(&bucket)
        .arg(setup.mnt())
        .args(["-f", "-o", &format!("{opts},colour=red")])
        .spawn()
        .unwrap();
    let st = wait_exit(&mut bad, Duration::from_secs(20), &log);
    assert!(
        !st.success() && read(&log).contains("colour"),
        "{st}: {}",
        read(&log)
    );
}

/// `-o noexec` (an fstab line's) is honoured as on a local disk: a program in the mount cannot
/// be run; `exec` after it undoes it. It used to be accepted and ignored, so a mount meant to
/// hold only data ran whatever anyone uploaded.
#[test]
fn noexec_is_honoured() {
    use common::Mount;
    let server = server();
    let bucket = server.fresh_bucket("noexec");
    let run_script = |m: &Mount| {
        let script = m.join("run.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Command::new(&script).status().map(|s| s.success())
    };
    let m = Mount::with_args(server, &bucket, &["-o", "noexec"]);
    let err = run_script(&m).expect_err("a program ran from a noexec mount");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    // Still of its own type (fuser's way to mount, which the flag once fell back to, loses it).
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(&*m.path().display().to_string()))
        .expect("in /proc/self/mounts");
    assert_eq!(line.split(' ').nth(2), Some("fuse.s3mount"), "{line}");
    drop(m);
    let m = Mount::with_args(server, &bucket, &["-o", "noexec,exec"]);
    assert!(run_script(&m).unwrap(), "exec after noexec");
}

// ---------------------------------------------------------------------------------------------
// systemd units

/// `systemd-analyze verify` on copies of both units, with ExecStart pointing at the built
/// binary (as `make install BINDIR=...` rewrites it), so the check includes "the command
/// exists and is executable" and passes without warnings.
#[test]
fn systemd_units_verify() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = tempfile::tempdir().unwrap();
    let service = std::fs::read_to_string(units.join("s3mount@.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/local/bin/s3mount "));
    std::fs::write(
        dir.path().join("s3mount@photos.service"),
        service.replace("/usr/local/bin/s3mount", BIN),
    )
    .unwrap();
    std::fs::copy(
        units.join("mnt-s3-photos.mount"),
        dir.path().join("mnt-s3-photos.mount"),
    )
    .unwrap();
    let verify = |names: &[&str]| -> Output {
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(names)
            .current_dir(dir.path())
            .output()
            .expect("systemd-analyze")
    };
    let out = verify(&["./s3mount@photos.service", "./mnt-s3-photos.mount"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stderr.is_empty(), "warnings: {}", text(&out));

    // The .mount unit's name is the escaped Where=.
    let mount_unit = std::fs::read_to_string(dir.path().join("mnt-s3-photos.mount")).unwrap();
    let where_ = mount_unit
        .lines()
        .find_map(|l| l.strip_prefix("Where="))
        .expect("Where=");
    let esc = Command::new("systemd-escape")
        .args(["--path", "--suffix=mount", where_])
        .output()
        .expect("systemd-escape");
    assert_eq!(
        String::from_utf8_lossy(&esc.stdout).trim(),
        "mnt-s3-photos.mount"
    );

    // The check is not vacuous: a broken copy fails.
    std::fs::copy(
        dir.path().join("mnt-s3-photos.mount"),
        dir.path().join("mnt-s3-other.mount"),
    )
    .unwrap();
    let out = verify(&["./mnt-s3-other.mount"]);
    assert!(!out.status.success(), "{}", text(&out));
    std::fs::write(
        dir.path().join("s3mount@bad.service"),
        service.replace("/usr/local/bin/s3mount", "/nonexistent/s3mount"),
    )
    .unwrap();
    let out = verify(&["./s3mount@bad.service"]);
    assert!(!out.status.success(), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// sd_notify and signals

/// Receive one datagram, or `None` after `limit`.
fn recv(sock: &UnixDatagram, limit: Duration) -> Option<String> {
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

fn notify_roundtrip(abstract_socket: bool) {
    let server = server();
    let bucket = server.fresh_bucket("notify");
    let setup = Setup::new(server, &bucket);
    let (sock, notify_socket) = if abstract_socket {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("s3mount-test-{}-{:?}", std::process::id(), Instant::now());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        (UnixDatagram::bind_addr(&addr).unwrap(), format!("@{name}"))
    } else {
        let p = setup.path().join("notify.sock");
        (UnixDatagram::bind(&p).unwrap(), p.display().to_string())
    };
    let log = setup.path().join("log");
    let mut child = foreground(&setup, &log, &[])
        .env("NOTIFY_SOCKET", &notify_socket)
        .spawn()
        .unwrap();
    let _guard = Unmount(setup.mnt());
    let msg = recv(&sock, MOUNT_TIMEOUT);
    assert_eq!(msg.as_deref(), Some("READY=1"), "log:\n{}", read(&log));
    // READY=1 means usable now, not "soon".
    assert!(is_fuse_mount(&setup.mnt()));
    std::fs::write(setup.mnt().join("ready.txt"), b"ready").unwrap();
    sigterm(&child);
    let msg = recv(&sock, Duration::from_secs(10));
    assert_eq!(msg.as_deref(), Some("STOPPING=1"), "log:\n{}", read(&log));
    let st = wait_exit(&mut child, Duration::from_secs(30), &log);
    assert!(st.success(), "exit {st}; log:\n{}", read(&log));
    assert!(!is_fuse_mount(&setup.mnt()), "still mounted after SIGTERM");
    assert_eq!(
        server_bytes(&server.storage_in(&bucket), "ready.txt").as_deref(),
        Some(&b"ready"[..])
    );
}

#[test]
fn sd_notify_ready_and_stopping() {
    notify_roundtrip(false);
}

#[test]
fn sd_notify_abstract_socket() {
    notify_roundtrip(true);
}

/// SIGTERM while a separate process is writing a 64 MiB file: afterwards the object is absent
/// or complete — never a prefix of what was being written. (What happens: the unmount is
/// refused with EBUSY, so s3mount detaches the mount, lets the writer finish, uploads at
/// close and then exits 0.)
#[test]
fn sigterm_during_large_write_never_leaves_a_partial_object() {
    let server = server();
    let bucket = server.fresh_bucket("sigterm-write");
    let setup = Setup::new(server, &bucket);
    let src = setup.path().join("src.bin");
    let data = random_bytes(64 * 1024 * 1024, 64);
    std::fs::write(&src, &data).unwrap();
    let log = setup.path().join("log");
    let mut child = foreground(&setup, &log, &["--log-level", "debug"])
        .spawn()
        .unwrap();
    let _guard = Unmount(setup.mnt());
    wait_mounted(&mut child, &setup.mnt(), &log);
    let target = setup.mnt().join("big.bin");
    let mut writer = Command::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", target.display()))
        .args(["bs=1M", "status=none"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let some of it reach the staging file, then stop the mount while dd is still writing.
    let staged_some = Instant::now() + Duration::from_secs(10);
    loop {
        let staged: u64 = walk_sizes(&setup.cache());
        if staged >= 4 * 1024 * 1024 || Instant::now() > staged_some {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let writer_done_before = writer.try_wait().unwrap().is_some();
    sigterm(&child);
    let writer_status = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(st) = writer.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = writer.kill();
                panic!("dd still running 120s after SIGTERM; log:\n{}", read(&log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let st = wait_exit(&mut child, Duration::from_secs(120), &log);
    let mut dd_err = String::new();
    if let Some(mut e) = writer.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut dd_err);
    }
    eprintln!(
        "dd finished before SIGTERM: {writer_done_before}; dd: {writer_status} {dd_err}; s3mount: {st}"
    );
    assert!(
        !writer_done_before,
        "dd finished before SIGTERM: the test did not interrupt a write"
    );
    assert!(!is_fuse_mount(&setup.mnt()), "still mounted after SIGTERM");
    assert!(st.success(), "s3mount: {st}; log:\n{}", read(&log));
    // The file was open: the mount was detached and s3mount waited for the close.
    assert!(read(&log).contains("is busy: detaching"), "{}", read(&log));
    let storage = server.storage_in(&bucket);
    match server_bytes(&storage, "big.bin") {
        // dd was told its write and close succeeded: the object must be there.
        None if writer_status.success() => {
            panic!(
                "dd succeeded but big.bin is not on the server; log:\n{}",
                read(&log)
            )
        }
        None => eprintln!("object absent"),
        Some(got) => {
            assert_eq!(
                got.len(),
                data.len(),
                "partial object on the server (dd: {writer_status} {dd_err}); log:\n{}",
                read(&log)
            );
            assert!(got == data, "object differs from what was written");
        }
    }
}

/// SIGTERM while a writer keeps its file open past `--stop-timeout`: s3mount stops waiting,
/// keeps the bytes written so far under unsaved/ (with the .key note) and exits non-zero; the
/// half-written file never reaches the server.
#[test]
fn sigterm_with_a_file_held_open_stops_at_the_timeout_without_uploading() {
    let server = server();
    let bucket = server.fresh_bucket("sigterm-held");
    let setup = Setup::new(server, &bucket);
    let log = setup.path().join("log");
    let mut child = foreground(&setup, &log, &["--stop-timeout", "2s"])
        .spawn()
        .unwrap();
    let _guard = Unmount(setup.mnt());
    wait_mounted(&mut child, &setup.mnt(), &log);
    // A writer that writes 1 MiB and then holds the file open until killed.
    let mut writer = Command::new("python3")
        .arg("-c")
        .arg("import os,sys,time\nfd=os.open(sys.argv[1],os.O_WRONLY|os.O_CREAT|os.O_TRUNC,0o644)\nos.write(fd,b'x'*1048576)\nprint('written',flush=True)\ntime.sleep(60)")
        .arg(setup.mnt().join("held.bin"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(writer.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "written");
    let signalled = Instant::now();
    sigterm(&child);
    let st = wait_exit(&mut child, Duration::from_secs(30), &log);
    let waited = signalled.elapsed();
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(
        !st.success(),
        "a forced stop exits non-zero; log:\n{}",
        read(&log)
    );
    assert!(
        waited >= Duration::from_secs(2),
        "stopped before the timeout: {waited:?}"
    );
    assert!(
        read(&log).contains("stop timeout reached"),
        "{}",
        read(&log)
    );
    let storage = server.storage_in(&bucket);
    assert!(
        server_bytes(&storage, "held.bin").is_none(),
        "a file still being written must not be uploaded"
    );
    let kept: Vec<PathBuf> = walk_files(&setup.cache())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), vec![b'x'; 1048576]);
    let note = std::fs::read_to_string(kept[0].with_extension("key")).unwrap();
    assert!(
        note.starts_with(&format!("s3://{bucket}/held.bin\n")),
        "{note}"
    );
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .flat_map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => walk_files(&e.path()),
            Ok(_) => vec![e.path()],
            Err(_) => Vec::new(),
        })
        .collect()
}

fn walk_sizes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => walk_sizes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Logs

/// Mount with `log_args` and `rust_log`, do a few operations (including a failing request),
/// unmount, and return the log.
fn log_of_a_session(log_args: &[&str], rust_log: Option<&str>) -> (String, &'static Server) {
    let server = server();
    let bucket = server.fresh_bucket("logs");
    let setup = Setup::new(server, &bucket);
    let log = setup.path().join("stderr");
    let log_file = setup.path().join("s3mount.log");
    let mut cmd = command(&log);
    cmd.args(["--foreground", "--config"])
        .arg(setup.config())
        .arg("--cache-dir")
        .arg(setup.cache())
        .arg("--log-file")
        .arg(&log_file)
        .args(log_args)
        .arg(setup.mnt());
    if let Some(r) = rust_log {
        cmd.env("RUST_LOG", r);
    }
    let mut child = cmd.spawn().unwrap();
    let _guard = Unmount(setup.mnt());
    wait_mounted(&mut child, &setup.mnt(), &log);
    let m = setup.mnt();
    std::fs::write(m.join("a.txt"), b"hello").unwrap();
    std::fs::create_dir(m.join("d")).unwrap();
    std::fs::write(m.join("d/b.txt"), random_bytes(100_000, 1)).unwrap();
    assert_eq!(std::fs::read(m.join("a.txt")).unwrap(), b"hello");
    std::fs::rename(m.join("a.txt"), m.join("c.txt")).unwrap();
    let _ = std::fs::read_dir(&m).unwrap().count();
    assert!(std::fs::metadata(m.join("missing")).is_err());
    std::fs::remove_file(m.join("c.txt")).unwrap();
    sigterm(&child);
    let st = wait_exit(&mut child, Duration::from_secs(30), &log);
    assert!(st.success(), "exit {st}; log:\n{}", read(&log));
    let all = format!("{}{}", read(&log_file), read(&log));
    assert!(!all.is_empty());
    (all, server)
}

fn assert_no_secret(log: &str, server: &Server) {
    let secret = &server.secret_key;
    let encoded: String =
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    for (what, needle) in [
        ("the secret access key", secret.as_str()),
        ("the percent-encoded secret", encoded.as_str()),
        ("the secret's first half", &secret[..secret.len() / 2]),
        ("the secret's second half", &secret[secret.len() / 2..]),
    ] {
        assert!(
            !log.contains(needle),
            "{what} appears in the log:\n{}",
            log.lines()
                .filter(|l| l.contains(needle))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Nor the request signatures (a signature is not the key, but it is a credential for the
    // request it signs, and nothing needs it in a log).
    for line in log.lines() {
        assert!(
            !line.contains("Signature="),
            "a request signature is logged: {line}"
        );
    }
}

#[test]
fn debug_log_has_no_secret() {
    let (log, server) = log_of_a_session(&["--log-level", "debug"], None);
    assert!(log.contains("DEBUG"), "nothing logged at debug:\n{log}");
    assert_no_secret(&log, server);
}

#[test]
fn trace_log_of_every_crate_has_no_secret() {
    let (log, server) = log_of_a_session(&[], Some("trace"));
    assert!(log.contains("TRACE"), "nothing logged at trace");
    assert_no_secret(&log, server);
}

// ---------------------------------------------------------------------------------------------
// Refusals

fn refused(args: &[&str], must_name: &str) {
    let server = server();
    let bucket = server.fresh_bucket("refuse");
    let setup = Setup::new(server, &bucket);
    let log = setup.path().join("log");
    let mut child = command(&log)
        .arg("--config")
        .arg(setup.config())
        .arg("--cache-dir")
        .arg(setup.cache())
        .args(args)
        .arg(&bucket)
        .arg(setup.mnt())
        .spawn()
        .unwrap();
    let _guard = Unmount(setup.mnt());
    let st = wait_exit(&mut child, Duration::from_secs(20), &log);
    let out = read(&log);
    assert!(!st.success(), "{args:?} accepted; output:\n{out}");
    assert!(
        out.contains(must_name),
        "{args:?}: message does not name {must_name:?}:\n{out}"
    );
    assert!(out.starts_with("s3mount: "), "not one clear line: {out}");
    assert!(!is_fuse_mount(&setup.mnt()), "{args:?}: mounted anyway");
}

/// `--recover` works through every mount's dir under the cache dir: a bucket or mount point
/// after it, which seemed to narrow it to one mount, is refused instead of ignored.
#[test]
fn recover_with_a_bucket_or_mount_point_is_refused() {
    refused(&["--recover"], "--recover takes no BUCKET or MOUNTPOINT");
}

#[test]
fn unknown_mount_option_is_refused() {
    refused(&["-o", "rw,bogus"], "bogus");
}

#[test]
fn bad_uid_option_is_refused() {
    refused(&["-o", "uid=abc"], "uid");
}

#[test]
fn option_without_its_value_is_refused() {
    refused(&["-o", "cache_size="], "cache_size");
}

#[test]
fn busy_mount_point_is_refused() {
    let server = server();
    let bucket = server.fresh_bucket("busy");
    let setup = Setup::new(server, &bucket);
    let log = setup.path().join("log1");
    let mut first = foreground(&setup, &log, &[]).spawn().unwrap();
    let _guard = Unmount(setup.mnt());
    wait_mounted(&mut first, &setup.mnt(), &log);
    std::fs::write(setup.mnt().join("first.txt"), b"1").unwrap();

    // Daemon mode (what mount(8) and fstab use) and the foreground both refuse.
    for fg in [false, true] {
        let log2 = setup.path().join("log2");
        let mut cmd = command(&log2);
        if fg {
            cmd.arg("--foreground");
        }
        let mut second = cmd
            .arg("--config")
            .arg(setup.config())
            .arg("--cache-dir")
            .arg(setup.path().join("cache2"))
            .arg(setup.mnt())
            .spawn()
            .unwrap();
        let st = wait_exit(&mut second, Duration::from_secs(20), &log2);
        let out = read(&log2);
        assert!(!st.success(), "second mount accepted (fg {fg}):\n{out}");
        assert!(
            out.contains("already") && out.contains(&setup.mnt().display().to_string()),
            "unclear message (fg {fg}): {out}"
        );
        let count = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&format!(" {} ", setup.mnt().display())))
            .count();
        assert_eq!(count, 1, "mounts stacked on {}", setup.mnt().display());
    }
    // The first mount is untouched.
    assert_eq!(std::fs::read(setup.mnt().join("first.txt")).unwrap(), b"1");
    sigterm(&first);
    let st = wait_exit(&mut first, Duration::from_secs(30), &log);
    assert!(st.success(), "{st}: {}", read(&log));
}

/// SIGHUP — the terminal of a foreground mount closed, an ssh session gone — stops the mount
/// as SIGTERM does (as libfuse's file systems do): unmounted, what was written uploaded, exit
/// 0; not killed, leaving a dead mount point ("Transport endpoint is not connected").
#[test]
fn sighup_unmounts_cleanly() {
    let server = server();
    let bucket = server.fresh_bucket("sighup");
    let setup = Setup::new(server, &bucket);
    let log = setup.path().join("log");
    let mut child = foreground(&setup, &log, &[]).spawn().unwrap();
    let _guard = Unmount(setup.mnt());
    wait_mounted(&mut child, &setup.mnt(), &log);
    std::fs::write(setup.mnt().join("before-hup.txt"), b"kept").unwrap();
    // SAFETY: sending a signal to our own child.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let st = wait_exit(&mut child, Duration::from_secs(30), &log);
    assert!(st.success(), "{st}: {}", read(&log));
    assert!(!is_fuse_mount(&setup.mnt()), "still mounted after SIGHUP");
    assert!(
        std::fs::metadata(setup.mnt()).is_ok(),
        "dead mount point left"
    );
    assert_eq!(
        server_bytes(&server.storage_in(&bucket), "before-hup.txt").as_deref(),
        Some(&b"kept"[..])
    );
}

/// In the background the mount's process leaves the directory it was started from (as every
/// daemon does): holding it as its working directory kept that file system busy — a USB disk
/// or another mount the admin happened to `cd` into could not be unmounted while the bucket was
/// mounted. Relative paths given on the command line still mean what they meant there.
#[test]
fn background_mount_leaves_its_starting_directory() {
    let server = server();
    let bucket = server.fresh_bucket("cwd");
    let setup = Setup::new(server, &bucket);
    let log = setup.path().join("log");
    let st = command(&log)
        .current_dir(setup.path())
        .args(["--config", "s3.yaml", "--cache-dir", "cache", "mnt"])
        .status()
        .unwrap();
    let _guard = Unmount(setup.mnt());
    assert!(st.success(), "{st}: {}", read(&log));
    // The mount's process, from the name of the figures it publishes (status.PID.json).
    let pid = std::fs::read_dir(setup.cache().join(&bucket))
        .unwrap()
        .find_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("status.")?
                .strip_suffix(".json")?
                .parse::<u32>()
                .ok()
        })
        .expect("status.PID.json");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(
        cwd,
        Path::new("/"),
        "the daemon holds its starting directory"
    );
    std::fs::write(setup.mnt().join("relative.txt"), b"paths").unwrap();
    let u = Command::new("umount").arg(setup.mnt()).status().unwrap();
    assert!(u.success());
    assert_eq!(
        server_bytes(&server.storage_in(&bucket), "relative.txt").as_deref(),
        Some(&b"paths"[..])
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        setup.cache().join(&bucket).join("s3mount.log").exists(),
        "the relative --cache-dir was not used"
    );
}

/// A mount left behind by a crashed (SIGKILLed) s3mount: a new mount there is refused with a
/// message that says how to clear it, and after `fusermount3 -u` mounting works again.
#[test]
fn stale_mount_from_a_crash_gives_a_hint() {
    let server = server();
    let bucket = server.fresh_bucket("stale");
    let setup = Setup::new(server, &bucket);
    let log = setup.path().join("log1");
    let mut first = foreground(&setup, &log, &[]).spawn().unwrap();
    let _guard = Unmount(setup.mnt());
    wait_mounted(&mut first, &setup.mnt(), &log);
    first.kill().unwrap();
    first.wait().unwrap();
    let err = std::fs::metadata(setup.mnt()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");

    let log2 = setup.path().join("log2");
    let mut second = foreground(&setup, &log2, &[]).spawn().unwrap();
    let st = wait_exit(&mut second, Duration::from_secs(20), &log2);
    let out = read(&log2);
    assert!(!st.success(), "mounted over a stale mount:\n{out}");
    assert!(out.contains("fusermount3 -u"), "no hint: {out}");

    let u = Command::new("fusermount3")
        .arg("-u")
        .arg(setup.mnt())
        .status()
        .unwrap();
    assert!(u.success());
    let log3 = setup.path().join("log3");
    let mut third = foreground(&setup, &log3, &[]).spawn().unwrap();
    wait_mounted(&mut third, &setup.mnt(), &log3);
    sigterm(&third);
    assert!(wait_exit(&mut third, Duration::from_secs(30), &log3).success());
}

/// The mount's type is `fuse.s3mount` — in /proc/mounts, findmnt and `df -T` — when root
/// mounts directly with mount(2) (the mount(8) tests check it through fusermount3's and
/// mount.fuse's paths): tools and test suites tell what they are on by it.
#[test]
fn mount_type_is_fuse_s3mount() {
    let server = server();
    let bucket = server.fresh_bucket("subtype");
    let setup = Setup::new(server, &bucket);
    let log = setup.path().join("log");
    let mut child = foreground(&setup, &log, &[]).spawn().unwrap();
    let _guard = Unmount(setup.mnt());
    wait_mounted(&mut child, &setup.mnt(), &log);
    let mnt = setup.mnt().display().to_string();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(mnt.as_str()))
        .expect("in /proc/mounts");
    assert!(
        line.starts_with(&format!("s3mount:{bucket} {mnt} fuse.s3mount ")),
        "{line}"
    );
    let findmnt = Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE,SOURCE"])
        .arg(setup.mnt())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&findmnt.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["fuse.s3mount", &format!("s3mount:{bucket}")],
        "{}",
        text(&findmnt)
    );
    let df = Command::new("df")
        .arg("--output=fstype")
        .arg(setup.mnt())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&df.stdout)
            .lines()
            .any(|l| l.trim() == "fuse.s3mount"),
        "{}",
        text(&df)
    );
    // Served as usual, and unmounted by SIGTERM (our own umount for a mount(2) of our own).
    std::fs::write(setup.mnt().join("typed.txt"), b"t").unwrap();
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(30), &log).success());
    assert!(!is_fuse_mount(&setup.mnt()), "{}", read(&log));
    assert_eq!(
        server_bytes(&server.storage_in(&bucket), "typed.txt").as_deref(),
        Some(&b"t"[..])
    );
}

/// `--log-file` gets the log lines (start, stop) at the level asked for.
#[test]
fn log_file_option_receives_the_log() {
    let (log, _) = log_of_a_session(&["--log-level", "info"], None);
    assert!(log.contains("mounted s3://"), "{log}");
    assert!(log.contains("unmounting"), "{log}");
}

/// What everyday programs do on a mount leaves nothing in the log at the default level: `cp`
/// (which tries `copy_file_range`), `sed -i` (`isatty()` is an `ioctl(TCGETS)`), `vim` in ex
/// mode (swap file, write by rename), `git init/add/commit` and `tar` both ways. Only what a
/// user must act on belongs there; fuser's `[Not Implemented]` warnings did not.
#[test]
fn everyday_programs_leave_nothing_in_the_default_log() {
    // tar checks that a directory's ctime did not move while it read it; on s3s-fs a marker's
    // Last-Modified is its disk directory's, which moved when files were made in it, and a
    // lookup after the TTL (under load) shows it.
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let server = server();
    let bucket = server.fresh_bucket("quiet");
    let setup = Setup::new(server, &bucket);
    // A private cache dir: tightening one is (rightly) a warning of its own.
    std::fs::set_permissions(setup.cache(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let stderr = setup.path().join("stderr");
    let log_file = setup.path().join("s3mount.log");
    let log_arg = log_file.display().to_string();
    let mut child = foreground(&setup, &stderr, &["--log-file", &log_arg])
        .spawn()
        .unwrap();
    let _guard = Unmount(setup.mnt());
    wait_mounted(&mut child, &setup.mnt(), &stderr);
    let m = setup.mnt();
    let local = setup.path().join("local");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("text.txt"), "alpha\nbeta\ngamma\n".repeat(1000)).unwrap();
    let script = format!(
        r#"set -eux
cd '{m}'
cp '{local}/text.txt' text.txt
cp text.txt copy.txt
cp -a '{local}' tree
sed -i 's/beta/BETA/' text.txt
grep -q BETA text.txt
vim -es -u NONE -c '%s/gamma/GAMMA/' -c 'wq' copy.txt
grep -q GAMMA copy.txt
mkdir repo && cd repo
g="git -c user.name=T -c user.email=t@example.com -c init.defaultBranch=main"
$g init -q
cp ../text.txt .
$g add -A
$g commit -q -m first
$g status --porcelain
cd ..
tar cf '{local}/out.tar' repo text.txt
mkdir untar
tar xf '{local}/out.tar' -C untar
tar cf archive.tar tree
tar tf archive.tar >/dev/null
cmp untar/text.txt text.txt
"#,
        m = m.display(),
        local = local.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nlog:\n{}",
        text(&out),
        read(&log_file)
    );
    sigterm(&child);
    let st = wait_exit(&mut child, Duration::from_secs(60), &stderr);
    assert!(st.success(), "exit {st}; log:\n{}", read(&log_file));
    // The programs did reach the server.
    let storage = server.storage_in(&bucket);
    assert!(server_bytes(&storage, "repo/.git/HEAD").is_some());
    assert!(
        String::from_utf8_lossy(&server_bytes(&storage, "copy.txt").unwrap()).contains("GAMMA")
    );
    assert_eq!(read(&log_file), "", "the default log is not empty");
    assert_eq!(read(&stderr), "", "s3mount wrote to stderr");
}

// ---------------------------------------------------------------------------------------------
// Start-up errors

/// How `setup`'s mount is refused, run three ways: in the foreground, in the background (the
/// default) and through mount(8). Returns what each printed (stdout and stderr together).
fn refusals(setup: &Setup, bucket: &str) -> [(&'static str, String); 3] {
    let [fg, bg] = refusals_with(setup, bucket, &[]);
    let out = in_mount_namespace(
        setup,
        &format!(
            "mount -t fuse.s3mount {bucket} '{}' -o config={},cache_dir={}",
            setup.mnt().display(),
            setup.config().display(),
            setup.cache().display()
        ),
    );
    assert!(!out.status.success(), "mount(8) mounted:\n{}", text(&out));
    let helper = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    [fg, bg, ("mount(8)", helper)]
}

/// How `setup`'s mount with the flags `extra` is refused in the foreground and in the
/// background.
fn refusals_with(setup: &Setup, bucket: &str, extra: &[&str]) -> [(&'static str, String); 2] {
    let mut outputs = Vec::new();
    for fg in [true, false] {
        let log = setup.path().join(format!("refusal-{fg}"));
        let mut cmd = command(&log);
        if fg {
            cmd.arg("--foreground");
        }
        let mut child = cmd
            .arg("--config")
            .arg(setup.config())
            .arg("--cache-dir")
            .arg(setup.cache())
            .args(extra)
            .arg(bucket)
            .arg(setup.mnt())
            .spawn()
            .unwrap();
        let _guard = Unmount(setup.mnt());
        let st = wait_exit(&mut child, Duration::from_secs(60), &log);
        assert!(!st.success(), "mounted (fg {fg}):\n{}", read(&log));
        assert!(!is_fuse_mount(&setup.mnt()));
        outputs.push(read(&log));
    }
    let mut it = outputs.into_iter();
    let mut next = || it.next().unwrap_or_default();
    [("foreground", next()), ("background", next())]
}

/// A refused start says why once, in one line — the endpoint URL, the bucket, the S3 error
/// code where there is one, and the fix — in the same words in the foreground, in the
/// background and under mount(8): no log line repeating it first, no doubled prefix.
#[test]
fn startup_errors_are_one_line_the_same_everywhere() {
    let server = server();
    let bucket = server.fresh_bucket("startup");
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_endpoint = format!("http://127.0.0.1:{dead_port}");
    // (what, endpoint, secret, bucket, words the line must have)
    let cases: [(&str, &str, &str, &str, &[&str]); 3] = [
        (
            "missing bucket",
            &server.endpoint,
            &server.secret_key,
            "no-such-bucket-startup",
            &["it does not exist (NoSuchBucket)", "create the bucket"],
        ),
        (
            "wrong secret",
            &server.endpoint,
            "definitely-not-the-secret",
            &bucket,
            // S3 and moto: SignatureDoesNotMatch; Garage: AccessDenied.
            &["access denied (", "; "],
        ),
        (
            "nothing listening",
            &dead_endpoint,
            &server.secret_key,
            &bucket,
            &[
                "cannot connect (Connection refused",
                "check the endpoint URL",
            ],
        ),
    ];
    for (what, endpoint, secret, name, words) in cases {
        let setup = Setup::new(server, name);
        let yaml = read(&setup.config())
            .replace(&server.endpoint, endpoint)
            .replace(&server.secret_key, secret);
        std::fs::write(setup.config(), yaml).unwrap();
        let outputs = refusals(&setup, name);
        let expected_start = format!("s3mount: cannot use bucket \"{name}\" at {endpoint}: ");
        for (how, out) in &outputs {
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), 1, "{what}, {how}: not one line:\n{out}");
            assert!(
                lines[0].starts_with(&expected_start),
                "{what}, {how}: {out}"
            );
            for w in words {
                assert!(lines[0].contains(w), "{what}, {how}: no {w:?} in {out}");
            }
            assert!(
                !lines[0].contains("s3://"),
                "{what}, {how}: the request is named, not the problem: {out}"
            );
            assert!(
                !out.contains("definitely-not-the-secret"),
                "secret in {out}"
            );
        }
        assert_eq!(
            outputs[0].1, outputs[1].1,
            "{what}: foreground vs background"
        );
        assert_eq!(outputs[0].1, outputs[2].1, "{what}: foreground vs mount(8)");
    }
}

/// A start that fails once the background process has left its parent — here the
/// `--metrics-listen` port taken by another program — is told once, as in the foreground: the
/// parent prints what the background process reports, which printed it too on the same
/// terminal (every such line came twice). The background process's log keeps it.
#[test]
fn a_late_startup_error_is_told_once_in_the_background() {
    let server = server();
    let bucket = server.fresh_bucket("late-startup");
    let setup = Setup::new(server, &bucket);
    // A private cache dir, so that no warning that it was made private comes first.
    std::fs::set_permissions(setup.cache(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let outputs = refusals_with(&setup, &bucket, &["--metrics-listen", &addr]);
    for (how, out) in &outputs {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{how}: not one line:\n{out}");
        assert!(
            lines[0].starts_with(&format!("s3mount: --metrics-listen {addr}: ")),
            "{how}: {out}"
        );
    }
    assert_eq!(outputs[0].1, outputs[1].1, "foreground vs background");
    let log = read(&setup.cache().join(&bucket).join("s3mount.log"));
    assert!(log.contains("--metrics-listen"), "not in the log: {log}");
}

// ---------------------------------------------------------------------------------------------
// Help, man page and README

/// The flags in the option column of `--help` (lines such as `  -c, --config <FILE>  …`).
fn help_flags(help: &str) -> std::collections::BTreeSet<String> {
    let mut flags = std::collections::BTreeSet::new();
    for line in help.lines() {
        let Some(cell) = line.strip_prefix("  ") else {
            continue;
        };
        let cell = cell.trim_start();
        if !cell.starts_with('-') {
            continue;
        }
        for word in cell.split("  ").next().unwrap_or("").split([',', ' ']) {
            if word.starts_with('-') {
                flags.insert(word.to_string());
            }
        }
    }
    flags
}

/// The flags the man page's `.TP` entries start with, in the section starting at `.SH FROM`
/// up to the section `.SH UNTIL` (or the end).
fn man_flags(man: &str, from: &str, until: Option<&str>) -> std::collections::BTreeSet<String> {
    let start = man.find(&format!(".SH {from}")).expect("section");
    let rest = &man[start..];
    let rest = match until.and_then(|u| rest.find(&format!(".SH {u}"))) {
        Some(end) => &rest[..end],
        None => rest,
    };
    let mut flags = std::collections::BTreeSet::new();
    let mut lines = rest.lines();
    while let Some(line) = lines.next() {
        if line != ".TP" {
            continue;
        }
        let entry = lines.next().unwrap_or("").replace("\\-", "-");
        for part in entry.split("\\fB").skip(1) {
            let flag = part.split("\\fR").next().unwrap_or("");
            if flag.starts_with('-') {
                flags.insert(flag.to_string());
            }
        }
    }
    flags
}

/// The flags in the first column of the README table that follows `heading`.
fn readme_flags(readme: &str, heading: &str) -> std::collections::BTreeSet<String> {
    let start = readme.find(heading).expect("README heading");
    let mut flags = std::collections::BTreeSet::new();
    let mut in_table = false;
    for line in readme[start..].lines().skip(1) {
        if line.starts_with("| ") {
            in_table = true;
            let cell = line.split(" | ").next().unwrap_or("");
            for code in cell.split('`').skip(1).step_by(2) {
                for word in code.split([',', ' ']) {
                    if word.starts_with('-') {
                        flags.insert(word.to_string());
                    }
                }
            }
        } else if in_table {
            break;
        }
    }
    flags
}

/// `--help`, the man page and the README's option tables name the same flags — those of the
/// mount and those of `s3mount status` — so none of them can fall behind the code. The
/// hidden mount(8) helper flags are in the README alone.
#[test]
fn help_man_page_and_readme_agree() {
    let run = |args: &[&str]| -> String {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let help = help_flags(&run(&["--help"]));
    let status_help = help_flags(&run(&["status", "--help"]));
    let man = run(&["--print-man-page"]);
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        help.contains("--metadata-ttl") && help.contains("-o"),
        "{help:?}"
    );
    assert!(help.contains("--print-man-page"), "{help:?}");
    assert_eq!(
        help,
        man_flags(&man, "OPTIONS", Some("\"S3MOUNT STATUS\"")),
        "--help vs the man page"
    );
    let hidden: std::collections::BTreeSet<String> =
        ["-s", "-n", "-v", "-t"].map(String::from).into();
    let in_readme = readme_flags(&readme, "### Options");
    assert_eq!(
        help.union(&hidden)
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        in_readme,
        "--help (and the hidden helper flags) vs README's options table"
    );
    assert!(status_help.contains("--json"), "{status_help:?}");
    assert_eq!(
        status_help,
        man_flags(&man, "\"S3MOUNT STATUS\"", Some("VERSION")),
        "status --help vs the man page"
    );
    assert_eq!(
        status_help,
        readme_flags(&readme, "### Status"),
        "status --help vs README's status table"
    );
}

// ---------------------------------------------------------------------------------------------
// Progress of the long commands

/// `count` files of 4 MiB kept under `cache/BUCKET/unsaved/`, as a failed upload leaves them,
/// each with its note naming `kept-N.bin`.
fn keep_unsaved(setup: &Setup, bucket: &str, count: usize) {
    let dir = setup.cache().join(bucket).join("unsaved");
    std::fs::create_dir_all(&dir).unwrap();
    for dir in [setup.cache(), setup.cache().join(bucket), dir.clone()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    for i in 0..count {
        std::fs::write(
            dir.join(format!("{i}-kept.data")),
            random_bytes(4 << 20, i as u64),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{i}-kept.key")),
            format!("s3://{bucket}/kept-{i}.bin\n"),
        )
        .unwrap();
    }
}

/// `--recover` whose reader has gone (`s3mount --recover | head -1`; here a stdout closed
/// before it starts) uploads everything all the same: the line of the first file uploaded used
/// to panic ("failed printing to stdout"), exit 101 with the other files left behind.
#[test]
fn recover_goes_on_when_its_reader_has_gone() {
    let server = server();
    let bucket = server.fresh_bucket("recover-pipe");
    let setup = Setup::new(server, &bucket);
    let storage = server.storage_in(&bucket);
    keep_unsaved(&setup, &bucket, 3);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .arg("--recover")
        .arg("--config")
        .arg(setup.config())
        .arg("--cache-dir")
        .arg(setup.cache())
        .stdout(writer)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for i in 0..3 {
        assert_eq!(
            server_bytes(&storage, &format!("kept-{i}.bin")).map(|b| b.len()),
            Some(4 << 20),
            "kept-{i}.bin: {}",
            text(&out)
        );
    }
}

/// `--recover` shows a bar (files, bytes, rate) on a terminal, and only its plain lines
/// otherwise: one per file uploaded, no control characters. Both upload everything.
#[test]
fn recover_shows_a_bar_on_a_terminal_and_plain_lines_otherwise() {
    let server = server();
    let bucket = server.fresh_bucket("progress");
    let setup = Setup::new(server, &bucket);
    let storage = server.storage_in(&bucket);
    let recover = format!(
        "'{BIN}' --recover --config '{}' --cache-dir '{}'",
        setup.config().display(),
        setup.cache().display()
    );

    // Not a terminal: the lines alone.
    keep_unsaved(&setup, &bucket, 4);
    let out = Command::new("sh").arg("-c").arg(&recover).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for i in 0..4 {
        assert!(
            stdout.contains(&format!("-> s3://{bucket}/kept-{i}.bin\n")),
            "{}",
            text(&out)
        );
        assert_eq!(
            server_bytes(&storage, &format!("kept-{i}.bin")).map(|b| b.len()),
            Some(4 << 20)
        );
    }
    assert!(
        stdout.contains("recover: 4 uploaded, 0 left"),
        "{}",
        text(&out)
    );
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !all.contains('\r') && !all.contains('\x1b'),
        "control characters without a terminal: {all:?}"
    );

    // On a terminal (script(1) gives it one): the bar, then the same lines.
    keep_unsaved(&setup, &bucket, 4);
    let out = Command::new("script")
        .args(["-qec", &recover, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("recover ["), "no bar: {tty:?}");
    assert!(tty.contains("/4 files"), "no file count: {tty:?}");
    assert!(tty.contains("MiB"), "no byte count: {tty:?}");
    assert!(tty.contains("recover: 4 uploaded, 0 left"), "{tty:?}");
    assert_eq!(
        std::fs::read_dir(setup.cache().join(&bucket).join("unsaved"))
            .unwrap()
            .count(),
        0,
        "everything uploaded and removed"
    );
}
