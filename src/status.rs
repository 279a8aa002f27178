//! `s3mount status [--json] [--cache-dir DIR] [MOUNTPOINT]`: what running mounts are doing.
//!
//! Each mount rewrites a [`Snapshot`] of its figures once a second in
//! `<cache-dir>/<bucket>/status.PID.json` (0600; [`crate::publish`]). This command finds the
//! s3mount mounts of this user in `/proc/self/mountinfo`, reads the snapshots under the cache
//! dir (`--cache-dir`, default the mounts' default), keeps those whose process is alive (not
//! a zombie) and whose mount point is still mounted, and prints them. A mount whose snapshot
//! is not there is listed as dead when its mount point says so (its s3mount was killed), else
//! with a hint (started with another `--cache-dir`, or with `--no-status`). The mounts
//! themselves are asked nothing but that, from a thread given up after a second: `status` must
//! answer while a mount is stuck.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use s3mount::fs::mountinfo::{fuse_mounts, FuseMount};

use crate::cli::StatusArgs;
use crate::setup::default_cache_dir;

/// The file the mount of process `pid` publishes its figures in, in its cache dir: one per
/// process, since mounts of one bucket may share that dir.
pub fn status_file(pid: u32) -> String {
    format!("status.{pid}.json")
}

/// The pid of a [`status_file`] name.
pub fn status_file_pid(name: &str) -> Option<u32> {
    name.strip_prefix("status.")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}
/// The version of [`Snapshot`]'s layout, raised when a field changes meaning.
pub const SNAPSHOT_VERSION: u32 = 1;
/// The file system type of our mounts.
const FS_TYPE: &str = "fuse.s3mount";
/// A snapshot older than this is shown with its age: the mount is busy or stuck (it is
/// rewritten every second).
const STALE_AFTER: Duration = Duration::from_secs(5);

/// A mount's figures at one moment: what `status.PID.json` holds and `--json` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// The mount's process.
    pub pid: u32,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The bucket.
    pub bucket: String,
    /// The key prefix mounted ("" for the whole bucket).
    pub prefix: String,
    /// The endpoint URL.
    pub endpoint: String,
    /// When the mount started and when this snapshot was taken, in seconds since 1970.
    pub started_unix: u64,
    /// When this snapshot was taken.
    pub updated_unix: u64,
    /// Seconds since the mount started.
    pub uptime_seconds: u64,
    /// Uploads in flight: whole files at close, and files streamed while written.
    pub uploads: Vec<UploadFigure>,
    /// Copies kept under `unsaved/` after failed uploads (see `s3mount --recover`).
    pub unsaved: UnsavedFigure,
    /// The data cache (`None` when it is off).
    pub cache: Option<CacheFigure>,
    /// Per kind of S3 request (only those sent at least once).
    pub requests: Vec<RequestFigure>,
}

/// One upload in flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UploadFigure {
    /// The object's key.
    pub key: String,
    /// Bytes the server has acknowledged.
    pub sent_bytes: u64,
    /// Bytes to send: the file's size, or what has been written so far while it is streamed.
    pub total_bytes: u64,
}

/// What waits under `unsaved/`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsavedFigure {
    /// Files (kept copies and leftovers of a stopped mount).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The data cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheFigure {
    /// Bytes cached.
    pub used_bytes: u64,
    /// The limit (`--cache-size`).
    pub limit_bytes: u64,
    /// Block reads answered from the cache.
    pub hits: u64,
    /// Block reads fetched from the server.
    pub misses: u64,
    /// hits / (hits + misses); `None` before the first read.
    pub hit_ratio: Option<f64>,
}

/// One kind of S3 request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestFigure {
    /// The S3 operation (`GetObject`, `PutObject`, ...).
    pub operation: String,
    /// Requests sent (each retry counts).
    pub count: u64,
    /// Those that failed (an error reply, or no reply).
    pub errors: u64,
    /// Median latency, seconds.
    pub p50_seconds: f64,
    /// 99th percentile latency, seconds.
    pub p99_seconds: f64,
}

/// A snapshot found for a running mount.
struct Found {
    snapshot: Snapshot,
    age: Duration,
}

