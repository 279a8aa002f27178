//! What programs expect of a file system, checked NEXT TO a local disk: each scenario runs the
//! same operations in a directory of a local temp dir (ext4, relatime) and in a directory of
//! the mount, and compares what `lstat` says of every path named — type, mode, uid, gid,
//! nlink, size (of all but directories, whose size is the file system's own), rdev — and which
//! of atime, mtime, ctime the operation moved ([`same_as_disk`]).
//!
//! Ownership is played with a second, unprivileged user (uid/gid 65534, `setpriv`) on a mount
//! with `--allow-other`. Also here: files unlinked or replaced while open, special files
//! through `rsync -a`, `tar` and a remount, s3fs reading what s3mount wrote and the reverse,
//! directories other tools make, the Content-Type of a renamed file, and long names.

mod common;

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use common::{open_path_to, server, server_bytes, sh, skip_on, Mount, ServerLimit};
use s3mount::s3::{ObjectStore, PutOptions, RequestBody};

use common::NOBODY;
/// Between a scenario's setup and its operation, so that a time the operation moves differs
/// from the one before on both sides (nanosecond times; not a timing assertion).
const PAUSE: Duration = Duration::from_millis(30);

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// What the comparison looks at of one path (`lstat`).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    /// `None` for a directory (its size is the file system's own).
    size: Option<u64>,
    rdev: u64,
}

/// The three times of a path, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Times {
    atime: i128,
    mtime: i128,
    ctime: i128,
}

fn ns(s: i64, n: i64) -> i128 {
    i128::from(s) * 1_000_000_000 + i128::from(n)
}

fn look(p: &Path) -> Option<(Seen, Times)> {
    let m = std::fs::symlink_metadata(p).ok()?;
    let kind = m.mode() & libc::S_IFMT;
    let seen = Seen {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink(),
        size: (kind != libc::S_IFDIR).then_some(m.size()),
        rdev: m.rdev(),
    };
    let times = Times {
        atime: ns(m.atime(), m.atime_nsec()),
        mtime: ns(m.mtime(), m.mtime_nsec()),
        ctime: ns(m.ctime(), m.ctime_nsec()),
    };
    Some((seen, times))
}

/// Which times moved: "a", "m", "c" in that order.
fn moved(before: Option<Times>, after: Option<Times>) -> String {
    let (Some(b), Some(a)) = (before, after) else {
        return "-".into();
    };
    let mut s = String::new();
    if a.atime != b.atime {
        s.push('a');
    }
    if a.mtime != b.mtime {
        s.push('m');
    }
    if a.ctime != b.ctime {
        s.push('c');
    }
    s
}

/// A scenario: `setup`, then `op`, each given the scenario's directory; `paths` (relative to
/// it, "." for itself) are compared.
struct Scenario<'a> {
    name: &'a str,
    paths: &'a [&'a str],
    setup: &'a dyn Fn(&Path),
    op: &'a dyn Fn(&Path),
}

/// Run `sc` in a new directory of the local temp dir `local` and of the mount `mnt` (both
/// made by `mkdir`), and return every difference, one line each.
fn same_as_disk(local: &Path, mnt: &Path, sc: &Scenario) -> Vec<String> {
    let dirs = [local.join(sc.name), mnt.join(sc.name)];
    let mut results = Vec::new();
    for d in &dirs {
        std::fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        // Open to the second user, as the scenarios that play it need.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        (sc.setup)(d);
        std::thread::sleep(PAUSE);
        let before: Vec<_> = sc.paths.iter().map(|p| look(&d.join(p))).collect();
        std::thread::sleep(PAUSE);
        (sc.op)(d);
        let after: Vec<_> = sc.paths.iter().map(|p| look(&d.join(p))).collect();
        results.push((before, after));
    }
    let mut diffs = Vec::new();
    for (i, p) in sc.paths.iter().enumerate() {
        let side = |k: usize| {
            let (b, a) = &results[k];
            let seen = a[i].as_ref().map(|x| x.0.clone());
            let m = moved(b[i].as_ref().map(|x| x.1), a[i].as_ref().map(|x| x.1));
            (seen, m)
        };
        let (disk, mount) = (side(0), side(1));
        if disk != mount {
            diffs.push(format!(
                "{}: {p}: disk {:?} moved {:?}; mount {:?} moved {:?}",
                sc.name, disk.0, disk.1, mount.0, mount.1
            ));
        }
    }
    diffs
}

