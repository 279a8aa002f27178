//! `s3mount`: mount an S3 bucket (or `bucket:prefix/`) at a directory.
//!
//! Start-up order: parse flags and `-o` options → load the configuration → check the bucket is
//! reachable with these credentials (a one-key LIST, whose error names the S3 code, then HEAD
//! bucket), so a missing bucket, wrong keys, a policy without `s3:ListBucket` or a dead endpoint
//! are reported before anything is mounted → daemonize unless `--foreground` (the parent exits
//! only once the mount is ready, non-zero with the reason if it failed) → mount and serve until
//! `umount` or SIGINT/SIGTERM, which unmount cleanly after uploading anything still open.
//!
//! Called as `mount.s3mount` or `mount.fuse.s3mount` (a link made by `make install`), it is the
//! mount(8) helper: `mount -t fuse.s3mount BUCKET DIR -o opts` and fstab lines work.

mod opts;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{CommandFactory, Parser};
use s3mount::config::{LoadRequest, Overrides};
use s3mount::fs::fuse::FuseAdapter;
use s3mount::fs::mountinfo::fuse_mounted_at;
use s3mount::fs::{unsaved, FsOptions, S3Fs};
use s3mount::s3::private::{self, DirState};
use s3mount::s3::store::abort_if_open;
use s3mount::s3::{ClientConfig, ListRequest, ObjectStore, S3Client, Storage, UploadJournal};

use opts::MountOptions;

