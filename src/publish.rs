//! A mount's figures, published: `<cache-dir>/<bucket>/status.PID.json` rewritten once a second
//! (what `s3mount status` reads), and with `--metrics-listen` the same figures in the
//! Prometheus text format at `http://ADDR/metrics`.
//!
//! Cheap by construction: the counters are atomics bumped where the work happens (the S3
//! client's execute path, the data cache's reads, the uploads); one thread reads them once a
//! second into a [`Snapshot`] of a few hundred bytes, written to a temporary file and renamed
//! over the last one, so a reader never sees half a file. The HTTP server reads them only when
//! scraped. Nothing here takes a lock the file system's operations wait for.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use s3mount::fs::{unsaved, S3Fs};
use s3mount::s3::{private, OperationStats, S3Metrics};

use crate::status::{
    status_file, status_file_pid, CacheFigure, RequestFigure, Snapshot, UnsavedFigure,
    UploadFigure, SNAPSHOT_VERSION,
};

/// The Prometheus histogram keeps every fourth bound of the latency histogram (one bucket per
/// doubling, 100 µs to ~100 s: 21 buckets); `s3mount status`'s quantiles use them all.
const PROMETHEUS_BUCKET_EVERY: usize = 4;

/// How often `status.PID.json` is rewritten.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// What a mount is: the fixed part of its figures.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// The bucket.
    pub bucket: String,
    /// The key prefix ("" for the whole bucket).
    pub prefix: String,
    /// The endpoint URL.
    pub endpoint: String,
}

/// Where the figures come from.
#[derive(Clone)]
pub struct Sources {
    identity: Identity,
    fs: Arc<S3Fs>,
    started: SystemTime,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("identity", &self.identity)
            .finish()
    }
}

impl Sources {
    /// The figures of `fs`, mounted as `identity`, from now on.
    pub fn new(identity: Identity, fs: Arc<S3Fs>) -> Sources {
        Sources {
            identity,
            fs,
            started: SystemTime::now(),
        }
    }

    /// The figures now.
    pub fn snapshot(&self) -> Snapshot {
        let now = SystemTime::now();
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let id = &self.identity;
        Snapshot {
            version: SNAPSHOT_VERSION,
            pid: std::process::id(),
            mountpoint: id.mountpoint.clone(),
            bucket: id.bucket.clone(),
            prefix: id.prefix.clone(),
            endpoint: id.endpoint.clone(),
            started_unix: unix(self.started),
            updated_unix: unix(now),
            uptime_seconds: now
                .duration_since(self.started)
                .unwrap_or_default()
                .as_secs(),
            uploads: self.uploads(),
            unsaved: unsaved_figure(&self.fs.options().cache_dir.join("unsaved")),
            cache: self.fs.data_cache().map(|c| {
                let s = c.stats();
                let reads = s.hits + s.misses;
                CacheFigure {
                    used_bytes: s.used_bytes,
                    limit_bytes: s.limit_bytes,
                    hits: s.hits,
                    misses: s.misses,
                    hit_ratio: (reads > 0).then(|| s.hits as f64 / reads as f64),
                }
            }),
            requests: self.requests(),
        }
    }

    /// The client's counters (`None` with `--no-status`).
    fn metrics(&self) -> Option<&Arc<S3Metrics>> {
        self.fs.bucket().metrics()
    }

    fn uploads(&self) -> Vec<UploadFigure> {
        self.metrics()
            .map(|m| m.uploads())
            .unwrap_or_default()
            .into_iter()
            .map(|u| UploadFigure {
                key: u.key,
                sent_bytes: u.sent,
                total_bytes: u.total,
            })
            .collect()
    }

    fn requests(&self) -> Vec<RequestFigure> {
        self.operations()
            .iter()
            .map(|o| RequestFigure {
                operation: o.operation.name().to_string(),
                count: o.count,
                errors: o.errors,
                p50_seconds: o.quantile(0.5),
                p99_seconds: o.quantile(0.99),
            })
            .collect()
    }

    /// Per operation, with the histograms (for Prometheus).
    fn operations(&self) -> Vec<OperationStats> {
        self.metrics().map(|m| m.operations()).unwrap_or_default()
    }
}