/// `script` with `sh -c` as uid/gid 65534 with no supplementary groups (must succeed).
fn as_nobody(script: &str) -> Output {
    let out = common::as_nobody(script);
    assert!(
        out.status.success(),
        "as nobody: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(p: &Path, data: &[u8]) {
    std::fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

fn append(p: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(data).unwrap();
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// `mknod(2)` (the errno on failure).
fn mknod(p: &Path, mode: u32, dev: u64) -> Result<(), i32> {
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe { libc::mknod(cstr(p).as_ptr(), mode, dev) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// A unix socket bound at `p` (the name stays after the socket is closed).
fn bind_socket(p: &Path) {
    std::os::unix::net::UnixListener::bind(p)
        .unwrap_or_else(|e| panic!("bind {}: {e}", p.display()));
}

/// `utimensat(2)` with these atime and mtime (`None`: leave it).
fn set_times(p: &Path, atime: Option<SystemTime>, mtime: Option<SystemTime>) {
    let ts = |t: Option<SystemTime>| match t {
        Some(t) => {
            let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            libc::timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: d.subsec_nanos() as i64,
            }
        }
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    };
    let times = [ts(atime), ts(mtime)];
    // SAFETY: a valid path and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cstr(p).as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

fn local_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("s3mount-posix.")
        .tempdir()
        .unwrap();
    open_path_to(&d.path().join("x"));
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn noop(_: &Path) {}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The rows of the semantics table that hold for any user: each operation next to a disk.
#[test]
fn every_operation_as_on_a_local_disk() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("posix-rows");
    let m = Mount::new(srv, &bucket);
    let local = local_dir();
    let file = |d: &Path| write(&d.join("f"), b"abc");
    let scenarios: Vec<Scenario> = vec![
        Scenario {
            name: "create",
            paths: &[".", "f"],
            setup: &noop,
            op: &|d| write(&d.join("f"), b"hello"),
        },
        Scenario {
            name: "append",
            paths: &[".", "f"],
            setup: &file,
            op: &|d| append(&d.join("f"), b"def"),
        },
        Scenario {
            name: "read",
            paths: &[".", "f"],
            setup: &file,
            op: &|d| assert_eq!(std::fs::read(d.join("f")).unwrap(), b"abc"),
        },
        Scenario {
            name: "readdir",
            paths: &[".", "f"],
            setup: &file,
            op: &|d| assert_eq!(names(d), ["f"]),
        },
        Scenario {
            name: "readlink",
            paths: &[".", "l"],
            setup: &|d| std::os::unix::fs::symlink("f", d.join("l")).unwrap(),
            op: &|d| assert_eq!(std::fs::read_link(d.join("l")).unwrap(), Path::new("f")),
        },
        Scenario {
            name: "chmod",
            paths: &[".", "f"],
            setup: &file,
            op: &|d| {
                std::fs::set_permissions(d.join("f"), std::fs::Permissions::from_mode(0o600))
                    .unwrap()
            },
        },
        Scenario {
            name: "chown",
            paths: &[".", "f"],
            setup: &file,
            op: &|d| std::os::unix::fs::chown(d.join("f"), Some(NOBODY), Some(NOBODY)).unwrap(),
        },
        Scenario {
            name: "truncate",
            paths: &["f"],
            setup: &file,
            op: &|d| {
                sh(&format!("truncate -s 1 {}", q(&d.join("f"))));
            },
        },
        Scenario {
            name: "truncate-path",
            paths: &["f"],
            setup: &file,
            op: &|d| {
                // truncate(2) on the path (no open descriptor, no time in the request).
                // SAFETY: a valid path.
                assert_eq!(unsafe { libc::truncate(cstr(&d.join("f")).as_ptr(), 7) }, 0);
            },
        },
        Scenario {
            // open(O_TRUNC) of an existing file, one with bytes and an empty one: `>`, `cp`
            // and `dd` over a file.
            name: "open-trunc",
            paths: &[".", "f", "e"],
            setup: &|d| {
                write(&d.join("f"), b"abc");
                write(&d.join("e"), b"");
            },
            op: &|d| {
                for name in ["f", "e"] {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(d.join(name))
                        .unwrap();
                }
            },
        },
        Scenario {
            name: "touch-a",
            paths: &["f"],
            setup: &file,
            op: &|d| set_times(&d.join("f"), Some(at(1_000_000_000, 5)), None),
        },
        Scenario {
            name: "touch-m",
            paths: &["f"],
            setup: &file,
            op: &|d| set_times(&d.join("f"), None, Some(at(1_100_000_000, 7))),
        },
        Scenario {
            name: "utimensat",
            paths: &["f"],
            setup: &file,
            op: &|d| {
                set_times(
                    &d.join("f"),
                    Some(at(1_200_000_000, 1)),
                    Some(at(1_300_000_000, 2)),
                )
            },
        },
        Scenario {
            name: "setfattr",
            paths: &["f"],
            setup: &file,
            op: &|d| {
                sh(&format!(
                    "setfattr -n user.x-amz-meta-color -v red {}",
                    q(&d.join("f"))
                ));
            },
        },
        Scenario {
            name: "rename",
            paths: &[".", "f", "g"],
            setup: &file,
            op: &|d| std::fs::rename(d.join("f"), d.join("g")).unwrap(),
        },
        Scenario {
            name: "rename-across",
            paths: &[".", "a", "b", "a/f", "b/f"],
            setup: &|d| {
                std::fs::create_dir(d.join("a")).unwrap();
                std::fs::create_dir(d.join("b")).unwrap();
                write(&d.join("a/f"), b"x");
            },
            op: &|d| std::fs::rename(d.join("a/f"), d.join("b/f")).unwrap(),
        },
        Scenario {
            name: "rename-over",
            paths: &[".", "f", "g"],
            setup: &|d| {
                // Not within one tick of the disk's clock: `g` is `f` afterwards, and its
                // times are compared with those of the `g` it replaced.
                write(&d.join("g"), b"old one");
                std::thread::sleep(PAUSE);
                write(&d.join("f"), b"new");
            },
            op: &|d| std::fs::rename(d.join("f"), d.join("g")).unwrap(),
        },
        Scenario {
            name: "unlink",
            paths: &[".", "f"],
            setup: &file,
            op: &|d| std::fs::remove_file(d.join("f")).unwrap(),
        },
        Scenario {
            name: "mkdir",
            paths: &[".", "d"],
            setup: &noop,
            op: &|d| std::fs::create_dir(d.join("d")).unwrap(),
        },
        Scenario {
            name: "mkdir-nested",
            paths: &[".", "d", "d/a", "d/b"],
            setup: &|d| std::fs::create_dir(d.join("d")).unwrap(),
            op: &|d| {
                std::fs::create_dir(d.join("d/a")).unwrap();
                std::fs::create_dir(d.join("d/b")).unwrap();
                write(&d.join("d/file"), b"");
            },
        },
        Scenario {
            name: "rmdir",
            paths: &[".", "d"],
            setup: &|d| std::fs::create_dir(d.join("d")).unwrap(),
            op: &|d| std::fs::remove_dir(d.join("d")).unwrap(),
        },
        Scenario {
            name: "rename-dir",
            paths: &[".", "d", "e", "e/f"],
            setup: &|d| {
                std::fs::create_dir(d.join("d")).unwrap();
                write(&d.join("d/f"), b"inside");
            },
            op: &|d| std::fs::rename(d.join("d"), d.join("e")).unwrap(),
        },
        Scenario {
            name: "symlink",
            paths: &[".", "l"],
            setup: &noop,
            op: &|d| std::os::unix::fs::symlink("some/target", d.join("l")).unwrap(),
        },
        Scenario {
            name: "mkfifo",
            paths: &[".", "p"],
            setup: &noop,
            op: &|d| mknod(&d.join("p"), libc::S_IFIFO | 0o640, 0).unwrap(),
        },
        Scenario {
            name: "mknod-devices",
            paths: &[".", "c", "b"],
            setup: &noop,
            op: &|d| {
                mknod(&d.join("c"), libc::S_IFCHR | 0o600, libc::makedev(1, 3)).unwrap();
                mknod(&d.join("b"), libc::S_IFBLK | 0o660, libc::makedev(7, 42)).unwrap();
            },
        },
        Scenario {
            name: "mknod-regular",
            paths: &[".", "r"],
            setup: &noop,
            op: &|d| mknod(&d.join("r"), libc::S_IFREG | 0o640, 0).unwrap(),
        },
        Scenario {
            name: "socket",
            paths: &[".", "s"],
            setup: &noop,
            op: &|d| bind_socket(&d.join("s")),
        },
        Scenario {
            name: "special-chmod-rename-unlink",
            paths: &[".", "p", "q", "c"],
            setup: &|d| {
                mknod(&d.join("p"), libc::S_IFIFO | 0o644, 0).unwrap();
                mknod(&d.join("c"), libc::S_IFCHR | 0o600, libc::makedev(4, 1)).unwrap();
            },
            op: &|d| {
                std::fs::set_permissions(d.join("p"), std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                std::fs::rename(d.join("p"), d.join("q")).unwrap();
                std::fs::remove_file(d.join("c")).unwrap();
            },
        },
    ];
    let mut diffs = Vec::new();
    for sc in &scenarios {
        diffs.extend(same_as_disk(local.path(), m.path(), sc));
    }
    assert!(
        diffs.is_empty(),
        "{} differences from a local disk:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// A time before 1970 with a fraction of a second, set through the kernel (`touch -d`,
/// `utimensat`, `cp -a` and `tar -x` of an old file), is the time asked for: the kernel sends
/// it as a timespec (whole seconds rounded down, then the nanoseconds after them), which
/// fuser 0.18 read as that many seconds and nanoseconds before 1970, so
/// `touch -d '1960-01-01 00:00:00.25'` showed 1959-12-31 23:59:59.75 and stored it.
#[test]
fn a_time_before_1970_with_a_fraction_is_the_one_set() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-1960");
    let local = local_dir();
    let m = Mount::new(srv, &bucket);
    let touch = |p: &Path| {
        write(p, b"old");
        sh(&format!("touch -d '1960-01-01 00:00:00.25 UTC' {}", q(p)));
    };
    touch(&local.path().join("f"));
    touch(&m.join("f"));
    // 1960-01-01 00:00:00.25 is 315 619 199.75 s before 1970.
    let want = ns(-315_619_200, 250_000_000);
    let times = |p: &Path| look(p).map(|(_, t)| (t.atime, t.mtime));
    assert_eq!(
        times(&local.path().join("f")),
        Some((want, want)),
        "on a disk"
    );
    assert_eq!(times(&m.join("f")), Some((want, want)), "on the mount");
    let h = srv
        .storage()
        .head_object(&common::obj(&bucket, "f"))
        .unwrap();
    assert_eq!(h.metadata.get("mtime"), Some("-315619200.250000000"));
    assert_eq!(h.metadata.get("atime"), Some("-315619200.250000000"));
    m.unmount();
    let m = Mount::new(srv, &bucket);
    assert_eq!(times(&m.join("f")), Some((want, want)), "after a remount");
}

/// `fallocate(2)` next to a local disk: the `fallocate` tool's modes (`-l`, `-o`, `-n`, `-p`,
/// `-z`, `-d`) and `posix_fallocate` leave the same size, the same bytes (read back through
/// the page cache, which the punch and zero ranges must not leave stale) and the same moved
/// times on both, and what the mount shows is on the server after close (read through the S3
/// API), in parts for a large sparse file. The errors the disk answers are the mount's too.
#[test]
fn fallocate_as_on_a_local_disk() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-fallocate");
    let m = Mount::new(srv, &bucket);
    let local = local_dir();
    // No zero byte in it; read back once, so its pages are in the page cache.
    let content: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8 + 1).collect();
    let file = |d: &Path| {
        write(&d.join("f"), &content);
        let _ = std::fs::read(d.join("f")).unwrap();
    };
    // `fallocate -d` digs holes where a whole block (st_blksize: 4 KiB on the disk, 1 MiB on
    // the mount) reads as zeros: a file of zeros only is dug the same on both.
    let zeros = |d: &Path| write(&d.join("f"), &[0u8; 12_000]);
    type Setup<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Setup, &str); 11] = [
        ("l", &file, "fallocate -l 20000 f"),
        ("inside", &file, "fallocate -o 1000 -l 100 f"),
        ("n", &file, "fallocate -n -o 0 -l 50000 f"),
        ("p", &file, "fallocate -p -o 100 -l 5000 f"),
        ("p-end", &file, "fallocate -p -o 10000 -l 5000 f"),
        ("z", &file, "fallocate -z -o 100 -l 5000 f"),
        ("z-grow", &file, "fallocate -z -o 10000 -l 5000 f"),
        ("zn", &file, "fallocate -z -n -o 10000 -l 5000 f"),
        ("d", &zeros, "fallocate -d f"),
        // Read, punched and read again through one descriptor: the pages the first read left
        // in the page cache must not answer the second (the kernel zeroes the pages the range
        // cuts and drops those it covers, 4096..8192, which are read from the mount again).
        (
            "p-read",
            &file,
            "python3 -c 'import os, ctypes; libc = ctypes.CDLL(None, use_errno=True); \
             libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]; \
             fd = os.open(\"f\", os.O_RDWR); a = os.pread(fd, 12000, 0); \
             assert libc.fallocate(fd, 3, 100, 8900) == 0, ctypes.get_errno(); \
             b = os.pread(fd, 12000, 0); assert b == a[:100] + bytes(8900) + a[9000:], \"stale\"'",
        ),
        (
            "posix",
            &file,
            "python3 -c 'import os; fd = os.open(\"f\", os.O_RDWR); os.posix_fallocate(fd, 5, 30000)'",
        ),
    ];
    let mut diffs = Vec::new();
    let mut on_disk = Vec::new();
    for (name, setup, cmd) in cases {
        let op = |d: &Path| {
            sh(&format!("cd {} && {cmd}", q(d)));
        };
        let sc = Scenario {
            name,
            paths: &[".", "f"],
            setup,
            op: &op,
        };
        diffs.extend(same_as_disk(local.path(), m.path(), &sc));
        let disk = std::fs::read(local.path().join(name).join("f")).unwrap();
        let mnt = std::fs::read(m.join(name).join("f")).unwrap();
        if disk != mnt {
            diffs.push(format!("{name}: `{cmd}` left other bytes than on the disk"));
        }
        on_disk.push((name, disk));
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let storage = srv.storage_in(&bucket);
    for (name, disk) in &on_disk {
        let key = format!("{name}/f");
        let got = server_bytes(&storage, &key).unwrap_or_else(|| panic!("no {key}"));
        common::assert_same(&key, &got, disk);
    }

    // The errors (0 for success) of calls the disk refuses: an empty range, a negative
    // offset, a descriptor not open for writing, a punch that would not keep the size, a mode
    // ext4 does not have for this file.
    let errors = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
out = []
for flags, mode, off, n in [(os.O_RDWR, 0, 0, 0), (os.O_RDWR, 0, -1, 10),
        (os.O_RDONLY, 0, 0, 10), (os.O_RDWR, 2, 0, 10), (os.O_RDWR, 0x40, 0, 10)]:
    fd = os.open(sys.argv[1], flags)
    out.append(0 if libc.fallocate(fd, mode, off, n) == 0 else ctypes.get_errno())
    os.close(fd)
print(out)
"#;
    let answers = |p: &Path| {
        let out = common::python(errors, &[p.as_os_str()]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(answers(&m.join("l/f")), answers(&local.path().join("l/f")));

    // 40 MiB (past the 16 MiB multipart threshold) of which 4 bytes were written.
    let big = m.join("big");
    write(&big, b"head");
    sh(&format!("fallocate -l 40M {}", q(&big)));
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 40 << 20);
    let h = srv
        .storage()
        .head_object(&common::obj(&bucket, "big"))
        .unwrap();
    assert!(
        h.etag.as_deref().is_some_and(|e| e.contains('-')),
        "a multipart upload: {:?}",
        h.etag
    );
    let got = server_bytes(&storage, "big").unwrap();
    let mut want = vec![0u8; 40 << 20];
    want[..4].copy_from_slice(b"head");
    common::assert_same("big", &got, &want);
}

/// `touch` of an existing file (`utimensat` with `UTIME_NOW` for both times) gives it one
/// time, as a disk does: the atime, the mtime and the ctime were three readings of the clock,
/// some nanoseconds apart, so a file just touched looked read after, or modified since, its
/// last read (what mail notifiers and `biff` compare).
#[test]
fn touch_sets_its_three_times_to_one_time() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-touch");
    let local = local_dir();
    let m = Mount::new(srv, &bucket);
    for dir in [local.path(), m.path()] {
        let f = dir.join("f");
        write(&f, b"x");
        sh(&format!("touch -d 2001-01-01 {}", q(&f)));
        sh(&format!("touch {}", q(&f)));
        let (_, t) = look(&f).unwrap();
        assert_eq!((t.atime, t.ctime), (t.mtime, t.mtime), "{}", f.display());
    }
    m.unmount();
    let m = Mount::new(srv, &bucket);
    let (_, t) = look(&m.join("f")).unwrap();
    assert_eq!((t.atime, t.ctime), (t.mtime, t.mtime), "after a remount");
}

/// A directory is 4096 bytes, as on ext4 (and in s3fs): `du` and `du --apparent-size` of a
/// tree counted every directory as 0 on the mount, so a tree's total differed from the same
/// tree's on a disk. Also after a remount, where the directories come from a listing.
#[test]
fn du_counts_a_directory_as_on_a_local_disk() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-du");
    let local = local_dir();
    let m = Mount::new(srv, &bucket);
    let tree = |dir: &Path| {
        std::fs::create_dir_all(dir.join("t/a/b")).unwrap();
        std::fs::create_dir(dir.join("t/c")).unwrap();
        // Not empty: some servers (s3s-fs) leave an empty directory's marker out of listings.
        write(&dir.join("t/c/h"), b"");
        write(&dir.join("t/f"), &[7; 5000]);
        write(&dir.join("t/a/b/g"), b"seven");
    };
    let du = |dir: &Path| {
        let out = sh(&format!("du -sb {}", q(&dir.join("t"))));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let total = text.split_whitespace().next().unwrap_or_default();
        total.parse::<u64>().unwrap()
    };
    let want = 5000 + 5 + 4 * 4096;
    tree(local.path());
    if std::fs::metadata(local.path().join("t/c")).unwrap().len() == 4096 {
        assert_eq!(du(local.path()), want, "the local disk's own");
    }
    tree(m.path());
    assert_eq!(std::fs::metadata(m.join("t/a")).unwrap().len(), 4096);
    assert_eq!(du(m.path()), want);
    m.unmount();
    let m = Mount::new(srv, &bucket);
    assert_eq!(du(m.path()), want, "after a remount");
}

/// A symlink's target is any bytes but NUL, as on a disk: one that is not UTF-8 (a Latin-1
/// name in a tree from an old disk) was refused with EINVAL, so `cp -a` and `tar -x` of such
/// a tree failed on it. The object's body holds the bytes as they are, as s3fs stores them.
#[test]
fn a_symlink_target_need_not_be_utf8() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-latin1");
    let local = local_dir();
    let m = Mount::new(srv, &bucket);
    let target = std::ffi::OsStr::from_bytes(b"caf\xe9/men\xfa");
    for dir in [local.path(), m.path()] {
        std::os::unix::fs::symlink(target, dir.join("l"))
            .unwrap_or_else(|e| panic!("symlink in {}: {e}", dir.display()));
        assert_eq!(
            std::fs::read_link(dir.join("l")).unwrap(),
            Path::new(target)
        );
        assert_eq!(std::fs::symlink_metadata(dir.join("l")).unwrap().len(), 9);
    }
    assert_eq!(
        server_bytes(&srv.storage_in(&bucket), "l").as_deref(),
        Some(target.as_bytes())
    );
    m.unmount();
    let m = Mount::new(srv, &bucket);
    assert_eq!(
        std::fs::read_link(m.join("l")).unwrap(),
        Path::new(target),
        "after a remount"
    );
}

/// The mount point of a prefix mount is the directory `prefix/`: what `chmod`, `chown` and
/// `touch` set on it is kept in its marker and shown again after a remount, as a disk's root
/// keeps it, and a marker another client wrote is read. They came back as `--dir-mode`, the
/// mounting user and the mount's start time: an admin's `chmod 700` of an `--allow-other`
/// mount point opened it again at the next mount.
#[test]
fn a_prefix_mounts_root_keeps_its_mode_owner_and_times() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("posix-root");
    let spec = format!("{bucket}:p/");
    let m = Mount::with_args(srv, &spec, &[]);
    std::fs::set_permissions(m.path(), std::fs::Permissions::from_mode(0o1750)).unwrap();
    std::os::unix::fs::chown(m.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    set_times(
        m.path(),
        Some(at(1_100_000_000, 5)),
        Some(at(1_200_000_000, 7)),
    );
    let (seen, times) = look(m.path()).unwrap();
    assert_eq!((seen.mode, seen.uid, seen.gid), (0o1750, NOBODY, NOBODY));
    m.unmount();
    let m = Mount::with_args(srv, &spec, &[]);
    let (again, times_again) = look(m.path()).unwrap();
    assert_eq!(again, seen, "after a remount");
    assert_eq!(
        (times_again.atime, times_again.mtime),
        (times.atime, times.mtime),
        "after a remount"
    );
    m.unmount();

    let mut metadata = s3mount::s3::Metadata::default();
    metadata.insert("mode", (libc::S_IFDIR | 0o700).to_string());
    metadata.insert("uid", "4321");
    let opts = PutOptions {
        metadata,
        ..PutOptions::default()
    };
    srv.storage_in(&bucket)
        .bucket(&bucket)
        .put("q/", RequestBody::Empty, &opts)
        .unwrap();
    let m = Mount::with_args(srv, &format!("{bucket}:q/"), &[]);
    let (theirs, _) = look(m.path()).unwrap();
    assert_eq!(
        (theirs.mode, theirs.uid),
        (0o700, 4321),
        "another client's marker"
    );
}

/// What a user who is not the mounting one creates is that user's, as on a disk: files,
/// directories, symlinks and FIFOs made by uid 65534 are owned by 65534:65534 (recorded with
/// the create, so a remount shows the same), the owner may chmod them and open them for
/// writing, and nobody may give them away; in a set-gid directory the group is the
/// directory's, and a directory made there is set-gid too.
#[test]
fn what_another_user_creates_is_theirs() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("posix-owners");
    let m = Mount::with_args(srv, &bucket, &["--allow-other"]);
    open_path_to(&m.join("x"));
    let local = local_dir();
    let scenarios: Vec<Scenario> = vec![
        Scenario {
            name: "theirs",
            paths: &[".", "f", "d", "l", "p", "d/g"],
            setup: &noop,
            op: &|d| {
                as_nobody(&format!(
                    "cd {} && echo hi > f && mkdir d && ln -s f l && mkfifo p && echo in > d/g && chmod 600 f && echo more >> f",
                    q(d)
                ));
            },
        },
        Scenario {
            name: "setgid",
            paths: &[".", "s", "s/f", "s/d"],
            setup: &|d| {
                std::fs::create_dir(d.join("s")).unwrap();
                std::os::unix::fs::chown(d.join("s"), None, Some(4242)).unwrap();
                std::fs::set_permissions(d.join("s"), std::fs::Permissions::from_mode(0o2777))
                    .unwrap();
            },
            op: &|d| {
                as_nobody(&format!("cd {} && touch s/f && mkdir s/d", q(d)));
            },
        },
    ];
    let mut diffs = Vec::new();
    for sc in &scenarios {
        diffs.extend(same_as_disk(local.path(), m.path(), sc));
    }
    // Giving a file away is refused on both (EPERM), changing nothing.
    for dir in [local.path().join("theirs"), m.join("theirs")] {
        let out = common::as_nobody(&format!("chown 0 {}", q(&dir.join("f"))));
        assert!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
            "chown to root by nobody in {}: {:?}",
            dir.display(),
            out
        );
    }
    assert!(
        diffs.is_empty(),
        "{} differences from a local disk:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    // Recorded with the create: the objects say so.
    let st = srv.storage();
    for key in [
        "theirs/f",
        "theirs/d/",
        "theirs/l",
        "theirs/p",
        "setgid/s/d/",
    ] {
        let h = st.head_object(&common::obj(&bucket, key)).unwrap();
        assert_eq!(h.metadata.get("uid"), Some("65534"), "{key}");
    }
    let h = st.head_object(&common::obj(&bucket, "setgid/s/f")).unwrap();
    assert_eq!(h.metadata.get("gid"), Some("4242"));
}

