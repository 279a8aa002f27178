//! The command line: flags (clap; their doc comments are `--help` and the man page) and the
//! merge of `-o` options under them ([`merged_options`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::opts::{self, MountOptions};

/// Most FUSE worker threads: each holds a request buffer as large as the largest write (1 MiB
/// and more), and past this the kernel's queue, not the workers, is what waits.
const MAX_THREADS: i64 = 64;

/// Mount an S3 bucket as a local directory.
///
/// The bucket (or BUCKET:PREFIX/ to mount only the keys under PREFIX/) comes from the command
/// line or from the config's default_bucket. Every `-o` option has a long flag of the same name.
#[derive(Debug, Parser)]
#[command(
    name = "s3mount",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Another command than mounting.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// [BUCKET[:PREFIX/]] MOUNTPOINT (a bucket named `status` is written `status:`)
    #[arg(
        value_name = "ARGS",
        num_args = 1..=2,
        required_unless_present_any = ["print_man_page", "print_completions", "recover", "abort_stale_uploads"]
    )]
    pub args: Vec<String>,

    /// Mount options, comma-separated: ro, rw, allow_other, allow_root, default_permissions,
    /// uid=, gid=, umask=, file_mode=, dir_mode=, config=, endpoint=, region=, profile=,
    /// cache_dir=, cache_size=, metadata_ttl=, retry_timeout=, storage_class=,
    /// allow_shared_cache, acl (noacl undoes it), noexec (exec undoes it); _netdev, nofail,
    /// noauto are ignored.
    #[arg(short = 'o', value_name = "OPTS", help_heading = "Mount")]
    pub options: Vec<String>,

    /// Seed-style YAML config file (the `s3:` section).
    #[arg(long, short = 'c', value_name = "FILE", help_heading = "Connection")]
    pub config: Option<PathBuf>,
    /// Accept a config file readable by group or others.
    #[arg(long, help_heading = "Connection")]
    pub allow_insecure_config: bool,
    /// Endpoint host or URL (overrides the config and AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL", help_heading = "Connection")]
    pub endpoint: Option<String>,
    /// Signing region.
    #[arg(long, value_name = "REGION", help_heading = "Connection")]
    pub region: Option<String>,
    /// Profile of ~/.aws/credentials and ~/.aws/config to use.
    #[arg(long, value_name = "NAME", help_heading = "Connection")]
    pub profile: Option<String>,
    /// Use path-style addressing (http://endpoint/bucket/key).
    #[arg(long, help_heading = "Connection")]
    pub force_path_style: bool,
    /// PEM file of CA certificates to trust instead of the system's.
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    pub ca_file: Option<PathBuf>,
    /// How long a request is retried while the server is down, resets, times out or answers
    /// 5xx/SlowDown: 30s, 2m, 0 for one try (default 30s). A shorter one also shortens the
    /// wait for a server that accepts and never answers (30 s).
    #[arg(long, value_name = "DURATION", value_parser = opts::parse_duration, help_heading = "Connection")]
    pub retry_timeout: Option<Duration>,

    /// Stay in the foreground (default: return once mounted and run in the background).
    #[arg(long, short = 'f', help_heading = "Mount")]
    pub foreground: bool,
    /// Mount read-only (-o ro).
    #[arg(long, help_heading = "Mount")]
    pub read_only: bool,
    /// Let other users access the mount (-o allow_other); implies default_permissions.
    #[arg(long, help_heading = "Mount")]
    pub allow_other: bool,
    /// Let root access the mount too (-o allow_root); implies default_permissions.
    #[arg(long, help_heading = "Mount")]
    pub allow_root: bool,
    /// Let the kernel check permissions from the mode bits (-o default_permissions).
    #[arg(long, help_heading = "Mount")]
    pub default_permissions: bool,
    /// Owner of objects without x-amz-meta-uid (default: the mounting user).
    #[arg(long, value_name = "UID", help_heading = "Mount")]
    pub uid: Option<u32>,
    /// Group of objects without x-amz-meta-gid.
    #[arg(long, value_name = "GID", help_heading = "Mount")]
    pub gid: Option<u32>,
    /// Mode of files without x-amz-meta-mode, octal (default 0644).
    #[arg(long, value_name = "MODE", value_parser = parse_mode_arg, help_heading = "Mount")]
    pub file_mode: Option<u32>,
    /// Mode of directories without x-amz-meta-mode, octal (default 0755).
    #[arg(long, value_name = "MODE", value_parser = parse_mode_arg, help_heading = "Mount")]
    pub dir_mode: Option<u32>,
    /// Bits removed from the default modes, octal.
    #[arg(long, value_name = "UMASK", value_parser = parse_mode_arg, help_heading = "Mount")]
    pub umask: Option<u32>,
    /// How long attributes and listings are trusted: 1, 1.5, 500ms, 30s (default 1s).
    #[arg(long, value_name = "DURATION", value_parser = opts::parse_duration, help_heading = "Mount")]
    pub metadata_ttl: Option<Duration>,
    /// Storage class of the files the mount creates (STANDARD_IA, INTELLIGENT_TIERING,
    /// GLACIER_IR, ...; default: the server's, STANDARD). Existing objects keep their own class
    /// through rewrites, metadata changes and renames.
    #[arg(long, value_name = "CLASS", value_parser = opts::parse_storage_class, help_heading = "Mount")]
    pub storage_class: Option<String>,
    /// Staging files, unsaved uploads and the data cache live here (in a subdirectory per
    /// bucket and prefix).
    #[arg(long, value_name = "DIR", help_heading = "Cache")]
    pub cache_dir: Option<PathBuf>,
    /// Size limit of the on-disk cache of read data (10G, 512M; default 4G; 0 turns it off).
    /// It never fills its file system past 95%.
    #[arg(long, value_name = "SIZE", value_parser = opts::parse_size, help_heading = "Cache")]
    pub cache_size: Option<u64>,
    /// Use a cache dir that group or others can get into, or that belongs to another user, as
    /// it is (otherwise one of the mounting user's own is made 0700 and another's is refused).
    /// What s3mount creates there is private all the same.
    #[arg(long, help_heading = "Cache")]
    pub allow_shared_cache: bool,
    /// FUSE worker threads, 1 to 64.
    #[arg(long, value_name = "N", default_value = "8", help_heading = "Mount",
          value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS))]
    pub threads: u16,
    /// After SIGTERM/SIGINT/SIGHUP with files still open, how long to wait for them to be closed
    /// (and uploaded) before keeping them under unsaved/ and exiting; a second signal stops at
    /// once.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = opts::parse_duration, help_heading = "Mount")]
    pub stop_timeout: Duration,
    /// Complete `ls -l` attributes (mode, owner, symlinks) with parallel HEADs in directories of
    /// at most N not-yet-known entries, and in larger ones HEAD small files (possibly symlinks)
    /// N at a time at their first stat; 0 never (listings then cost no request per entry).
    #[arg(long, value_name = "N", default_value = "512", help_heading = "Mount")]
    pub listing_head_limit: usize,
    /// No extended attributes: every xattr call is ENOSYS, so the kernel stops asking and
    /// `ls -l` costs no `getxattr` round trips (two per entry with GNU ls).
    #[arg(long, help_heading = "Mount")]
    pub no_xattr: bool,
    /// POSIX ACLs (-o acl): setfacl/getfacl, default ACLs inherited, enforced by the kernel
    /// (implies default_permissions); costs GNU `ls -l` one getxattr round trip per entry.
    #[arg(long, conflicts_with = "no_xattr", help_heading = "Mount")]
    pub acl: bool,

    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides.
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "warn",
        help_heading = "Logging"
    )]
    pub log_level: String,
    /// Log to this file (default: stderr in the foreground; in the background,
    /// <cache-dir>/<bucket>/s3mount.log).
    #[arg(long, value_name = "FILE", help_heading = "Logging")]
    pub log_file: Option<PathBuf>,

    /// mount(8) helper flags: sloppy, no-mtab, verbose, type (accepted and ignored).
    #[arg(short = 's', hide = true)]
    pub sloppy: bool,
    #[arg(short = 'n', hide = true)]
    pub no_mtab: bool,
    #[arg(short = 'v', hide = true)]
    pub verbose: bool,
    #[arg(short = 't', hide = true)]
    pub fs_type: Option<String>,
    /// mount(8)'s `-f` (fake: do everything but the mount itself), which [`helper_args`]
    /// passes on as `--fake`: the helper checks the options and the config, mounts nothing
    /// and exits 0.
    #[arg(long, hide = true)]
    pub fake: bool,

    /// Upload the files kept under <cache-dir>/*/unsaved/ after failed uploads (each to the key
    /// its .key note names, only while the object is still the version the file was made from:
    /// an object written since is not replaced, and the copy stays there), removing each once
    /// it is on the server, and abort the multipart uploads a stopped s3mount left in
    /// <cache-dir>/*/uploads/; then exit.
    #[arg(long, help_heading = "Recovery")]
    pub recover: bool,

    /// Abort every multipart upload under BUCKET[:PREFIX/] (the only argument; default: the
    /// config's bucket) started more than AGE ago (e.g. 1d, 12h), whoever started it; then
    /// exit. Uploads in progress are younger: choose an AGE longer than any upload takes.
    #[arg(long, value_name = "AGE", value_parser = opts::parse_duration, help_heading = "Recovery")]
    pub abort_stale_uploads: Option<Duration>,

    /// Serve the mount's figures (those of `s3mount status`) in the Prometheus text format at
    /// http://ADDR/metrics, e.g. 127.0.0.1:9464 (default: off).
    #[arg(
        long,
        value_name = "ADDR",
        help_heading = "Monitoring",
        conflicts_with = "no_status"
    )]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Neither count nor publish the figures of `s3mount status` (<cache-dir>/<bucket>/
    /// status.PID.json): `s3mount status` then does not see this mount.
    #[arg(long, help_heading = "Monitoring")]
    pub no_status: bool,

    /// Print the man page (roff) and exit.
    #[arg(long, help_heading = "Help")]
    pub print_man_page: bool,

    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell) and exit.
    #[arg(long, value_name = "SHELL", help_heading = "Help")]
    pub print_completions: Option<clap_complete::Shell>,
}