/// Mount an S3 bucket as a local directory.
///
/// The bucket (or BUCKET:PREFIX/ to mount only the keys under PREFIX/) comes from the command
/// line or from the config's default_bucket. Every `-o` option has a long flag of the same name.
#[derive(Debug, Parser)]
#[command(name = "s3mount", version, about, long_about = None)]
struct Cli {
    /// [BUCKET[:PREFIX/]] MOUNTPOINT
    #[arg(
        value_name = "ARGS",
        num_args = 1..=2,
        required_unless_present_any = ["print_man_page", "recover", "abort_stale_uploads"]
    )]
    args: Vec<String>,

    /// Mount options, comma-separated: ro, rw, allow_other, allow_root, default_permissions,
    /// uid=, gid=, umask=, file_mode=, dir_mode=, config=, endpoint=, region=, profile=,
    /// cache_dir=, cache_size=, metadata_ttl=, allow_shared_cache; _netdev, nofail, noauto are
    /// ignored.
    #[arg(short = 'o', value_name = "OPTS", help_heading = "Mount")]
    options: Vec<String>,

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
    /// Mount read-only (-o ro).
    #[arg(long, help_heading = "Mount")]
    read_only: bool,
    /// Let other users access the mount (-o allow_other); implies default_permissions.
    #[arg(long, help_heading = "Mount")]
    allow_other: bool,
    /// Let root access the mount too (-o allow_root); implies default_permissions.
    #[arg(long, help_heading = "Mount")]
    allow_root: bool,
    /// Let the kernel check permissions from the mode bits (-o default_permissions).
    #[arg(long, help_heading = "Mount")]
    default_permissions: bool,
    /// Owner of objects without x-amz-meta-uid (default: the mounting user).
    #[arg(long, value_name = "UID", help_heading = "Mount")]
    uid: Option<u32>,
    /// Group of objects without x-amz-meta-gid.
    #[arg(long, value_name = "GID", help_heading = "Mount")]
    gid: Option<u32>,
    /// Mode of files without x-amz-meta-mode, octal (default 0644).
    #[arg(long, value_name = "MODE", value_parser = parse_mode_arg, help_heading = "Mount")]
    file_mode: Option<u32>,
    /// Mode of directories without x-amz-meta-mode, octal (default 0755).
    #[arg(long, value_name = "MODE", value_parser = parse_mode_arg, help_heading = "Mount")]
    dir_mode: Option<u32>,
    /// Bits removed from the default modes, octal.
    #[arg(long, value_name = "UMASK", value_parser = parse_mode_arg, help_heading = "Mount")]
    umask: Option<u32>,
    /// How long attributes and listings are trusted: 1, 1.5, 500ms, 30s (default 1s).
    #[arg(long, value_name = "DURATION", value_parser = opts::parse_duration, help_heading = "Mount")]
    metadata_ttl: Option<Duration>,
    /// Staging files, unsaved uploads and the data cache live here (in a subdirectory per
    /// bucket and prefix).
    #[arg(long, value_name = "DIR", help_heading = "Cache")]
    cache_dir: Option<PathBuf>,
    /// Size limit of the on-disk cache of read data (10G, 512M; default 4G; 0 turns it off).
    /// It never fills its file system past 95%.
    #[arg(long, value_name = "SIZE", value_parser = opts::parse_size, help_heading = "Cache")]
    cache_size: Option<u64>,
    /// Use a cache dir that group or others can get into, or that belongs to another user, as
    /// it is (otherwise one of the mounting user's own is made 0700 and another's is refused).
    /// What s3mount creates there is private all the same.
    #[arg(long, help_heading = "Cache")]
    allow_shared_cache: bool,
    /// FUSE worker threads.
    #[arg(long, value_name = "N", default_value = "8", help_heading = "Mount")]
    threads: usize,
    /// After SIGTERM/SIGINT with files still open, how long to wait for them to be closed
    /// (and uploaded) before keeping them under unsaved/ and exiting; a second signal stops at
    /// once.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = opts::parse_duration, help_heading = "Mount")]
    stop_timeout: Duration,
    /// Complete `ls -l` attributes (mode, owner, symlinks) with parallel HEADs in directories of
    /// at most N not-yet-known entries; 0 never (listings then cost no request per entry).
    #[arg(long, value_name = "N", default_value = "512", help_heading = "Mount")]
    listing_head_limit: usize,
    /// No extended attributes: every xattr call is ENOSYS, so the kernel stops asking and
    /// `ls -l` costs no `getxattr` round trips (two per entry with GNU ls).
    #[arg(long, help_heading = "Mount")]
    no_xattr: bool,

    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides.
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "warn",
        help_heading = "Logging"
    )]
    log_level: String,
    /// Log to this file (default: stderr; in the background, <cache-dir>/s3mount.log).
    #[arg(long, value_name = "FILE", help_heading = "Logging")]
    log_file: Option<PathBuf>,

    /// mount(8) helper flags: sloppy, no-mtab, verbose, type (accepted and ignored).
    #[arg(short = 's', hide = true)]
    sloppy: bool,
    #[arg(short = 'n', hide = true)]
    no_mtab: bool,
    #[arg(short = 'v', hide = true)]
    verbose: bool,
    #[arg(short = 't', hide = true)]
    fs_type: Option<String>,

    /// Upload the files kept under <cache-dir>/*/unsaved/ after failed uploads (each to the key
    /// its .key note names), removing each once it is on the server, and abort the multipart
    /// uploads a stopped s3mount left in <cache-dir>/*/uploads/; then exit.
    #[arg(long, help_heading = "Recovery")]
    recover: bool,

    /// Abort every multipart upload under BUCKET[:PREFIX/] (the only argument; default: the
    /// config's bucket) started more than AGE ago (e.g. 1d, 12h), whoever started it; then
    /// exit. Uploads in progress are younger: choose an AGE longer than any upload takes.
    #[arg(long, value_name = "AGE", value_parser = opts::parse_duration, help_heading = "Recovery")]
    abort_stale_uploads: Option<Duration>,

    /// Print the man page (roff) and exit.
    #[arg(long, hide = true)]
    print_man_page: bool,
}

fn parse_mode_arg(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{v:?}: expected an octal mode such as 0644"))
}

/// Where log lines go: stderr until a file is chosen (daemon mode moves them to a file so the
/// caller's terminal or pipe is released).
static LOG_FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

