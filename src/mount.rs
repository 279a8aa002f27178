//! A mount: from the merged options to a serving FUSE session (`run`), then until unmount or
//! SIGINT/SIGTERM/SIGHUP (`serve`), with the bounded stop that keeps open files under `unsaved/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use s3mount::config::AddressingStyle;
use s3mount::fs::fuse::FuseAdapter;
use s3mount::fs::mountinfo::fuse_mounted_at;
use s3mount::fs::KernelPageSink;
use s3mount::fs::{FsOptions, S3Fs};
use s3mount::s3::{S3Metrics, Storage, UploadJournal};

use crate::cli::{merged_options, split_bucket_spec, Cli};
use crate::daemon::{daemonize, report_ready, sd_notify, set_log_file};
use crate::kernel_mount::{self, lazy_unmount};
use crate::opts::MountOptions;
use crate::publish::{serve_metrics, Identity, Publisher, Sources};
use crate::setup::{
    cache_subdir, default_cache_dir, load_config, make_storage, preflight, secure_cache_dir,
};

/// The name of the `status` command, which a bucket or mount point of that name is not.
const STATUS_COMMAND: &str = "status";

pub fn run(cli: Cli) -> Result<(), String> {
    // `s3mount --cache-dir DIR status [MOUNTPOINT]`: clap takes a word after options for a
    // positional argument, not the command, so this meant mounting a bucket `status` (or the
    // config's bucket at ./status) and failed with a baffling "no bucket" or "already in use".
    if cli.args.first().is_some_and(|a| a == STATUS_COMMAND) {
        return Err(format!(
            "`{STATUS_COMMAND}` is a command: put its options after it (s3mount {STATUS_COMMAND} --cache-dir DIR [MOUNTPOINT]); a bucket named {STATUS_COMMAND} is written `{STATUS_COMMAND}:`, a mount point ./{STATUS_COMMAND}"
        ));
    }
    let o = merged_options(&cli)?;
    let (bucket_spec, mountpoint) = match cli.args.as_slice() {
        [m] => (None, absolute(Path::new(m))?),
        [b, m] => (Some(b.as_str()), absolute(Path::new(m))?),
        _ => return Err("usage: s3mount [OPTIONS] [BUCKET[:PREFIX/]] MOUNTPOINT".into()),
    };
    if o.remount {
        // The mount is there already: only its flags change (`mount -f`: nothing does).
        return match cli.fake {
            true => Ok(()),
            false => kernel_mount::remount(&mountpoint, o.read_only, o.noexec),
        };
    }
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
    if cli.fake {
        // `mount -f`: the options and the config are good; mount(8) wants no more.
        return Ok(());
    }
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

    // Counted for `s3mount status` unless --no-status.
    let metrics = (!cli.no_status).then(|| Arc::new(S3Metrics::default()));
    let storage = make_storage(&cli, &o, &config, Some(bucket.clone()), metrics)?;
    let virtual_hosted = config.addressing_for(&bucket) == AddressingStyle::Virtual;
    preflight(
        &storage,
        &config.endpoint,
        &bucket,
        &config.prefix,
        virtual_hosted,
    )?;

    // Absolute: the background process works from `/`.
    let cache_root = absolute(&o.cache_dir.clone().unwrap_or_else(default_cache_dir))?;
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
    if o.acl && cli.no_xattr {
        return Err("-o acl needs extended attributes: drop --no-xattr".into());
    }
    fs_opts.acl = o.acl;
    fs_opts.owners_from_callers = o.allow_other || o.allow_root;
    let umask = o.umask.unwrap_or(0);
    fs_opts.file_mode = o.file_mode.unwrap_or(fs_opts.file_mode) & !umask;
    fs_opts.dir_mode = o.dir_mode.unwrap_or(fs_opts.dir_mode) & !umask;
    fs_opts.data_cache_size = o.cache_size.unwrap_or(fs_opts.data_cache_size);
    fs_opts.mount_point = Some(mountpoint.clone());
    fs_opts.storage_class = o.storage_class.clone();
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
    let identity = Identity {
        mountpoint: mountpoint
            .canonicalize()
            .unwrap_or_else(|_| mountpoint.clone()),
        bucket: bucket.clone(),
        prefix: config.prefix.clone(),
        endpoint: config.endpoint.to_string(),
    };
    let result = serve(&cli, &o, storage, fs_opts, identity, &mut ready);
    if let Err(msg) = &result {
        if ready.is_some() {
            // The background process before the mount was ready: the waiting parent prints
            // the reason, on the same terminal as this process's stderr, where `main` would
            // print it a second time. The log keeps it.
            log::error!("{msg}");
            report_ready(&mut ready, Err(msg));
            std::process::exit(1);
        }
    }
    result
}