/// Without `--allow-other` nothing changes: what root creates carries no owner, and shows the
/// mount's.
#[test]
fn a_private_mount_records_no_owner() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-noowner");
    let m = Mount::new(srv, &bucket);
    write(&m.join("f"), b"x");
    std::fs::create_dir(m.join("d")).unwrap_or(());
    let st = srv.storage();
    let h = st.head_object(&common::obj(&bucket, "f")).unwrap();
    assert_eq!(h.metadata.get("uid"), None);
    assert_eq!(std::fs::metadata(m.join("f")).unwrap().uid(), 0);
}

/// Open, unlink (or have renamed over), go on: as on a disk the name goes at once and the
/// descriptor keeps reading and writing the same bytes with `st_nlink` 0 until it is closed.
/// `size` picks the way the mount keeps them (fetched at once, or the object kept until the
/// last close): the descriptor sees no difference.
fn unlinked_open_file(dir: &Path, size: usize, by_rename: bool) -> Vec<String> {
    let data = common::random_bytes(size, size as u64);
    let p = dir.join("victim");
    write(&p, &data);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    // Read a little first, as `tail -f` or a reader already going would.
    let mut head = vec![0u8; 10];
    f.read_exact(&mut head).unwrap();
    if by_rename {
        write(&dir.join("newer"), b"the new file");
        std::fs::rename(dir.join("newer"), &p).unwrap();
    } else {
        std::fs::remove_file(&p).unwrap();
    }
    let mut seen = Vec::new();
    let md = f.metadata().unwrap();
    seen.push(format!("nlink {} size {}", md.nlink(), md.len()));
    seen.push(format!(
        "name: {:?}",
        std::fs::read(&p).map(|b| b.len()).map_err(|e| e.kind())
    ));
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    seen.push(format!("rest intact: {}", rest == data[10..]));
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"OVERWRITE").unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"tail").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    let mut expect = data.clone();
    expect[..9].copy_from_slice(b"OVERWRITE");
    expect.extend_from_slice(b"tail");
    seen.push(format!("rewritten: {}", all == expect));
    let md = f.metadata().unwrap();
    seen.push(format!("nlink {} size {}", md.nlink(), md.len()));
    drop(f);
    seen.push(format!(
        "after close: {:?}",
        std::fs::read(&p).map(|b| b.len()).map_err(|e| e.kind())
    ));
    seen.push(format!("listed: {:?}", names(dir)));
    seen
}