struct LogSink;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut f = LOG_FILE.lock().unwrap_or_else(|p| p.into_inner());
        match f.as_mut() {
            Some(file) => file.write(buf),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Append to `path`; created private to this user (log lines name objects). An existing file
/// keeps its mode: the operator chose it.
fn set_log_file(path: &Path) -> Result<(), String> {
    let file = private::open_options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("log file {}: {e}", path.display()))?;
    *LOG_FILE.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
    Ok(())
}

/// Buffers of 1 MiB and more (prefetched parts, upload parts) get their own mappings, returned
/// to the system when freed. glibc otherwise raises this threshold after the first large free
/// and keeps freed parts in its per-thread arenas: a 1 GiB sequential read then peaked at
/// 252 MiB of RSS against 84 MiB with the threshold fixed (bench/run.sh, peak_rss_seqread).
fn bound_allocator_retention() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

fn main() {
    bound_allocator_retention();
    let cli = Cli::parse();
    if cli.print_man_page {
        let man = clap_mangen::Man::new(Cli::command());
        let mut out = std::io::stdout();
        if let Err(e) = man.render(&mut out) {
            eprintln!("s3mount: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut logger = env_logger::Builder::new();
    logger.parse_filters(&cli.log_level);
    if let Ok(f) = std::env::var("RUST_LOG") {
        logger.parse_filters(&f);
    }
    // ureq_proto hex-dumps whole requests at trace level, Authorization header (and any
    // session token) included: never let that reach a log.
    logger.filter_module("ureq_proto::util", log::LevelFilter::Debug);
    logger
        .format_timestamp_millis()
        .target(env_logger::Target::Pipe(Box::new(LogSink)))
        .init();
    let result = if cli.recover {
        recover(&cli)
    } else if let Some(age) = cli.abort_stale_uploads {
        abort_stale_uploads(&cli, age)
    } else {
        run(cli)
    };
    if let Err(msg) = result {
        eprintln!("s3mount: {msg}");
        std::process::exit(1);
    }
}

/// The configuration, as the mount loads it (flags over environment over file).
fn load_config(
    o: &MountOptions,
    bucket: Option<String>,
    prefix: Option<String>,
) -> Result<s3mount::Config, String> {
    let mut overrides = Overrides {
        endpoint: o.endpoint.clone(),
        region: o.region.clone(),
        bucket,
        prefix,
        ..Overrides::default()
    };
    if o.force_path_style {
        overrides.addressing_style = Some(s3mount::config::AddressingStyle::Path);
    }
    let mut req = LoadRequest::from_process_env(o.config.as_deref());
    req.allow_insecure = o.allow_insecure_config;
    req.overrides = overrides;
    req.profile = o.profile.clone();
    s3mount::Config::load(&req).map_err(|e| e.to_string())
}

/// A client for `config` (with `--ca-file`).
fn make_storage(
    cli: &Cli,
    config: &s3mount::Config,
    bucket: Option<String>,
) -> Result<Storage, String> {
    let mut client_cfg = ClientConfig::from_config(config);
    client_cfg.ca_file = cli.ca_file.clone();
    let client = S3Client::new(client_cfg).map_err(|e| e.to_string())?;
    Ok(Storage::with_client(client, bucket))
}

/// `--recover`: abort the multipart uploads stopped mounts left in `<cache-dir>/*/uploads/`,
/// and re-upload what failed uploads left under `<cache-dir>/*/unsaved/`.
fn recover(cli: &Cli) -> Result<(), String> {
    let o = merged_options(cli)?;
    let config = load_config(&o, None, None)?;
    let base_storage = make_storage(cli, &config, None)?;
    let root = o.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let (mut done, mut failed, mut aborted) = (0usize, 0usize, 0usize);
    let mounts = std::fs::read_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    // The same rule as a mount's: the upload journal and anything re-created here stay private.
    secure_cache_dir(&root, o.allow_shared_cache)?;
    for mount_dir in mounts.flatten() {
        if !mount_dir.path().is_dir() {
            continue; // s3mount.log of an older version, or anything else that is not a mount's
        }
        if let Err(e) = secure_cache_dir(&mount_dir.path(), o.allow_shared_cache) {
            eprintln!("{e}; left alone");
            failed += 1;
            continue;
        }
        let mut storage = base_storage.clone();
        let journal_dir = mount_dir.path().join("uploads");
        if journal_dir.is_dir() {
            match UploadJournal::open(&journal_dir) {
                Ok(journal) => {
                    let r = journal.recover(&storage);
                    for (obj, id) in &r.aborted {
                        println!(
                            "aborted multipart upload {id} of {obj} (left by a stopped s3mount)"
                        );
                    }
                    for (path, why) in &r.kept {
                        eprintln!("{}: {why}; left in place", path.display());
                    }
                    if r.live > 0 {
                        println!(
                            "{}: {} upload(s) of a running s3mount left alone",
                            journal_dir.display(),
                            r.live
                        );
                    }
                    aborted += r.aborted.len();
                    failed += r.kept.len();
                    // The uploads below are recorded there too.
                    storage = storage.with_journal(Arc::new(journal));
                }
                Err(e) => {
                    eprintln!("{}: {e}", journal_dir.display());
                    failed += 1;
                }
            }
        }
        let Ok(found) = unsaved::find(&mount_dir.path().join("unsaved")) else {
            continue;
        };
        for f in found {
            let (data, note) = match f {
                unsaved::Found::Kept { data, note } => (data, note),
                unsaved::Found::Leftover(data) => {
                    // Its writer never closed it, so it may be incomplete, and no note says
                    // where it belongs.
                    println!(
                        "{}: a file that was open when s3mount stopped (maybe incomplete, object unknown); not uploaded",
                        data.display()
                    );
                    continue;
                }
            };
            let Some(note) = note else {
                eprintln!("{}: no readable .key note; left in place", data.display());
                failed += 1;
                continue;
            };
            let obj = &note.obj;
            let result = std::fs::File::open(&data)
                .and_then(|f| f.metadata().map(|m| (f, m.len())))
                .map_err(|e| e.to_string())
                .and_then(|(f, len)| {
                    storage
                        .bucket(&obj.bucket)
                        .put_file(&obj.key, &f, len, &note.put_options())
                        .map_err(|e| e.to_string())
                });
            match result {
                Ok(_) => {
                    unsaved::remove(&data);
                    println!("uploaded {} -> {obj}", data.display());
                    done += 1;
                }
                Err(e) => {
                    eprintln!("{} -> {obj}: {e}; left in place", data.display());
                    failed += 1;
                }
            }
        }
    }
    println!("recover: {done} uploaded, {failed} left, {aborted} multipart upload(s) aborted");
    if failed > 0 {
        return Err(format!("{failed} file(s) could not be uploaded"));
    }
    Ok(())
}

/// `--abort-stale-uploads AGE [BUCKET[:PREFIX/]]`: abort the multipart uploads under the
/// bucket (and prefix) started more than `age` ago.
fn abort_stale_uploads(cli: &Cli, age: Duration) -> Result<(), String> {
    let o = merged_options(cli)?;
    let (bucket, prefix) = match cli.args.as_slice() {
        [] => (None, None),
        [spec] => {
            let (b, p) = split_bucket_spec(spec);
            (Some(b), p)
        }
        _ => return Err("usage: s3mount --abort-stale-uploads AGE [BUCKET[:PREFIX/]]".into()),
    };
    let config = load_config(&o, bucket, prefix)?;
    let bucket = config
        .default_bucket
        .clone()
        .ok_or("no bucket: name one on the command line or set default_bucket in the config")?;
    let storage = make_storage(cli, &config, Some(bucket.clone()))?;
    let uploads = storage
        .bucket(&bucket)
        .list_uploads(&config.prefix)
        .map_err(|e| e.to_string())?;
    let cutoff = std::time::SystemTime::now()
        .checked_sub(age)
        .unwrap_or(std::time::UNIX_EPOCH);
    let (mut aborted, mut young, mut failed) = (0usize, 0usize, 0usize);
    for u in uploads {
        let obj = s3mount::s3::ObjectRef {
            bucket: bucket.clone(),
            key: u.key.clone(),
        };
        let Some(started) = u.initiated else {
            eprintln!(
                "{obj}: upload {} has no readable start date; left alone",
                u.upload_id
            );
            failed += 1;
            continue;
        };
        let when = humantime::format_rfc3339_seconds(started);
        if started > cutoff {
            young += 1;
            continue;
        }
        // An upload already gone (completed or aborted meanwhile) counts as aborted.
        match abort_if_open(&storage, &obj, &u.upload_id) {
            Ok(_) => {
                println!(
                    "aborted multipart upload {} of {obj} (started {when})",
                    u.upload_id
                );
                aborted += 1;
            }
            Err(e) => {
                eprintln!("{obj}: cannot abort upload {}: {e}", u.upload_id);
                failed += 1;
            }
        }
    }
    println!(
        "abort-stale-uploads: {aborted} aborted, {young} younger than {} left, {failed} failed",
        humantime::format_duration(age)
    );
    if failed > 0 {
        return Err(format!("{failed} upload(s) could not be aborted"));
    }
    Ok(())
}

/// `BUCKET[:PREFIX/]` → (bucket, prefix).
fn split_bucket_spec(spec: &str) -> (String, Option<String>) {
    match spec.split_once(':') {
        Some((b, p)) => (b.to_string(), Some(p.to_string())),
        None => (spec.to_string(), None),
    }
}

/// Flags win over `-o`.
fn merged_options(cli: &Cli) -> Result<MountOptions, String> {
    let mut o = MountOptions::default();
    for list in &cli.options {
        o.parse_into(list)?;
    }
    if cli.read_only {
        o.read_only = Some(true);
    }
    o.allow_other |= cli.allow_other;
    o.allow_root |= cli.allow_root;
    o.default_permissions |= cli.default_permissions;
    o.allow_insecure_config |= cli.allow_insecure_config;
    o.force_path_style |= cli.force_path_style;
    o.allow_shared_cache |= cli.allow_shared_cache;
    macro_rules! take {
        ($($f:ident),*) => { $( if cli.$f.is_some() { o.$f = cli.$f.clone(); } )* };
    }
    take!(
        uid,
        gid,
        umask,
        file_mode,
        dir_mode,
        config,
        endpoint,
        region,
        profile,
        cache_dir,
        cache_size,
        metadata_ttl
    );
    if o.allow_other && o.allow_root {
        return Err("allow_other and allow_root exclude each other".into());
    }
    Ok(o)
}

fn run(cli: Cli) -> Result<(), String> {
    let o = merged_options(&cli)?;
    let (bucket_spec, mountpoint) = match cli.args.as_slice() {
        [m] => (None, PathBuf::from(m)),
        [b, m] => (Some(b.as_str()), PathBuf::from(m)),
        _ => return Err("usage: s3mount [OPTIONS] [BUCKET[:PREFIX/]] MOUNTPOINT".into()),
    };
    // fstab's first field may be a placeholder when the bucket comes from the config.
    let bucket_spec = bucket_spec.filter(|s| !matches!(*s, "s3mount" | "none" | ""));
    let (bucket, prefix) = match bucket_spec {
        Some(s) => {
            let (b, p) = split_bucket_spec(s);
            (Some(b), p)
        }
        None => (None, None),
    };
    let config = load_config(&o, bucket, prefix)?;
    log::debug!("credentials from {}", config.credential_source);
    let bucket = config
        .default_bucket
        .clone()
        .ok_or("no bucket: name one on the command line or set default_bucket in the config")?;

    let meta = std::fs::metadata(&mountpoint).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::ENOTCONN) {
            format!(
                "; a crashed mount is left there: run `fusermount3 -u {}`",
                mountpoint.display()
            )
        } else {
            String::new()
        };
        format!("mount point {}: {e}{hint}", mountpoint.display())
    })?;
    if !meta.is_dir() {
        return Err(format!(
            "mount point {} is not a directory",
            mountpoint.display()
        ));
    }
    if let Some(source) = fuse_mounted_at(&mountpoint) {
        return Err(format!(
            "mount point {} is already in use: {source} is mounted there (unmount it first: `fusermount3 -u {}`)",
            mountpoint.display(),
            mountpoint.display()
        ));
    }

    let storage = make_storage(&cli, &config, Some(bucket.clone()))?;
    preflight(&storage, &bucket, &config.prefix)?;

    let cache_root = o.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let cache_dir = cache_root.join(cache_subdir(&bucket, &config.prefix));
    // Before anything is written there, and before daemonizing, so a refusal reaches the caller.
    secure_cache_dir(&cache_root, o.allow_shared_cache)?;
    secure_cache_dir(&cache_dir, o.allow_shared_cache)?;
    let mut fs_opts = FsOptions::new(cache_dir.clone());
    fs_opts.prefix = config.prefix.clone();
    fs_opts.read_only = o.read_only.unwrap_or(false);
    if let Some(ttl) = o.metadata_ttl {
        fs_opts.metadata_ttl = ttl;
        fs_opts.negative_ttl = ttl;
    }
    if let Some(u) = o.uid {
        fs_opts.uid = u;
    }
    if let Some(g) = o.gid {
        fs_opts.gid = g;
    }
    fs_opts.listing_head_limit = cli.listing_head_limit;
    fs_opts.xattr = !cli.no_xattr;
    let umask = o.umask.unwrap_or(0);
    fs_opts.file_mode = o.file_mode.unwrap_or(fs_opts.file_mode) & !umask;
    fs_opts.dir_mode = o.dir_mode.unwrap_or(fs_opts.dir_mode) & !umask;
    fs_opts.data_cache_size = o.cache_size.unwrap_or(fs_opts.data_cache_size);
    fs_opts.mount_point = Some(mountpoint.clone());
    // After the cache dir check, which creates it: the log file may be in it.
    if let Some(f) = &cli.log_file {
        set_log_file(f)?;
    }

    let mut ready = if cli.foreground {
        None
    } else {
        Some(daemonize()?)
    };
    if ready.is_some() && cli.log_file.is_none() {
        // In the background, log next to the staging files; stderr is released below.
        set_log_file(&cache_dir.join("s3mount.log"))?;
    }
    let result = serve(&cli, &o, storage, fs_opts, &mountpoint, &bucket, &mut ready);
    if let Err(msg) = &result {
        report_ready(&mut ready, Err(msg));
    }
    result
}