/// The mount's source in `/proc/mounts`: the first argument as given (fstab's first field:
/// `photos`, `photos:pre/`, `none`), so that mount(8) knows an fstab line as mounted already
/// (`mount -a` run again leaves it alone instead of failing "already in use") and `umount
/// photos` finds it, as with other file systems; `s3mount:BUCKET` when the bucket came from the
/// config alone, or the spelling would not survive fusermount3's option string.
fn mount_source(args: &[String], bucket: &str) -> String {
    match args {
        [spec, _] if !spec.is_empty() && !spec.contains([',', '\\']) => spec.clone(),
        _ => format!("s3mount:{bucket}"),
    }
}

/// `path` from the working directory, as the user meant it (symlinks kept), for the background
/// process, which leaves that directory.
fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn serve(
    cli: &Cli,
    o: &MountOptions,
    storage: Storage,
    opts: FsOptions,
    identity: Identity,
    ready: &mut Option<std::fs::File>,
) -> Result<(), String> {
    let mountpoint = identity.mountpoint.clone();
    let mountpoint = mountpoint.as_path();
    let bucket = identity.bucket.clone();
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
    let mounted = storage.with_journal(Arc::new(journal)).bucket(&bucket);
    let cache_dir = opts.cache_dir.clone();
    let fs = Arc::new(S3Fs::new(mounted, opts).map_err(|e| e.to_string())?);
    let sources = Sources::new(identity, fs.clone());
    // Before mounting: a port in use fails the start, not the running mount.
    if let Some(addr) = cli.metrics_listen {
        serve_metrics(addr, sources.clone())?;
    }
    let mut mount_options = vec![
        fuser::MountOption::FSName(mount_source(&cli.args, &bucket)),
        fuser::MountOption::Subtype("s3mount".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    if o.read_only == Some(true) {
        mount_options.push(fuser::MountOption::RO);
    }
    if o.noexec {
        mount_options.push(fuser::MountOption::NoExec);
    }
    // With other users let in, the kernel must check the mode bits: s3mount does no access
    // checks of its own, so without `default_permissions` anyone could read or change every
    // file. `allow_other` therefore implies it.
    if o.default_permissions || o.allow_other || o.allow_root {
        mount_options.push(fuser::MountOption::DefaultPermissions);
    }
    let mut config = fuser::Config::default();
    config.mount_options = mount_options;
    config.n_threads = Some(cli.threads.into());
    // fuser 0.18 answers on the session's fd, so cloned fds would lose replies.
    config.clone_fd = false;
    if o.allow_other {
        config.acl = fuser::SessionACL::All;
    } else if o.allow_root {
        config.acl = fuser::SessionACL::RootAndOwner;
    }
    let (session, mut unmounter) =
        kernel_mount::mount(FuseAdapter::new(fs.clone()), mountpoint, &config).map_err(|e| {
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
    // Whole fetches of randomly read objects also fill the kernel's page cache.
    fs.set_page_sink(Arc::new(KernelPageSink(session.notifier())));
    // SIGINT/SIGTERM: unmount, which ends the session loop below; open files are uploaded
    // before the process exits. SIGHUP too, as libfuse's file systems do: a foreground mount
    // whose terminal or ssh session goes away would otherwise die on it and leave a dead
    // mount point, losing what open files held.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mp = mountpoint.to_path_buf();
    let fs_for_signals = fs.clone();
    let stop_timeout = cli.stop_timeout;
    // Set once a signal asked for the stop: the session's end is then the one asked for.
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_asked = stopping.clone();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            stop_asked.store(true, std::sync::atomic::Ordering::SeqCst);
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
    let _publisher = if cli.no_status {
        None
    } else {
        Some(Publisher::start(sources, &cache_dir))
    };
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
    let result = match session.run() {
        // The kernel ends the connection of a mount detached on our signal with ENODEV, or
        // (a race with its teardown) ECONNABORTED: both are the stop that was asked for.
        Err(e)
            if stopping.load(std::sync::atomic::Ordering::SeqCst)
                && matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::ENODEV)) =>
        {
            log::debug!("session ended after the stop was asked for: {e}");
            Ok(())
        }
        other => other.map_err(|e| format!("session ended with an error: {e}")),
    };
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