/// `key` is gone from the server, at once or within a few seconds (a delete that follows the
/// last release, which the kernel sends after `close` has returned).
fn gone_soon(st: &s3mount::Storage, key: &str) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if st.exists(key).expect("HEAD through the S3 API").is_none() {
            return true;
        }
        if std::time::Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_unlinked_open_file_lives_until_its_last_close() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-unlinked");
    let st = srv.storage_in(&bucket);
    let m = Mount::new(srv, &bucket);
    let local = local_dir();
    // Small (fetched at the unlink) and large (kept until the last close: over 16 MiB).
    for (name, size, by_rename) in [
        ("small", 100_000, false),
        ("large", 20 * 1024 * 1024, false),
        ("small-renamed-over", 100_000, true),
        ("large-renamed-over", 20 * 1024 * 1024, true),
    ] {
        let (ld, md) = (local.path().join(name), m.join(name));
        std::fs::create_dir(&ld).unwrap();
        std::fs::create_dir(&md).unwrap();
        let disk = unlinked_open_file(&ld, size, by_rename);
        let mount = unlinked_open_file(&md, size, by_rename);
        assert_eq!(mount, disk, "{name}: the mount next to a disk");
        let key = format!("{name}/victim");
        if by_rename {
            assert_eq!(
                server_bytes(&st, &key).as_deref(),
                Some(&b"the new file"[..]),
                "{name}: nothing uploaded for the replaced file"
            );
        } else {
            // The last release, which deletes a kept object, runs after `close` returns.
            assert!(gone_soon(&st, &key), "{name}: deleted");
        }
    }
}