/// Files and bytes under `unsaved/` (a directory listing: cheap, and the truth even after a
/// restart).
fn unsaved_figure(dir: &Path) -> UnsavedFigure {
    let mut fig = UnsavedFigure::default();
    for f in unsaved::find(dir).unwrap_or_default() {
        let data = match f {
            unsaved::Found::Kept { data, .. } | unsaved::Found::Leftover(data) => data,
        };
        fig.files += 1;
        fig.bytes += std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
    }
    fig
}

/// The thread rewriting `status.PID.json`; removes it when stopped (dropped).
pub struct Publisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl Publisher {
    /// Write `sources`' figures to `dir/status.PID.json` now and then every second. Never fails
    /// the mount: a file that cannot be written (a full disk) is said once at WARN, and
    /// `s3mount status` then shows the last figures written with their age, or none. The
    /// files a killed mount left in `dir` go first.
    pub fn start(sources: Sources, dir: &Path) -> Publisher {
        remove_dead_status_files(dir);
        let path = dir.join(status_file(std::process::id()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut writer = SnapshotWriter {
            path: path.clone(),
            failing: false,
        };
        writer.write(&sources.snapshot());
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("s3mount-status".into())
            .spawn(move || loop {
                std::thread::park_timeout(PUBLISH_EVERY);
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                writer.write(&sources.snapshot());
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!(
                    "cannot start the status thread ({e}): s3mount status will show old figures"
                );
                None
            }
        };
        Publisher { stop, thread, path }
    }
}

/// Writes the snapshots, saying once when it cannot.
struct SnapshotWriter {
    path: PathBuf,
    /// The last write failed (and that was said).
    failing: bool,
}

impl SnapshotWriter {
    fn write(&mut self, snapshot: &Snapshot) {
        match write_snapshot(&self.path, snapshot) {
            Ok(()) if self.failing => {
                log::info!("{}: written again", self.path.display());
                self.failing = false;
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                log::warn!(
                    "{}: {e} (s3mount status cannot see this mount's figures until it can be written)",
                    self.path.display()
                );
                self.failing = true;
            }
            Err(_) => {}
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Remove the status files in `dir` whose process is gone (a mount killed, which could not
/// remove its own); those of running mounts sharing the dir stay.
fn remove_dead_status_files(dir: &Path) {
    let Ok(files) = std::fs::read_dir(dir) else {
        return;
    };
    for f in files.flatten() {
        let name = f.file_name();
        let Some(pid) = status_file_pid(&name.to_string_lossy()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(f.path());
        }
    }
}

/// Write `snapshot` to `path` whole: a private temporary file renamed over it (removed if
/// it could not be written whole).
fn write_snapshot(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    let written = private::open_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

// ---------------------------------------------------------------------------------------------
// Prometheus

/// `--metrics-listen ADDR`: serve `GET /metrics` (Prometheus text format) from `sources` on a
/// thread of its own. Binding happens here, so a port in use fails the start.
pub fn serve_metrics(addr: std::net::SocketAddr, sources: Sources) -> Result<(), String> {
    let server =
        tiny_http::Server::http(addr).map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(MountCollector { sources }));
    std::thread::Builder::new()
        .name("s3mount-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let mut body = String::new();
                    match prometheus_client::encoding::prometheus_text::encode(&mut body, &registry)
                    {
                        Ok(()) => tiny_http::Response::from_string(body).with_header(
                            tiny_http::Header::from_bytes(
                                &b"Content-Type"[..],
                                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
                                    .as_bytes(),
                            )
                            .expect("a constant, valid header"),
                        ),
                        Err(e) => tiny_http::Response::from_string(format!("encoding: {e}\n"))
                            .with_status_code(500),
                    }
                } else {
                    tiny_http::Response::from_string("only /metrics here\n").with_status_code(404)
                };
                if let Err(e) = request.respond(response) {
                    log::debug!("metrics: reply not sent: {e}");
                }
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    log::info!("metrics at http://{addr}/metrics");
    Ok(())
}

/// Encodes the figures on each scrape.
#[derive(Debug)]
struct MountCollector {
    sources: Sources,
}

impl Collector for MountCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.sources.snapshot();
        let info: Vec<(&str, String)> = vec![
            ("bucket", s.bucket.clone()),
            ("prefix", s.prefix.clone()),
            ("endpoint", s.endpoint.clone()),
            ("mountpoint", s.mountpoint.display().to_string()),
        ];
        let mut e = encoder.encode_descriptor(
            "s3mount_info",
            "The mount: bucket, prefix, endpoint and mount point (always 1)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(e.encode_family(&info)?)?;
        gauge(
            &mut encoder,
            "s3mount_uptime_seconds",
            "Seconds since the mount started",
            s.uptime_seconds,
        )?;
        gauge(
            &mut encoder,
            "s3mount_uploads_in_flight",
            "Uploads in flight",
            s.uploads.len() as u64,
        )?;
        gauge(
            &mut encoder,
            "s3mount_upload_sent_bytes",
            "Bytes of the uploads in flight the server has acknowledged",
            s.uploads.iter().map(|u| u.sent_bytes).sum(),
        )?;
        gauge(
            &mut encoder,
            "s3mount_upload_total_bytes",
            "Bytes the uploads in flight have to send",
            s.uploads.iter().map(|u| u.total_bytes).sum(),
        )?;
        gauge(
            &mut encoder,
            "s3mount_unsaved_files",
            "Files kept under unsaved/ after failed uploads",
            s.unsaved.files,
        )?;
        gauge(
            &mut encoder,
            "s3mount_unsaved_bytes",
            "Bytes kept under unsaved/",
            s.unsaved.bytes,
        )?;
        if let Some(c) = &s.cache {
            gauge(
                &mut encoder,
                "s3mount_cache_used_bytes",
                "Bytes in the data cache",
                c.used_bytes,
            )?;
            gauge(
                &mut encoder,
                "s3mount_cache_limit_bytes",
                "The data cache's size limit",
                c.limit_bytes,
            )?;
            counter(
                &mut encoder,
                "s3mount_cache_hits",
                "Block reads answered from the data cache",
                c.hits,
            )?;
            counter(
                &mut encoder,
                "s3mount_cache_misses",
                "Block reads the data cache could not answer",
                c.misses,
            )?;
        }
        let ops = self.sources.operations();
        let label = |o: &OperationStats| vec![("operation", o.operation.name())];
        for (name, help, value) in [
            (
                "s3mount_requests",
                "S3 requests sent, per operation (each retry counts)",
                (|o: &OperationStats| o.count) as fn(&OperationStats) -> u64,
            ),
            (
                "s3mount_request_errors",
                "S3 requests that failed, per operation (a missing object or a failed condition is not a failure)",
                |o: &OperationStats| o.errors,
            ),
        ] {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for o in &ops {
                ConstCounter::new(value(o)).encode(e.encode_family(&label(o))?)?;
            }
        }
        let mut e = encoder.encode_descriptor(
            "s3mount_request_duration_seconds",
            "Latency of S3 requests until the reply's headers, per operation",
            None,
            MetricType::Histogram,
        )?;
        for o in &ops {
            let buckets = o.grouped_buckets(PROMETHEUS_BUCKET_EVERY);
            e.encode_family(&label(o))?.encode_histogram::<NoLabelSet>(
                o.sum_seconds,
                o.count,
                &buckets,
                None,
            )?;
        }
        Ok(())
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_removes_only_the_status_files_of_processes_gone() {
        let dir = tempfile::tempdir().unwrap();
        // Above the kernel's pid_max (at most 2^22): no process has it.
        let gone = 1u32 << 30;
        let running = std::process::id();
        for name in [status_file(gone), status_file(running), "other.json".into()] {
            std::fs::write(dir.path().join(name), b"{}").unwrap();
        }
        remove_dead_status_files(dir.path());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want = vec!["other.json".to_string(), status_file(running)];
        want.sort();
        assert_eq!(names, want);
        assert_eq!(status_file_pid(&status_file(running)), Some(running));
        assert_eq!(status_file_pid("status.json"), None);
    }

    #[test]
    fn a_snapshot_that_cannot_be_written_is_said_once_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SnapshotWriter {
            path: dir.path().join("gone").join(status_file(7)),
            failing: false,
        };
        w.write(&Snapshot::default());
        assert!(w.failing);
        std::fs::create_dir(dir.path().join("gone")).unwrap();
        w.write(&Snapshot {
            pid: 7,
            ..Snapshot::default()
        });
        assert!(!w.failing);
        let back: Snapshot = serde_json::from_slice(&std::fs::read(&w.path).unwrap()).unwrap();
        assert_eq!(back.pid, 7);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("gone"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [&*status_file(7)], "no temporary file left");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&w.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
