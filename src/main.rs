//! `s3mount`: mount an S3 bucket (or `bucket:prefix/`) at a directory.
//!
//! Start-up order: parse flags → load the configuration → check the bucket is reachable with
//! these credentials (HEAD bucket + a one-key LIST, so a missing bucket, wrong keys, a policy
//! without `s3:ListBucket` or a dead endpoint are reported before anything is mounted) →
//! daemonize unless `--foreground` (the parent exits only once the mount is ready, non-zero with
//! the reason if it failed) → mount and serve until `umount` or SIGINT/SIGTERM, which unmount
//! cleanly after uploading anything still open.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use s3mount::config::{LoadRequest, Overrides};
use s3mount::fs::fuse::FuseAdapter;
use s3mount::fs::{FsOptions, S3Fs};
use s3mount::s3::{ClientConfig, ListRequest, S3Client, Storage};

/// Mount an S3 bucket as a local directory.
#[derive(Debug, Parser)]
#[command(name = "s3mount", version, about, long_about = None)]
struct Cli {
    /// BUCKET or BUCKET:PREFIX/ to mount (default: the config's default_bucket), then MOUNTPOINT.
    #[arg(value_name = "[BUCKET[:PREFIX/]] MOUNTPOINT", num_args = 1..=2, required = true)]
    args: Vec<String>,

    /// Seed-style YAML config file (the `s3:` section).
    #[arg(long, short = 'c', value_name = "FILE", help_heading = "Connection")]
    config: Option<PathBuf>,
    /// Accept a config file readable by group or others.
    #[arg(long, help_heading = "Connection")]
    allow_insecure_config: bool,
    /// Endpoint host or URL (overrides the config and AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL", help_heading = "Connection")]
    endpoint: Option<String>,
    /// Signing region.
    #[arg(long, value_name = "REGION", help_heading = "Connection")]
    region: Option<String>,
    /// Profile of ~/.aws/credentials and ~/.aws/config to use.
    #[arg(long, value_name = "NAME", help_heading = "Connection")]
    profile: Option<String>,
    /// Use path-style addressing (http://endpoint/bucket/key).
    #[arg(long, help_heading = "Connection")]
    force_path_style: bool,
    /// PEM file of CA certificates to trust instead of the system's.
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    ca_file: Option<PathBuf>,

    /// Stay in the foreground (default: return once mounted and run in the background).
    #[arg(long, short = 'f', help_heading = "Mount")]
    foreground: bool,
    /// Mount read-only.
    #[arg(long, help_heading = "Mount")]
    read_only: bool,
    /// Let other users access the mount.
    #[arg(long, help_heading = "Mount")]
    allow_other: bool,
    /// How long attributes and listings are trusted, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "1",
        help_heading = "Mount"
    )]
    metadata_ttl: f64,
    /// Staging files and unsaved uploads live here.
    #[arg(long, value_name = "DIR", help_heading = "Mount")]
    cache_dir: Option<PathBuf>,
    /// FUSE worker threads.
    #[arg(long, value_name = "N", default_value = "8", help_heading = "Mount")]
    threads: usize,

    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides.
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "warn",
        help_heading = "Logging"
    )]
    log_level: String,
}

fn main() {
    let cli = Cli::parse();
    let mut logger = env_logger::Builder::new();
    logger.parse_filters(&cli.log_level);
    if let Ok(f) = std::env::var("RUST_LOG") {
        logger.parse_filters(&f);
    }
    logger.format_timestamp_millis().init();
    if let Err(msg) = run(cli) {
        eprintln!("s3mount: {msg}");
        std::process::exit(1);
    }
}

/// `BUCKET[:PREFIX/]` → (bucket, prefix).
fn split_bucket_spec(spec: &str) -> (String, Option<String>) {
    match spec.split_once(':') {
        Some((b, p)) => (b.to_string(), Some(p.to_string())),
        None => (spec.to_string(), None),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let (bucket_spec, mountpoint) = match cli.args.as_slice() {
        [m] => (None, PathBuf::from(m)),
        [b, m] => (Some(b.as_str()), PathBuf::from(m)),
        _ => return Err("usage: s3mount [OPTIONS] [BUCKET[:PREFIX/]] MOUNTPOINT".into()),
    };
    let (bucket, prefix) = match bucket_spec {
        Some(s) => {
            let (b, p) = split_bucket_spec(s);
            (Some(b), p)
        }
        None => (None, None),
    };
    let mut overrides = Overrides {
        endpoint: cli.endpoint.clone(),
        region: cli.region.clone(),
        bucket,
        prefix,
        ..Overrides::default()
    };
    if cli.force_path_style {
        overrides.addressing_style = Some(s3mount::config::AddressingStyle::Path);
    }
    let mut req = LoadRequest::from_process_env(cli.config.as_deref());
    req.allow_insecure = cli.allow_insecure_config;
    req.overrides = overrides;
    req.profile = cli.profile.clone();
    let config = s3mount::Config::load(&req).map_err(|e| e.to_string())?;
    log::debug!("credentials from {}", config.credential_source);
    let bucket = config
        .default_bucket
        .clone()
        .ok_or("no bucket: name one on the command line or set default_bucket in the config")?;

    let meta = std::fs::metadata(&mountpoint)
        .map_err(|e| format!("mount point {}: {e}", mountpoint.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "mount point {} is not a directory",
            mountpoint.display()
        ));
    }

    let mut client_cfg = ClientConfig::from_config(&config);
    client_cfg.ca_file = cli.ca_file.clone();
    let client = S3Client::new(client_cfg).map_err(|e| e.to_string())?;
    let storage = Storage::with_client(client, Some(bucket.clone()));
    preflight(&storage, &bucket, &config.prefix)?;

    let cache_dir = cli
        .cache_dir
        .clone()
        .unwrap_or_else(default_cache_dir)
        .join(cache_subdir(&bucket, &config.prefix));
    let mut opts = FsOptions::new(&bucket, cache_dir);
    opts.prefix = config.prefix.clone();
    opts.read_only = cli.read_only;
    if !(cli.metadata_ttl.is_finite() && cli.metadata_ttl >= 0.0) {
        return Err("--metadata-ttl must be a number of seconds ≥ 0".into());
    }
    opts.metadata_ttl = Duration::from_secs_f64(cli.metadata_ttl);
    opts.negative_ttl = opts.metadata_ttl;

    let mut ready = if cli.foreground {
        None
    } else {
        Some(daemonize()?)
    };
    let result = serve(&cli, storage, opts, &mountpoint, &bucket, &mut ready);
    if let Err(msg) = &result {
        report_ready(&mut ready, Err(msg));
    }
    result
}