/// A large file unlinked while open: its object stays until the last close (the descriptor
/// reads it), but the name is gone through the mount at once and stays gone after the
/// metadata TTL — from lookups and from listings — and the last close deletes the object.
#[test]
fn a_large_unlinked_file_is_hidden_until_its_last_close_deletes_it() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-hidden");
    let st = srv.storage_in(&bucket);
    let data = common::random_bytes(20 * 1024 * 1024, 9);
    st.bucket(&bucket)
        .put("big.log", RequestBody::Bytes(&data), &PutOptions::default())
        .unwrap();
    let m = Mount::with_args(srv, &bucket, &["--metadata-ttl", "200ms"]);
    let mut f = std::fs::File::open(m.join("big.log")).unwrap();
    std::fs::remove_file(m.join("big.log")).unwrap();
    assert!(
        server_bytes(&st, "big.log").is_some(),
        "kept for the descriptor"
    );
    // Past the TTL: still gone by name and from the listing.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        std::fs::metadata(m.join("big.log"))
            .map_err(|e| e.kind())
            .err(),
        Some(std::io::ErrorKind::NotFound)
    );
    assert!(std::fs::read_dir(m.path()).unwrap().next().is_none());
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    assert!(all == data, "the descriptor reads the whole file");
    drop(f);
    // The last close deletes it (release is asynchronous after close).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while st.exists("big.log").unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "not deleted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory listed in more than one page (no HEAD per entry before `readdir` answers) keeps