/// Fail early and clearly: bucket exists, credentials work, listing is allowed.
fn preflight(storage: &Storage, bucket: &str, prefix: &str) -> Result<(), String> {
    // LIST first: its error reply has a body naming the S3 error code (NoSuchBucket,
    // SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied); a HEAD's has none, so a wrong
    // secret would be reported as a missing s3:ListBucket permission.
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
        .map_err(|e| format!("cannot use bucket {bucket:?}: {e}"))?;
    storage
        .head_bucket(bucket)
        .map_err(|e| format!("cannot use bucket {bucket:?}: {e}"))?;
    Ok(())
}

/// The start-up check of a cache directory ([`private::secure_dir`]), saying when it tightened
/// one.
fn secure_cache_dir(dir: &Path, allow_shared: bool) -> Result<(), String> {
    if let DirState::Tightened { was } = private::secure_dir(dir, allow_shared)? {
        log::warn!(
            "cache dir {}: was mode {was:04o}, open to other users; now {:04o} (pass --allow-shared-cache to keep a shared cache as it is)",
            dir.display(),
            private::DIR_MODE
        );
    }
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
    o: &MountOptions,
    storage: Storage,
    opts: FsOptions,
    mountpoint: &Path,
    bucket: &str,
    ready: &mut Option<std::fs::File>,
) -> Result<(), String> {
    // Multipart uploads a stopped s3mount left unfinished: abort them (each is logged), and
    // record this mount's own until they are finished.
    let journal_dir = opts.cache_dir.join("uploads");
    let journal =
        UploadJournal::open(&journal_dir).map_err(|e| format!("{}: {e}", journal_dir.display()))?;
    let r = journal.recover(&storage);
    if !r.aborted.is_empty() || !r.kept.is_empty() {
        log::warn!(
            "upload journal {}: {} unfinished multipart upload(s) aborted, {} kept for later",
            journal_dir.display(),
            r.aborted.len(),
            r.kept.len()
        );
    }
    let mounted = storage.with_journal(Arc::new(journal)).bucket(bucket);
    let fs = Arc::new(S3Fs::new(mounted, opts).map_err(|e| e.to_string())?);
    let mut mount_options = vec![
        fuser::MountOption::FSName(format!("s3mount:{bucket}")),
        fuser::MountOption::Subtype("s3mount".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    if o.read_only == Some(true) {
        mount_options.push(fuser::MountOption::RO);
    }
    // With other users let in, the kernel must check the mode bits: s3mount does no access
    // checks of its own, so without `default_permissions` anyone could read or change every
    // file. `allow_other` therefore implies it.
    if o.default_permissions || o.allow_other || o.allow_root {
        mount_options.push(fuser::MountOption::DefaultPermissions);
    }
    let mut config = fuser::Config::default();
    config.mount_options = mount_options;
    config.n_threads = Some(cli.threads.clamp(1, 64));
    // fuser 0.18 answers on the session's fd, so cloned fds would lose replies.
    config.clone_fd = false;
    if o.allow_other {
        config.acl = fuser::SessionACL::All;
    } else if o.allow_root {
        config.acl = fuser::SessionACL::RootAndOwner;
    }
    let mut session = fuser::Session::new(FuseAdapter::new(fs.clone()), mountpoint, &config)
        .map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::ENOTCONN) => format!(
                    "; a crashed mount may be left there: run `fusermount3 -u {}`",
                    mountpoint.display()
                ),
                Some(libc::EBUSY) => "; something is already mounted there".to_string(),
                _ => String::new(),
            };
            format!("cannot mount at {}: {e}{hint}", mountpoint.display())
        })?;
    let mut unmounter = session.unmount_callable();
    // SIGINT/SIGTERM: unmount, which ends the session loop below; open files are uploaded
    // before the process exits.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mp = mountpoint.to_path_buf();
    let fs_for_signals = fs.clone();
    let stop_timeout = cli.stop_timeout;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            log::info!("signal {sig}: unmounting {}", mp.display());
            sd_notify("STOPPING=1");
            match unmounter.unmount() {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    // Files are open (or a process has its cwd there): detach now; the
                    // session ends, and s3mount exits, once the last of them is closed and
                    // uploaded.
                    log::warn!(
                        "{} is busy: detaching it (lazy unmount); exiting once open files are closed",
                        mp.display()
                    );
                    if let Err(e) = lazy_unmount(&mp) {
                        log::error!("lazy unmount of {} failed: {e}", mp.display());
                    }
                    // Bounded: at the stop timeout, or a second signal, keep what is still
                    // open under unsaved/ (never upload a file mid-write) and exit.
                    let fs_stop = fs_for_signals.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(stop_timeout);
                        force_stop(&fs_stop, "stop timeout reached");
                    });
                    if signals.forever().next().is_some() {
                        force_stop(&fs_for_signals, "second signal");
                    }
                }
                Err(e) => log::error!("unmount of {} failed: {e}", mp.display()),
            }
        }
    });
    log::info!("mounted s3://{bucket} at {}", mountpoint.display());
    sd_notify("READY=1");
    if ready.is_some() {
        report_ready(ready, Ok(()));
        // The caller's terminal or pipe is released: logs go to the log file from now on.
        // SAFETY: plain syscalls on our own descriptors.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 2);
                libc::close(null);
            }
        }
    }
    let result = session
        .run()
        .map_err(|e| format!("session ended with an error: {e}"));
    fs.flush_all();
    result
}