/// The arguments, with two changes for mount(8): called as `mount.s3mount` or
/// `mount.fuse.s3mount`, the first argument is always the bucket, so a bucket named `status`
/// is passed on as `status:` (the same bucket, no prefix) rather than taken for the command;
/// and `-f` is mount(8)'s fake mode (`mount -f`, which passes it to its helpers as a flag of
/// its own), not `--foreground`, which would mount for real and never return.
pub fn helper_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let helper = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"mount."));
    if helper && args.get(1).is_some_and(|a| a == "status") {
        args[1] = "status:".into();
    }
    if helper {
        // Up to `-o`'s value: an option list that is `-f` is not the flag.
        let mut after_o = false;
        for a in args.iter_mut().skip(1) {
            if !after_o && a == "-f" {
                *a = "--fake".into();
            }
            after_o = a == "-o";
        }
    }
    args
}

/// The commands besides mounting.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what running mounts do: uploads in flight, files in unsaved/, the data cache,
    /// requests, errors and latencies per kind of request.
    Status(StatusArgs),
}

/// `s3mount status [--json] [--cache-dir DIR] [MOUNTPOINT]`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only the mount at MOUNTPOINT (default: every running s3mount of this user).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The --cache-dir the mounts were started with (default: the mounts' default).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// The man page: clap_mangen's, with a synopsis of the forms of the command instead of the
/// list of every flag it makes (which also rendered `-o` as `[-o  ]`).
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    let page = String::from_utf8_lossy(&page).into_owned();
    let synopsis = concat!(
        ".SH SYNOPSIS\n",
        "\\fBs3mount\\fR [\\fIOPTIONS\\fR] [\\fIBUCKET\\fR[:\\fIPREFIX/\\fR]] \\fIMOUNTPOINT\\fR\n",
        ".br\n",
        "\\fBs3mount status\\fR [\\fB\\-\\-json\\fR] [\\fB\\-\\-cache\\-dir\\fR \\fIDIR\\fR] [\\fIMOUNTPOINT\\fR]\n",
        ".br\n",
        "\\fBs3mount \\-\\-recover\\fR [\\fIOPTIONS\\fR]\n",
        ".br\n",
        "\\fBs3mount \\-\\-abort\\-stale\\-uploads\\fR \\fIAGE\\fR [\\fIOPTIONS\\fR] [\\fIBUCKET\\fR[:\\fIPREFIX/\\fR]]\n",
    );
    let page = replace_section(&page, "SYNOPSIS", synopsis)?;
    // The status command's own flags, in this page (clap_mangen would point at a page of its
    // own, s3mount-status(1), that nobody installs).
    let mut cmd = Cli::command();
    let status = cmd
        .find_subcommand_mut("status")
        .ok_or_else(|| std::io::Error::other("no status subcommand"))?
        .clone();
    let about = status
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut options = Vec::new();
    clap_mangen::Man::new(status).render_options_section(&mut options)?;
    let options = String::from_utf8_lossy(&options);
    let options = options
        .lines()
        .filter(|l| !l.starts_with(".ie ") && !l.starts_with(".el ") && !l.starts_with(".SH "))
        .collect::<Vec<_>>()
        .join("\n");
    let section = format!(".SH \"S3MOUNT STATUS\"\n{about}\n{options}\n");
    Ok(replace_section(&page, "SUBCOMMANDS", &section)?.into_bytes())
}

