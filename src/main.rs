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
//!
//! The rooms: `cli` (the flags), `opts` (`-o` lists, sizes, durations), `setup` (config,
//! client, bucket check, cache dir), `mount` (mount and serve), `kernel_mount` (mount(2) with
//! the type `fuse.s3mount`), `daemon` (background, log
//! file, readiness), `recover` (`--recover`, `--abort-stale-uploads`) with `progress` (their bar),
//! `publish` (a mount's figures: status.PID.json, --metrics-listen), `status` (`s3mount status`).

mod cli;
mod daemon;
mod kernel_mount;
mod mount;
mod opts;
mod progress;
mod publish;
mod recover;
mod setup;
mod status;

use std::io::Write;

use clap::Parser;

use cli::Cli;
use daemon::LogSink;

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

/// Commands that only print (`status`, the man page, the completions) end when their reader
/// does, as `ls | head` does: killed by SIGPIPE, quietly. The Rust runtime ignores SIGPIPE, so a
/// write to a closed pipe fails instead, and `println!` panics on that: `s3mount status | head
/// -1` (or `2>&1 |` with a short reader) ended in a panic and exit status 101. Not for the mount,
/// the recovery or the stale-upload abort: a closed log pipe must not kill them midway.
fn stop_at_a_closed_pipe() {
    // SAFETY: restoring a signal's default action has no preconditions; no thread runs yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() {
    bound_allocator_retention();
    let cli = Cli::parse_from(cli::helper_args(std::env::args_os()));
    if cli.print_man_page || cli.print_completions.is_some() || cli.command.is_some() {
        stop_at_a_closed_pipe();
    }
    let printed = if cli.print_man_page {
        Some(cli::man_page())
    } else {
        cli.print_completions
            .map(|shell| Ok(cli::completions(shell)))
    };
    if let Some(text) = printed {
        if let Err(e) = text.and_then(|t| std::io::stdout().write_all(&t)) {
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
    let result = if let Some(cli::Command::Status(args)) = &cli.command {
        status::run(args)
    } else if cli.recover {
        recover::recover(&cli)
    } else if let Some(age) = cli.abort_stale_uploads {
        recover::abort_stale_uploads(&cli, age)
    } else {
        mount::run(cli)
    };
    if let Err(msg) = result {
        progress::err_line(&format!("s3mount: {msg}"));
        std::process::exit(1);
    }
}