/// Leave now: open files' unsaved changes go to unsaved/, never to the server half-written.
fn force_stop(fs: &S3Fs, why: &str) -> ! {
    let kept = fs.save_open_files();
    log::error!(
        "{why}: exiting with {kept} open file(s) kept under unsaved/ (see s3mount --recover)"
    );
    std::process::exit(1);
}

/// `umount -l`: as root directly, otherwise through `fusermount3 -u -z`.
fn lazy_unmount(mountpoint: &Path) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes())
            .map_err(|e| e.to_string())?;
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        return Err(std::io::Error::last_os_error().to_string());
    }
    let st = std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mountpoint)
        .status()
        .map_err(|e| format!("fusermount3: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("fusermount3 -u -z: {st}"))
    }
}

/// Tell systemd (Type=notify units) about our state; a no-op elsewhere.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::warn!("sd_notify {state}: {e}");
    }
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
        // `make man` runs `s3mount --print-man-page` with no mount arguments.
        assert!(Cli::try_parse_from(["s3mount", "--print-man-page"]).is_ok());
        let c = Cli::try_parse_from(["s3mount", "--abort-stale-uploads", "1d", "b:p/"])
            .expect("parses");
        assert_eq!(c.abort_stale_uploads, Some(Duration::from_secs(86_400)));
        assert_eq!(c.args, ["b:p/"]);
        assert!(Cli::try_parse_from(["s3mount", "--abort-stale-uploads", "1d"]).is_ok());
        assert!(Cli::try_parse_from(["s3mount", "--abort-stale-uploads", "soon", "b"]).is_err());
    }

    #[test]
    fn mount_helper_arguments_and_flags_over_o() {
        // What mount(8) passes to /sbin/mount.fuse.s3mount for an fstab line.
        let c = Cli::try_parse_from([
            "mount.fuse.s3mount",
            "bucket",
            "/mnt/b",
            "-n",
            "-o",
            "rw,_netdev,config=/etc/s3mount/b.yaml,allow_other,uid=7,metadata_ttl=30s",
            "-t",
            "fuse.s3mount",
        ])
        .expect("parses");
        let o = merged_options(&c).expect("valid");
        assert_eq!(o.read_only, Some(false));
        assert!(o.allow_other);
        assert_eq!(o.uid, Some(7));
        assert_eq!(o.metadata_ttl, Some(Duration::from_secs(30)));
        assert_eq!(o.config, Some(PathBuf::from("/etc/s3mount/b.yaml")));
        let c = Cli::try_parse_from(["s3mount", "-o", "uid=7", "--uid", "8", "b", "/m"])
            .expect("parses");
        assert_eq!(merged_options(&c).expect("valid").uid, Some(8));
        let c = Cli::try_parse_from(["s3mount", "-o", "bogus", "b", "/m"]).expect("parses");
        assert!(merged_options(&c).unwrap_err().contains("bogus"));
        let c = Cli::try_parse_from(["s3mount", "-o", "allow_other,allow_root", "b", "/m"])
            .expect("parses");
        assert!(merged_options(&c).is_err());
    }

    #[test]
    fn help_is_generated() {
        let mut cmd = Cli::command();
        let help = cmd.render_long_help().to_string();
        for heading in ["Connection", "Mount", "Cache", "Logging"] {
            assert!(help.contains(heading), "{heading} missing from --help");
        }
        let mut man = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut man)
            .expect("renders");
        assert!(String::from_utf8_lossy(&man).contains(".TH s3mount"));
    }
}