/// `page` with its section `name` (from `.SH NAME` to the next `.SH`, or the end) replaced.
fn replace_section(page: &str, name: &str, with: &str) -> std::io::Result<String> {
    let head = format!(".SH {name}\n");
    let start = page
        .find(&head)
        .ok_or_else(|| std::io::Error::other(format!("the man page has no {name} section")))?;
    let end = page[start + 1..]
        .find(".SH ")
        .map(|e| start + 1 + e)
        .unwrap_or(page.len());
    Ok(format!("{}{with}{}", &page[..start], &page[end..]))
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "s3mount", &mut out);
    out
}

fn parse_mode_arg(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{v:?}: expected an octal mode such as 0644"))
}

/// `BUCKET[:PREFIX/]` → (bucket, prefix).
pub fn split_bucket_spec(spec: &str) -> (String, Option<String>) {
    match spec.split_once(':') {
        Some((b, p)) => (b.to_string(), Some(p.to_string())),
        None => (spec.to_string(), None),
    }
}

/// Flags win over `-o`.
pub fn merged_options(cli: &Cli) -> Result<MountOptions, String> {
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
    o.acl |= cli.acl;
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
        metadata_ttl,
        retry_timeout,
        storage_class
    );
    if o.allow_other && o.allow_root {
        return Err("allow_other and allow_root exclude each other".into());
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_spec() {
        assert_eq!(split_bucket_spec("b"), ("b".into(), None));
        assert_eq!(split_bucket_spec("b:p/"), ("b".into(), Some("p/".into())));
    }

    /// `--threads` outside 1..=64 is refused with the range, not clamped in silence (`--threads
    /// 0` and `--threads 500` mounted with 1 and 64 workers).
    #[test]
    fn threads_out_of_range_are_refused() {
        let parse = |n: &str| Cli::try_parse_from(["s3mount", "--threads", n, "b", "/mnt"]);
        for bad in ["0", "65", "500"] {
            let e = parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("1..=64"), "--threads {bad}: {e}");
        }
        assert_eq!(parse("1").unwrap().threads, 1);
        assert_eq!(parse("64").unwrap().threads, 64);
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
    fn status_is_a_command_and_a_bucket_named_status_is_still_mountable() {
        let c = Cli::try_parse_from(["s3mount", "status"]).expect("parses");
        assert!(matches!(c.command, Some(Command::Status(ref a)) if a.mountpoint.is_none()));
        let c = Cli::try_parse_from(["s3mount", "status", "--json", "/mnt/b"]).expect("parses");
        match c.command {
            Some(Command::Status(a)) => {
                assert!(a.json);
                assert_eq!(a.mountpoint, Some(PathBuf::from("/mnt/b")));
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["s3mount", "status:", "/mnt/b"]).expect("parses");
        assert!(c.command.is_none());
        assert_eq!(c.args, ["status:", "/mnt/b"]);
        assert_eq!(
            split_bucket_spec("status:"),
            ("status".into(), Some("".into()))
        );
        // mount(8) passes the bucket first: never the command there.
        let argv = ["/sbin/mount.fuse.s3mount", "status", "/mnt/b", "-o", "rw"];
        let c = Cli::try_parse_from(helper_args(argv.map(OsString::from))).expect("parses");
        assert!(c.command.is_none());
        assert_eq!(c.args, ["status:", "/mnt/b"]);
        let argv = ["s3mount", "status", "/mnt/b"];
        assert_eq!(
            helper_args(argv.map(OsString::from)),
            argv.map(OsString::from)
        );
        // After a mount's flag, `status` is a bucket again.
        let c = Cli::try_parse_from(["s3mount", "-f", "status", "/mnt/b"]).expect("parses");
        assert!(c.command.is_none());
        assert_eq!(c.args, ["status", "/mnt/b"]);
    }

    #[test]
    fn mount_dash_f_is_fake_for_the_helper_and_foreground_otherwise() {
        // What `mount -f -t fuse.s3mount b /mnt/b -o rw` runs: mount(8)'s fake mode, which must
        // not become --foreground (a real mount that never returns).
        let argv = ["/sbin/mount.fuse.s3mount", "b", "/mnt/b", "-f", "-o", "rw"];
        let c = Cli::try_parse_from(helper_args(argv.map(OsString::from))).expect("parses");
        assert!(c.fake && !c.foreground, "{c:?}");
        assert_eq!(c.args, ["b", "/mnt/b"]);
        // An -o list that happens to read `-f` stays the list.
        let argv = ["/sbin/mount.s3mount", "b", "/mnt/b", "-o", "-f"];
        assert_eq!(
            helper_args(argv.map(OsString::from)),
            argv.map(OsString::from)
        );
        let argv = ["s3mount", "-f", "b", "/mnt/b"];
        let c = Cli::try_parse_from(helper_args(argv.map(OsString::from))).expect("parses");
        assert!(c.foreground && !c.fake);
    }

    #[test]
    fn completions_for_the_packaged_shells() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = String::from_utf8(completions(shell)).expect("text");
            assert!(script.contains("metadata-ttl"), "{shell}: {script}");
            assert!(script.contains("status"), "{shell}");
        }
    }

    #[test]
    fn help_is_generated() {
        let mut cmd = Cli::command();
        let help = cmd.render_long_help().to_string();
        for heading in ["Connection", "Mount", "Cache", "Logging"] {
            assert!(help.contains(heading), "{heading} missing from --help");
        }
        let man = String::from_utf8(man_page().expect("renders")).expect("text");
        assert!(man.contains(".TH s3mount"));
        assert!(man.contains(".SH SYNOPSIS\n\\fBs3mount\\fR [\\fIOPTIONS\\fR]"));
        assert!(man.contains(".SH \"S3MOUNT STATUS\""));
        assert!(!man.contains("SUBCOMMANDS") && !man.contains("s3mount\\-status(1)"));
    }
}