/// Fail early and clearly: bucket exists, credentials work, listing is allowed.
fn preflight(storage: &Storage, bucket: &str, prefix: &str) -> Result<(), String> {
    storage
        .head_bucket(bucket)
        .map_err(|e| format!("cannot use bucket {bucket:?}: {e}"))?;
    storage
        .list_objects_v2(
            bucket,
            &ListRequest {
                prefix: prefix.to_string(),
                delimiter: Some("/".into()),
                max_keys: Some(1),
                ..Default::default()
            },
        )
        .map_err(|e| format!("cannot list bucket {bucket:?}: {e}"))?;
    Ok(())
}

fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("s3mount");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/s3mount");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/s3mount"),
        None => std::env::temp_dir().join("s3mount"),
    }
}

fn cache_subdir(bucket: &str, prefix: &str) -> String {
    let p: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if p.is_empty() {
        bucket.to_string()
    } else {
        format!("{bucket}-{p}")
    }
}

fn serve(
    cli: &Cli,
    storage: Storage,
    opts: FsOptions,
    mountpoint: &Path,
    bucket: &str,
    ready: &mut Option<std::fs::File>,
) -> Result<(), String> {
    let fs = Arc::new(S3Fs::new(storage, opts).map_err(|e| e.to_string())?);
    let mut mount_options = vec![
        fuser::MountOption::FSName(format!("s3mount:{bucket}")),
        fuser::MountOption::Subtype("s3mount".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    if cli.read_only {
        mount_options.push(fuser::MountOption::RO);
    }
    let mut config = fuser::Config::default();
    config.mount_options = mount_options;
    config.n_threads = Some(cli.threads.clamp(1, 64));
    config.clone_fd = false;
    if cli.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    let mut session = fuser::Session::new(FuseAdapter::new(fs.clone()), mountpoint, &config)
        .map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::ENOTCONN)
                || e.to_string().contains("Transport endpoint")
            {
                format!(
                    "; a crashed mount may be left there: run `fusermount3 -u {}`",
                    mountpoint.display()
                )
            } else {
                String::new()
            };
            format!("cannot mount at {}: {e}{hint}", mountpoint.display())
        })?;
    let mut unmounter = session.unmount_callable();
    // SIGINT/SIGTERM: unmount, which ends the session loop below; uploads finish in `destroy`.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mp = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            log::info!("signal {sig}: unmounting {}", mp.display());
            if let Err(e) = unmounter.unmount() {
                log::error!("unmount of {} failed: {e}", mp.display());
            }
        }
    });
    log::info!("mounted s3://{bucket} at {}", mountpoint.display());
    report_ready(ready, Ok(()));
    let result = session
        .run()
        .map_err(|e| format!("session ended with an error: {e}"));
    fs.flush_all();
    result
}

/// Fork: the parent waits for the child's word on a pipe and exits with it; the child returns
/// the pipe's write end.
fn daemonize() -> Result<std::fs::File, String> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: no other threads exist yet (logging and clients start none before this point).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid > 0 {
        // Parent: wait for "ok" or an error message.
        // SAFETY: closing our copy of the write end; reading from a valid fd.
        unsafe { libc::close(fds[1]) };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            // SAFETY: chunk is valid for 512 bytes.
            let n = unsafe { libc::read(fds[0], chunk.as_mut_ptr().cast(), chunk.len()) };
            if n <= 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n as usize]);
        }
        let msg = String::from_utf8_lossy(&buf);
        if msg == "ok" {
            std::process::exit(0);
        }
        let msg = if msg.is_empty() {
            "the mount process exited before the mount was ready".into()
        } else {
            msg.into_owned()
        };
        eprintln!("s3mount: {msg}");
        std::process::exit(1);
    }
    // Child: new session, stdin from /dev/null; stderr stays (logs) unless redirected.
    // SAFETY: plain syscalls on our own process.
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    // SAFETY: fds[1] is our pipe's write end, owned from here on by the File.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) })
}

/// Tell the waiting parent (once) whether the mount is ready.
fn report_ready(ready: &mut Option<std::fs::File>, result: Result<(), &String>) {
    let Some(mut f) = ready.take() else { return };
    let msg = match result {
        Ok(()) => "ok".to_string(),
        Err(m) => m.clone(),
    };
    let _ = f.write_all(msg.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_spec() {
        assert_eq!(split_bucket_spec("b"), ("b".into(), None));
        assert_eq!(split_bucket_spec("b:p/"), ("b".into(), Some("p/".into())));
    }

    #[test]
    fn cli_parses() {
        let c = Cli::try_parse_from(["s3mount", "-f", "--metadata-ttl", "5", "b:pre/", "/mnt"]);
        assert!(c.is_ok());
        assert!(Cli::try_parse_from(["s3mount"]).is_err());
    }
}