/// The command.
pub fn run(args: &StatusArgs) -> Result<(), String> {
    let root = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mounts: Vec<FuseMount> = fuse_mounts()
        .into_iter()
        .filter(|m| m.fstype == FS_TYPE && m.user_id.is_none_or(|u| u == uid))
        .collect();
    let mut found = read_snapshots(&root, &mounts);
    let mut missing: Vec<&FuseMount> = mounts
        .iter()
        .filter(|m| !found.iter().any(|f| f.snapshot.mountpoint == m.mountpoint))
        .collect();
    if let Some(want) = &args.mountpoint {
        let want = std::fs::canonicalize(want).map_err(|e| format!("{}: {e}", want.display()))?;
        found.retain(|f| f.snapshot.mountpoint == want);
        missing.retain(|m| m.mountpoint == want);
        if found.is_empty() && missing.is_empty() {
            return Err(format!(
                "{}: no s3mount of this user is mounted there",
                want.display()
            ));
        }
    }
    if args.json {
        let all: Vec<&Snapshot> = found.iter().map(|f| &f.snapshot).collect();
        let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        if found.is_empty() && missing.is_empty() {
            println!("no s3mount of this user is running");
        }
        for f in &found {
            print!("{}", render(&f.snapshot, f.age));
        }
    }
    for m in &missing {
        eprintln!("{}", missing_line(m, &root));
    }
    if args.mountpoint.is_some() && found.is_empty() {
        return Err("no figures for that mount".into());
    }
    Ok(())
}

/// How long `status` waits for a mount point to answer whether it is dead: a live mount
/// answers a `stat` of its root from memory, but one whose workers are all busy (waiting for a
/// slow server: when `status` is most wanted) may not answer soon, and `status` must not hang.
const DEAD_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// True if the FUSE mount at `mountpoint` has no process serving it any more: it answers
/// "Transport endpoint is not connected". Asked from a thread of its own and given up after
/// [`DEAD_CHECK_TIMEOUT`] (then alive, if slow).
fn is_dead(mountpoint: &Path) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        let dead =
            std::fs::metadata(&path).is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN));
        let _ = tx.send(dead);
    });
    rx.recv_timeout(DEAD_CHECK_TIMEOUT).unwrap_or(false)
}