/// its symlinks and special files through `cp -a` from a fresh mount: trusting the listing's
/// "regular file" copied most of 1000 links as files holding their target paths, and failed
/// on another with EIO (its inode changed type under `cp`'s open descriptor).
#[test]
fn cp_a_of_a_large_directory_keeps_its_symlinks() {
    const LINKS: usize = 1001;
    let srv = server();
    let bucket = srv.fresh_bucket("posix-many-links");
    let st = srv.storage_in(&bucket);
    let b = st.bucket(&bucket);
    let mut link = s3mount::s3::Metadata::default();
    link.insert("mode", (libc::S_IFLNK | 0o777).to_string());
    let mut fifo = s3mount::s3::Metadata::default();
    fifo.insert("mode", (libc::S_IFIFO | 0o644).to_string());
    std::thread::scope(|s| {
        for t in 0..8 {
            let (b, link) = (&b, &link);
            s.spawn(move || {
                for i in (t..LINKS).step_by(8) {
                    let opts = PutOptions {
                        metadata: link.clone(),
                        ..PutOptions::default()
                    };
                    b.put(&format!("d/l{i:04}"), RequestBody::Bytes(b"t"), &opts)
                        .unwrap();
                }
            });
        }
    });
    let opts = PutOptions {
        metadata: fifo,
        ..PutOptions::default()
    };
    b.put("d/pipe", RequestBody::Empty, &opts).unwrap();
    b.put("d/t", RequestBody::Bytes(b"target"), &PutOptions::default())
        .unwrap();
    let m = Mount::new(srv, &bucket);
    let local = local_dir();
    let copy = local.path().join("copy");
    sh(&format!("cp -a {} {}", q(&m.join("d")), q(&copy)));
    let count = |kind: &str| {
        let out = sh(&format!("find {} -type {kind}", q(&copy)));
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!((count("l"), count("p"), count("f")), (LINKS, 1, 1));
    assert_eq!(
        std::fs::read_link(copy.join("l0999")).unwrap(),
        Path::new("t")
    );
}

/// A tree with a FIFO, a socket, devices, a symlink, modes and times survives `rsync -a` into
/// the mount, a remount, and `rsync -a` back out (and `tar`, which skips sockets), exactly.
#[test]
fn special_files_survive_rsync_tar_and_a_remount() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("posix-rsync");
    let work = local_dir();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    write(&tree.join("data.bin"), &common::random_bytes(300_000, 3));
    write(&tree.join("sub/note.txt"), b"note");
    std::fs::set_permissions(
        tree.join("sub/note.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::set_permissions(tree.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    mknod(&tree.join("fifo"), libc::S_IFIFO | 0o600, 0).unwrap();
    mknod(
        &tree.join("null"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    )
    .unwrap();
    mknod(
        &tree.join("loop"),
        libc::S_IFBLK | 0o660,
        libc::makedev(7, 9),
    )
    .unwrap();
    bind_socket(&tree.join("sock"));
    std::os::unix::fs::symlink("sub/note.txt", tree.join("link")).unwrap();
    // Times in the past (rsync leaves a time alone that is within the second it finds).
    for (i, name) in [
        "data.bin",
        "fifo",
        "null",
        "loop",
        "sock",
        "link",
        "sub/note.txt",
    ]
    .iter()
    .enumerate()
    {
        set_times(
            &tree.join(name),
            None,
            Some(at(1_500_000_000 + 100 * i as u64, 0)),
        );
    }

    let describe = |root: &Path, skip_sockets: bool| -> Vec<String> {
        let out = sh(&format!(
            "cd {} && find . -mindepth 1 -printf '%y %m %s %T@ %p\\n' | sort",
            q(root)
        ));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !(skip_sockets && l.starts_with("s ")))
            // Directory sizes and times are the file system's own.
            .map(|l| {
                if l.starts_with("d ") {
                    let f: Vec<&str> = l.split(' ').collect();
                    format!("d {} {}", f[1], f[4])
                } else {
                    l.to_string()
                }
            })
            .collect();
        for l in &mut lines {
            if let Some(p) = l.rsplit(' ').next() {
                let full = root.join(p);
                if let Ok(md) = std::fs::symlink_metadata(&full) {
                    if md.rdev() != 0 {
                        l.push_str(&format!(" rdev {}", md.rdev()));
                    }
                }
            }
        }
        lines
    };
    let want = describe(&tree, false);
    assert_eq!(want.len(), 8, "{want:?}");
    let cache = work.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    {
        let m = Mount::with_cache_dir(srv, &bucket, &cache, &[]);
        sh(&format!(
            "rsync -a {}/ {}/",
            q(&tree),
            q(&m.join("rsynced"))
        ));
        assert_eq!(
            describe(&m.join("rsynced"), false),
            want,
            "in the mount; log:\n{}",
            m.log()
        );
        sh(&format!(
            "tar -C {} -cf - . 2>/dev/null | tar -C {} -xpf - ; mkdir -p {} && tar -C {} -cf - . 2>/dev/null | tar -C {} -xpf -",
            q(&tree),
            q(&{
                std::fs::create_dir(m.join("tarred")).unwrap();
                m.join("tarred")
            }),
            q(&work.path().join("tar-back")),
            q(&m.join("tarred")),
            q(&work.path().join("tar-back"))
        ));
        assert_eq!(
            describe(&work.path().join("tar-back"), false),
            describe(&tree, true)
        );
        m.unmount();
    }
    // What the objects say, as s3fs reads it.
    let st = srv.storage();
    let h = st
        .head_object(&common::obj(&bucket, "rsynced/loop"))
        .unwrap();
    let local_mode = std::fs::symlink_metadata(tree.join("loop")).unwrap().mode();
    assert_eq!(
        h.metadata.get("mode"),
        Some(local_mode.to_string().as_str())
    );
    assert_eq!(
        h.metadata.get("rdev"),
        Some(libc::makedev(7, 9).to_string().as_str())
    );
    assert_eq!(h.size, 0);
    let m = Mount::with_cache_dir(srv, &bucket, &cache, &[]);
    assert_eq!(describe(&m.join("rsynced"), false), want, "after a remount");
    let back = work.path().join("back");
    sh(&format!(
        "rsync -a {}/ {}/",
        q(&m.join("rsynced")),
        q(&back)
    ));
    assert_eq!(describe(&back, false), want, "rsynced back out");
    assert_eq!(
        std::fs::read(back.join("data.bin")).unwrap(),
        std::fs::read(tree.join("data.bin")).unwrap()
    );
    // A FIFO on the mount is a FIFO: the kernel connects a writer and a reader.
    let fifo = m.join("rsynced/fifo");
    let writer = std::thread::spawn(move || {
        std::fs::write(fifo, b"through the pipe").unwrap();
    });
    assert_eq!(
        std::fs::read(m.join("rsynced/fifo")).unwrap(),
        b"through the pipe"
    );
    writer.join().unwrap();
}

/// s3fs (1.90 here) mounted on the same bucket: a FIFO, devices, a socket, a symlink and modes
/// written by s3mount read right through s3fs, and those s3fs writes read right through
/// s3mount. Skipped (a SKIP line) when `s3fs` is not installed.
#[test]
fn s3fs_reads_what_s3mount_writes_and_the_reverse() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    if Command::new("s3fs").arg("--version").output().is_err() {
        let _ = std::io::stderr().write_all(
            b"SKIP: s3fs_reads_what_s3mount_writes_and_the_reverse: s3fs is not installed\n",
        );
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("posix-s3fs");
    let m = Mount::with_args(srv, &bucket, &["--metadata-ttl", "0"]);
    std::fs::create_dir(m.join("ours")).unwrap();
    let ours = m.join("ours");
    mknod(&ours.join("p"), libc::S_IFIFO | 0o640, 0).unwrap();
    mknod(&ours.join("c"), libc::S_IFCHR | 0o600, libc::makedev(1, 3)).unwrap();
    mknod(&ours.join("b"), libc::S_IFBLK | 0o640, libc::makedev(8, 1)).unwrap();
    bind_socket(&ours.join("s"));
    std::os::unix::fs::symlink("p", ours.join("l")).unwrap();
    write(&ours.join("f"), b"plain");
    std::fs::set_permissions(ours.join("f"), std::fs::Permissions::from_mode(0o604)).unwrap();

    let work = local_dir();
    let passwd = work.path().join("passwd");
    write(
        &passwd,
        format!("{}:{}", srv.access_key, srv.secret_key).as_bytes(),
    );
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
    let theirs_mnt = work.path().join("s3fs");
    std::fs::create_dir(&theirs_mnt).unwrap();
    let mut s3fs = Command::new("s3fs")
        .arg(&bucket)
        .arg(&theirs_mnt)
        .arg("-f")
        .arg("-o")
        .arg(format!(
            "url={},use_path_request_style,passwd_file={},endpoint={},stat_cache_expire=1",
            srv.endpoint,
            passwd.display(),
            srv.region
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let unmount = |p: &Path| {
        let _ = Command::new("fusermount").arg("-u").arg(p).status();
        let _ = Command::new("umount").arg("-l").arg(p).status();
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !common::is_fuse_mount(&theirs_mnt) {
        if std::time::Instant::now() > deadline {
            let _ = s3fs.kill();
            panic!("s3fs did not mount");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = std::panic::catch_unwind(|| {
        let seen = |root: &Path, name: &str| {
            let (s, _) = look(&root.join(name)).unwrap_or_else(|| panic!("{name} under {root:?}"));
            (s.kind, s.mode, s.rdev)
        };
        for name in ["p", "c", "b", "s", "l", "f"] {
            let (theirs, ours) = (seen(&theirs_mnt.join("ours"), name), seen(&ours, name));
            assert_eq!(
                (theirs.0, theirs.1),
                (ours.0, ours.1),
                "{name}: s3fs reads the type and mode s3mount wrote"
            );
            // s3fs 1.90 keeps no device numbers (it neither writes nor reads
            // x-amz-meta-rdev): a device it shows has rdev 0.
            assert!(
                theirs.2 == ours.2 || theirs.2 == 0,
                "{name}: rdev {} through s3fs, {} through s3mount",
                theirs.2,
                ours.2
            );
        }
        assert_eq!(
            std::fs::read_link(theirs_mnt.join("ours/l")).unwrap(),
            Path::new("p")
        );
        // s3fs writes, s3mount reads.
        let theirs = theirs_mnt.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        mknod(&theirs.join("p"), libc::S_IFIFO | 0o600, 0).unwrap();
        mknod(
            &theirs.join("c"),
            libc::S_IFCHR | 0o640,
            libc::makedev(4, 1),
        )
        .unwrap();
        bind_socket(&theirs.join("s"));
        std::os::unix::fs::symlink("c", theirs.join("l")).unwrap();
        for name in ["p", "c", "s", "l"] {
            assert_eq!(
                seen(&m.join("theirs"), name),
                seen(&theirs, name),
                "{name}: s3mount reads what s3fs wrote"
            );
        }
    });
    unmount(&theirs_mnt);
    let _ = s3fs.kill();
    let _ = s3fs.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Directories other tools make show as directories: `name_$folder$` (Hadoop, S3Fox) and a
/// zero-byte `name` with `Content-Type: application/x-directory` (old s3fs); `rmdir` removes
/// them and a rename moves them.
#[test]
fn directories_other_tools_make_are_directories() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let srv = server();
    let bucket = srv.fresh_bucket("posix-foreign");
    let st = srv.storage_in(&bucket);
    let b = st.bucket(&bucket);
    let put = |key: &str, body: &[u8], ctype: Option<&str>| {
        let opts = PutOptions {
            content_headers: ctype
                .map(|c| vec![("content-type".to_string(), c.to_string())])
                .unwrap_or_default(),
            ..PutOptions::default()
        };
        b.put(key, RequestBody::Bytes(body), &opts).unwrap();
    };
    put("hadoop_$folder$", b"", None);
    put("hadoop/part-0000", b"rows", None);
    put("emptyhadoop_$folder$", b"", None);
    put("olds3fs", b"", Some("application/x-directory"));
    put("olds3fs/inner.txt", b"inner", None);
    put("emptyold", b"", Some("application/x-directory"));
    let m = Mount::new(srv, &bucket);
    let listed = names(m.path());
    assert_eq!(listed, ["emptyhadoop", "emptyold", "hadoop", "olds3fs"]);
    for d in listed.iter() {
        assert!(
            std::fs::symlink_metadata(m.join(d)).unwrap().is_dir(),
            "{d} is a directory"
        );
    }
    assert_eq!(std::fs::read(m.join("hadoop/part-0000")).unwrap(), b"rows");
    assert_eq!(
        std::fs::read(m.join("olds3fs/inner.txt")).unwrap(),
        b"inner"
    );
    assert!(std::fs::read_dir(m.join("emptyhadoop"))
        .unwrap()
        .next()
        .is_none());
    // Usable as directories: a file in one, rmdir of the empty ones, a rename.
    write(&m.join("emptyhadoop/new"), b"n");
    std::fs::remove_file(m.join("emptyhadoop/new")).unwrap();
    std::fs::remove_dir(m.join("emptyhadoop")).unwrap();
    std::fs::remove_dir(m.join("emptyold")).unwrap();
    std::fs::rename(m.join("hadoop"), m.join("moved")).unwrap();
    assert_eq!(std::fs::read(m.join("moved/part-0000")).unwrap(), b"rows");
    let mut keys: Vec<String> = b
        .list_all("", None)
        .unwrap()
        .0
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["moved/part-0000", "olds3fs", "olds3fs/inner.txt"]);
    drop(m);
    let m = Mount::new(srv, &bucket);
    assert_eq!(names(m.path()), ["moved", "olds3fs"]);
}

/// `mv a.txt b.html` re-derives the Content-Type from the new name when the old one was the
/// guess for the old name; one set explicitly is kept. The copy carries the times (ctime, and
/// the mtime the file shows).
#[test]
fn a_rename_re_derives_a_guessed_content_type_and_keeps_an_explicit_one() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-ctype");
    let st = srv.storage_in(&bucket);
    let b = st.bucket(&bucket);
    let opts = PutOptions {
        content_headers: vec![("content-type".into(), "application/x-custom".into())],
        ..PutOptions::default()
    };
    b.put("explicit.txt", RequestBody::Bytes(b"e"), &opts)
        .unwrap();
    let m = Mount::new(srv, &bucket);
    write(&m.join("a.txt"), b"<p>hi</p>");
    let ctype = |key: &str| {
        st.head_object(&common::obj(&bucket, key))
            .unwrap()
            .content_headers
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v)
    };
    assert_eq!(ctype("a.txt").as_deref(), Some("text/plain"));
    let mtime = std::fs::metadata(m.join("a.txt")).unwrap().mtime();
    std::fs::rename(m.join("a.txt"), m.join("b.html")).unwrap();
    assert_eq!(ctype("b.html").as_deref(), Some("text/html"));
    std::fs::rename(m.join("explicit.txt"), m.join("explicit.html")).unwrap();
    assert_eq!(
        ctype("explicit.html").as_deref(),
        Some("application/x-custom")
    );
    let h = st.head_object(&common::obj(&bucket, "b.html")).unwrap();
    assert!(h.metadata.get("ctime").is_some(), "{:?}", h.metadata);
    drop(m);
    let m = Mount::new(srv, &bucket);
    assert_eq!(
        std::fs::metadata(m.join("b.html")).unwrap().mtime(),
        mtime,
        "a rename keeps the mtime, also after a remount"
    );
}

/// Names over 255 bytes are ENAMETOOLONG on every call, as on a disk, unless another client
/// made such an object, which is shown. A path whose key would
/// pass S3's 1024 bytes (the mount's prefix counted) is for the server to judge: moto and
/// Garage keep such keys, so a deep path works as on a disk; s3s-fs refuses them as S3 does,
/// and the mount, taught by that refusal, answers ENAMETOOLONG.
#[test]
fn long_names_are_enametoolong_and_long_paths_are_the_servers_to_judge() {
    let srv = server();
    let bucket = srv.fresh_bucket("posix-long");
    let prefix = "pre/";
    let m = Mount::with_args(srv, &format!("{bucket}:{prefix}"), &[]);
    let local = local_dir();
    let long = "n".repeat(256);
    let errno = |r: std::io::Result<()>| r.err().and_then(|e| e.raw_os_error());
    for root in [local.path(), m.path()] {
        write(&root.join("short"), b"s");
        let p = root.join(&long);
        let calls: Vec<(&str, Option<i32>)> = vec![
            ("create", errno(std::fs::write(&p, b"x"))),
            ("stat", errno(std::fs::metadata(&p).map(|_| ()))),
            ("unlink", errno(std::fs::remove_file(&p))),
            ("mkdir", errno(std::fs::create_dir(&p))),
            ("rename", errno(std::fs::rename(root.join("short"), &p))),
            (
                "chmod",
                errno(std::fs::set_permissions(
                    &p,
                    std::fs::Permissions::from_mode(0o600),
                )),
            ),
            ("symlink", errno(std::os::unix::fs::symlink("t", &p))),
            (
                "mkfifo",
                mknod(&p, libc::S_IFIFO | 0o600, 0)
                    .err()
                    .map_or(Ok(()), Err)
                    .err(),
            ),
        ];
        for (call, e) in calls {
            assert_eq!(
                e,
                Some(libc::ENAMETOOLONG),
                "{call} under {}",
                root.display()
            );
        }
    }
    // Another client's object with a longer name is shown, read, moved and removed (hidden,
    // a `cp -r` would silently leave it behind); the mount makes no such name itself.
    if !skip_on(ServerLimit::KeysAreFileNames) {
        let st = srv.storage();
        let theirs = "t".repeat(300);
        st.bucket(&bucket)
            .put(
                &format!("{prefix}{theirs}"),
                RequestBody::Bytes(b"theirs"),
                &PutOptions::default(),
            )
            .unwrap();
        let listed = sh(&format!("ls {}", m.path().display()));
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains(&theirs),
            "ls: {}",
            String::from_utf8_lossy(&listed.stdout)
        );
        assert_eq!(std::fs::read(m.join(&theirs)).unwrap(), b"theirs");
        std::fs::rename(m.join(&theirs), m.join("theirs")).unwrap();
        assert_eq!(
            errno(std::fs::rename(m.join("theirs"), m.join(&theirs))),
            Some(libc::ENAMETOOLONG)
        );
        std::fs::remove_file(m.join("theirs")).unwrap();
    }
    // Keys: the prefix (4 bytes) + 4 directories of 200 bytes with their slashes (804) leaves
    // 216 bytes for a file name within S3's 1024.
    let mut dir = m.path().to_path_buf();
    for i in 0..4 {
        dir = dir.join(format!("{i}").repeat(200));
        std::fs::create_dir(&dir).unwrap();
    }
    let fits = dir.join("f".repeat(1024 - prefix.len() - 804));
    write(&fits, b"at the limit");
    assert_eq!(std::fs::read(&fits).unwrap(), b"at the limit");
    let st = srv.storage();
    let key_of = |p: &Path| format!("{prefix}{}", p.strip_prefix(m.path()).unwrap().display());
    assert_eq!(key_of(&fits).len(), 1024);
    assert!(st
        .head_object(&common::obj(&bucket, &key_of(&fits)))
        .is_ok());
    let over = dir.join("f".repeat(1024 - prefix.len() - 804 + 1));
    if srv.kind() == common::ServerKind::S3sFs {
        // Refused as S3 refuses it: the lookup's HEAD says so, and from then on every call.
        assert_eq!(errno(std::fs::write(&over, b"x")), Some(libc::ENAMETOOLONG));
        assert_eq!(
            errno(std::fs::metadata(&over).map(|_| ())),
            Some(libc::ENAMETOOLONG)
        );
        assert_eq!(
            errno(std::fs::create_dir(
                dir.join("d".repeat(1024 - prefix.len() - 804))
            )),
            Some(libc::ENAMETOOLONG),
            "a directory's marker is a byte longer"
        );
        assert_eq!(
            errno(std::fs::rename(&fits, &over)),
            Some(libc::ENAMETOOLONG)
        );
        assert!(
            m.log().contains("refuses keys over 1024 bytes"),
            "{}",
            m.log()
        );
        return;
    }
    // Kept: a path as deep as the kernel allows (PATH_MAX) works as on a disk.
    write(&over, b"over");
    let mut deep = dir.clone();
    for i in 0..6 {
        deep = deep.join(format!("{i}").repeat(250));
        std::fs::create_dir(&deep).unwrap();
    }
    let deepest = deep.join("g".repeat(200));
    write(&deepest, b"deep");
    std::fs::rename(&fits, deep.join("moved")).unwrap();
    let keys = [key_of(&over), key_of(&deepest), key_of(&deep.join("moved"))];
    assert!(keys[1].len() > 2500, "{}", keys[1].len());
    for key in &keys {
        assert!(
            st.head_object(&common::obj(&bucket, key)).is_ok(),
            "{} bytes",
            key.len()
        );
    }
    drop(m);
    let m = Mount::with_args(srv, &format!("{bucket}:{prefix}"), &[]);
    let again = m.join(&keys[1][prefix.len()..]);
    assert_eq!(std::fs::read(&again).unwrap(), b"deep", "after a remount");
}