/// True if process `pid` is gone or a zombie (killed, not yet reaped): its figures are not
/// a running mount's. Read from `/proc`, never from the mount.
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)` (comm may hold one).
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// What to say of a mount without figures: a dead one (its process was killed, the mount point
/// answers "Transport endpoint is not connected") is named as such, with the command that
/// clears it; of a live one the figures are elsewhere, or not published.
fn missing_line(m: &FuseMount, root: &Path) -> String {
    if is_dead(&m.mountpoint) {
        format!(
            "{} ({}): dead: its s3mount is no longer running (Transport endpoint is not connected); clear it with `fusermount3 -u {}`",
            m.mountpoint.display(),
            m.source,
            m.mountpoint.display()
        )
    } else {
        format!(
            "{} ({}): no status.PID.json under {} (mounted with another --cache-dir? pass it; or with --no-status)",
            m.mountpoint.display(),
            m.source,
            root.display()
        )
    }
}

/// The snapshots under `root` (`root/*/status.PID.json`) of live processes whose mount point
/// is one of `mounts`.
fn read_snapshots(root: &Path, mounts: &[FuseMount]) -> Vec<Found> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    let mut found: Vec<Found> = dirs
        .flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| status_file_pid(&f.file_name().to_string_lossy()).is_some())
        .filter_map(|f| std::fs::read(f.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<Snapshot>(&bytes).ok())
        .filter(|s| s.version == SNAPSHOT_VERSION)
        .filter(|s| !is_gone(s.pid))
        .filter(|s| mounts.iter().any(|m| m.mountpoint == s.mountpoint))
        .map(|snapshot| {
            let taken = UNIX_EPOCH + Duration::from_secs(snapshot.updated_unix);
            let age = now.duration_since(taken).unwrap_or_default();
            Found { snapshot, age }
        })
        .collect();
    found.sort_by(|a, b| a.snapshot.mountpoint.cmp(&b.snapshot.mountpoint));
    found
}

/// The text form of one mount's figures.
pub fn render(s: &Snapshot, age: Duration) -> String {
    let mut out = format!(
        "{}  s3://{}/{}  at {}  up {}  (pid {})\n",
        s.mountpoint.display(),
        s.bucket,
        s.prefix,
        s.endpoint,
        humantime::format_duration(Duration::from_secs(s.uptime_seconds)),
        s.pid
    );
    if age > STALE_AFTER {
        out.push_str(&format!(
            "  (figures {} old: the mount is busy or stuck)\n",
            humantime::format_duration(Duration::from_secs(age.as_secs()))
        ));
    }
    out.push_str(&format!("  uploads in flight: {}\n", s.uploads.len()));
    for u in &s.uploads {
        let pct = if u.total_bytes == 0 {
            0.0
        } else {
            u.sent_bytes as f64 * 100.0 / u.total_bytes as f64
        };
        out.push_str(&format!(
            "    {}  {} of {} ({pct:.0}%)\n",
            u.key,
            bytes(u.sent_bytes),
            bytes(u.total_bytes)
        ));
    }
    out.push_str(&format!(
        "  unsaved/: {} file(s), {}{}\n",
        s.unsaved.files,
        bytes(s.unsaved.bytes),
        if s.unsaved.files > 0 {
            " (upload them with s3mount --recover)"
        } else {
            ""
        }
    ));
    match &s.cache {
        None => out.push_str("  data cache: off\n"),
        Some(c) => out.push_str(&format!(
            "  data cache: {} of {}, hit ratio {} ({} hits, {} misses)\n",
            bytes(c.used_bytes),
            bytes(c.limit_bytes),
            c.hit_ratio
                .map(|r| format!("{:.1}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
            c.hits,
            c.misses
        )),
    }
    if s.requests.is_empty() {
        out.push_str("  requests: none yet\n");
    } else {
        out.push_str(&format!(
            "  {:<28} {:>9} {:>7} {:>9} {:>9}\n",
            "requests", "count", "errors", "p50", "p99"
        ));
        for r in &s.requests {
            out.push_str(&format!(
                "    {:<26} {:>9} {:>7} {:>9} {:>9}\n",
                r.operation,
                r.count,
                r.errors,
                millis(r.p50_seconds),
                millis(r.p99_seconds)
            ));
        }
    }
    out
}

fn millis(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1000.0)
}

/// Bytes in binary units, as the options take them.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_gone_or_a_zombie_is_gone() {
        assert!(!is_gone(std::process::id()));
        // Above the kernel's pid_max (at most 2^22): no process has it.
        assert!(is_gone(1 << 30));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Exited and not yet reaped: a zombie, whose figures a killed mount would have left.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !is_gone(child.id()) {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait().unwrap();
    }

    #[test]
    fn text_shows_every_figure() {
        let s = Snapshot {
            version: SNAPSHOT_VERSION,
            pid: 42,
            mountpoint: "/mnt/b".into(),
            bucket: "b".into(),
            prefix: "p/".into(),
            endpoint: "http://127.0.0.1:9000".into(),
            uptime_seconds: 3723,
            uploads: vec![UploadFigure {
                key: "big.iso".into(),
                sent_bytes: 512 << 20,
                total_bytes: 1 << 30,
            }],
            unsaved: UnsavedFigure {
                files: 2,
                bytes: 2048,
            },
            cache: Some(CacheFigure {
                used_bytes: 3 << 20,
                limit_bytes: 1 << 30,
                hits: 9,
                misses: 1,
                hit_ratio: Some(0.9),
            }),
            requests: vec![RequestFigure {
                operation: "GetObject".into(),
                count: 10,
                errors: 1,
                p50_seconds: 0.012,
                p99_seconds: 0.25,
            }],
            ..Snapshot::default()
        };
        let text = render(&s, Duration::ZERO);
        for want in [
            "/mnt/b  s3://b/p/  at http://127.0.0.1:9000  up 1h 2m 3s  (pid 42)",
            "uploads in flight: 1",
            "big.iso  512.0 MiB of 1.0 GiB (50%)",
            "unsaved/: 2 file(s), 2.0 KiB (upload them with s3mount --recover)",
            "data cache: 3.0 MiB of 1.0 GiB, hit ratio 90.0% (9 hits, 1 misses)",
            "GetObject",
            "12.0 ms",
            "250.0 ms",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(!text.contains("old:"));
        assert!(render(&s, Duration::from_secs(30)).contains("30s old"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
    }
}
