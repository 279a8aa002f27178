//! `-o opt[,opt…]` mount options, as `mount(8)`, fstab and the peers (s3fs, mount-s3) spell
//! them, and the human forms of sizes (`10G`) and durations (`30s`).
//!
//! Every option maps to a long flag of the same meaning; the command line is parsed once into
//! [`MountOptions`], so the flags and `-o` cannot disagree.

use std::path::PathBuf;
use std::time::Duration;

/// Options that `-o` can set (and the long flags override).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountOptions {
    /// `ro`
    pub read_only: Option<bool>,
    /// `allow_other`
    pub allow_other: bool,
    /// `allow_root`
    pub allow_root: bool,
    /// `default_permissions`: the kernel checks mode bits.
    pub default_permissions: bool,
    /// `uid=N`: owner of files without `x-amz-meta-uid`.
    pub uid: Option<u32>,
    /// `gid=N`
    pub gid: Option<u32>,
    /// `umask=OCTAL`: applied to the default modes.
    pub umask: Option<u32>,
    /// `file_mode=OCTAL`
    pub file_mode: Option<u32>,
    /// `dir_mode=OCTAL`
    pub dir_mode: Option<u32>,
    /// `config=FILE`
    pub config: Option<PathBuf>,
    /// `endpoint=URL`
    pub endpoint: Option<String>,
    /// `region=R`
    pub region: Option<String>,
    /// `profile=NAME`
    pub profile: Option<String>,
    /// `cache_dir=DIR`
    pub cache_dir: Option<PathBuf>,
    /// `cache_size=SIZE`
    pub cache_size: Option<u64>,
    /// `metadata_ttl=DURATION`
    pub metadata_ttl: Option<Duration>,
    /// `storage_class=CLASS`: of the files the mount creates.
    pub storage_class: Option<String>,
    /// `retry_timeout=DURATION`: how long a request is retried while the server fails.
    pub retry_timeout: Option<Duration>,
    /// `allow_insecure_config`
    pub allow_insecure_config: bool,
    /// `force_path_style`
    pub force_path_style: bool,
    /// `allow_shared_cache`: use the cache dir as it is, even if others can get in.
    pub allow_shared_cache: bool,
    /// `acl` (`noacl` undoes it): POSIX ACLs (`--acl`, [`crate::fs::acl`]).
    pub acl: bool,
    /// `noexec` (`exec` undoes it): programs in the mount cannot be run, as on a local disk
    /// mounted so; a generic mount flag, so without a long flag of its own.
    pub noexec: bool,
    /// `remount` (`mount -o remount,ro DIR`): change the flags of the mount at DIR, mount
    /// nothing ([`crate::kernel_mount`]).
    pub remount: bool,
}

/// Options mount(8) and systemd pass that only matter to them, and the generic flags that
/// mean nothing here (the mount is always `nodev,nosuid,noatime`; a file is uploaded at its
/// close whatever `sync` says). mount(8) hands the helper every generic flag of an fstab line
/// (`noatime,nodiratime` is a common habit), so refusing one fails the whole mount.
const IGNORED: &[&str] = &[
    "_netdev",
    "nofail",
    "noauto",
    "auto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "defaults",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "async",
    "sync",
    "dirsync",
    "mand",
    "nomand",
    "silent",
    "loud",
    "iversion",
    "noiversion",
];

/// The kernel's own FUSE options, which `/proc/mounts` shows and mount(8) hands back to the
/// helper with `-o remount` (`user_id=0,group_id=0`): s3mount sets them itself.
const KERNEL_FUSE: &[&str] = &[
    "user_id", "group_id", "rootmode", "fd", "max_read", "blksize",
];

impl MountOptions {
    /// Parse one `-o` argument (comma-separated) into `self`.
    pub fn parse_into(&mut self, list: &str) -> Result<(), String> {
        for opt in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (opt, None),
            };
            let need = |what: &str| -> Result<&str, String> {
                value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("-o {name}: needs a value ({what})"))
            };
            let flag = || -> Result<(), String> {
                match value {
                    None => Ok(()),
                    Some(_) => Err(format!("-o {name}: takes no value")),
                }
            };
            match name {
                "ro" => {
                    flag()?;
                    self.read_only = Some(true)
                }
                "rw" => {
                    flag()?;
                    self.read_only = Some(false)
                }
                "allow_other" => {
                    flag()?;
                    self.allow_other = true
                }
                "allow_root" => {
                    flag()?;
                    self.allow_root = true
                }
                "default_permissions" => {
                    flag()?;
                    self.default_permissions = true
                }
                "allow_insecure_config" => {
                    flag()?;
                    self.allow_insecure_config = true
                }
                "allow_shared_cache" => {
                    flag()?;
                    self.allow_shared_cache = true
                }
                "acl" | "noacl" => {
                    flag()?;
                    self.acl = name == "acl"
                }
                "remount" => {
                    flag()?;
                    self.remount = true
                }
                "noexec" | "exec" => {
                    flag()?;
                    self.noexec = name == "noexec"
                }
                "force_path_style" | "use_path_request_style" => {
                    flag()?;
                    self.force_path_style = true
                }
                "uid" => self.uid = Some(parse_id(name, need("a number")?)?),
                "gid" => self.gid = Some(parse_id(name, need("a number")?)?),
                "umask" => self.umask = Some(parse_octal(name, need("octal, e.g. 022")?)?),
                "file_mode" => self.file_mode = Some(parse_octal(name, need("octal, e.g. 0644")?)?),
                "dir_mode" => self.dir_mode = Some(parse_octal(name, need("octal, e.g. 0755")?)?),
                "config" => self.config = Some(PathBuf::from(need("a file")?)),
                "endpoint" | "url" => self.endpoint = Some(need("a URL")?.to_string()),
                "region" => self.region = Some(need("a region")?.to_string()),
                "profile" => self.profile = Some(need("a profile name")?.to_string()),
                "cache_dir" | "cache" => self.cache_dir = Some(PathBuf::from(need("a directory")?)),
                "cache_size" => self.cache_size = Some(parse_size(need("a size, e.g. 10G")?)?),
                "metadata_ttl" => {
                    self.metadata_ttl = Some(parse_duration(need("a duration, e.g. 30s")?)?)
                }
                "retry_timeout" => {
                    self.retry_timeout = Some(parse_duration(need("a duration, e.g. 30s")?)?)
                }
                "storage_class" => {
                    self.storage_class =
                        Some(parse_storage_class(need("a class, e.g. STANDARD_IA")?)?)
                }
                n if IGNORED.contains(&n)
                    || KERNEL_FUSE.contains(&n)
                    || n.starts_with("x-systemd.")
                    || n.starts_with("comment=") => {}
                other => return Err(format!("-o {other}: unknown mount option")),
            }
        }
        Ok(())
    }
}

fn parse_id(name: &str, v: &str) -> Result<u32, String> {
    v.parse()
        .map_err(|_| format!("-o {name}={v}: expected a number"))
}

fn parse_octal(name: &str, v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("-o {name}={v}: expected an octal mode such as 0644"))
}

/// `4096`, `512K`, `10M`, `1.5G`, `1T`, `0`: binary units whatever the spelling (`K`, `KB` and
/// `KiB` are all 1024), any case, a trailing `B` optional, fractions exact.
pub fn parse_size(v: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(v.trim())
        .map_err(|e| match e {
            parse_size::Error::PosOverflow => format!("{v:?}: size too large"),
            _ => format!("{v:?}: expected a size such as 512M or 10G"),
        })
}

/// An S3 storage class as S3 spells them (`STANDARD_IA`, `INTELLIGENT_TIERING`, `GLACIER_IR`):
/// upper-case letters, digits and `_`. Which ones a server takes is the server's business (a
/// class it refuses fails the upload: `close` gives EIO and the bytes stay under `unsaved/`).
pub fn parse_storage_class(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_uppercase())
        && v.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{v:?}: expected a storage class as S3 spells it, such as STANDARD_IA or GLACIER_IR"
        ))
    }
}

/// The longest duration an option takes: a thousand years, far past any mount's life (a TTL
/// meant as "for ever" is served), and far below what the clocks hold — the mount adds a TTL
/// to the time now for every attribute it keeps, which panics past the clock's range.
pub const MAX_DURATION: Duration = Duration::from_secs(1000 * 366 * 86_400);

/// `30s`, `500ms`, `5m`, `1h`, or plain seconds (`1.5`); at most [`MAX_DURATION`].
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let s = v.trim();
    let d = if let Ok(secs) = s.parse::<f64>() {
        Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{v:?}: expected a duration such as 30s"))?
    } else {
        humantime::parse_duration(s)
            .map_err(|_| format!("{v:?}: expected a duration such as 30s or 500ms"))?
    };
    if d > MAX_DURATION {
        return Err(format!(
            "{v:?}: at most {} seconds (a thousand years)",
            MAX_DURATION.as_secs()
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_parses() {
        let mut o = MountOptions::default();
        o.parse_into("ro,allow_other,allow_root,default_permissions,uid=1000,gid=100,umask=022,file_mode=0640,dir_mode=0750,config=/etc/s3mount/b.yaml,endpoint=http://h:9000,region=eu-west-1,profile=p,cache_dir=/var/cache/x,cache_size=10G,metadata_ttl=30s,retry_timeout=2m,storage_class=STANDARD_IA,allow_shared_cache,_netdev,nofail,noauto,x-systemd.automount")
            .unwrap();
        assert_eq!(o.read_only, Some(true));
        assert!(o.allow_other && o.allow_root && o.default_permissions);
        assert_eq!(
            (o.uid, o.gid, o.umask),
            (Some(1000), Some(100), Some(0o022))
        );
        assert_eq!((o.file_mode, o.dir_mode), (Some(0o640), Some(0o750)));
        assert_eq!(o.config, Some(PathBuf::from("/etc/s3mount/b.yaml")));
        assert_eq!(o.endpoint.as_deref(), Some("http://h:9000"));
        assert_eq!(o.region.as_deref(), Some("eu-west-1"));
        assert_eq!(o.cache_size, Some(10 << 30));
        assert_eq!(o.metadata_ttl, Some(Duration::from_secs(30)));
        assert_eq!(o.retry_timeout, Some(Duration::from_secs(120)));
        assert_eq!(o.storage_class.as_deref(), Some("STANDARD_IA"));
        assert!(o.allow_shared_cache);
        o.parse_into("rw").unwrap();
        assert_eq!(o.read_only, Some(false));
        o.parse_into("acl").unwrap();
        assert!(o.acl);
        o.parse_into("noacl").unwrap();
        assert!(!o.acl);
    }

    /// What mount(8) (through mount.fuse) handed the helper for an fstab line with
    /// `noatime,nodiratime,lazytime,dirsync,strictatime,_netdev,config=/x`: each generic flag
    /// is accepted. `nodiratime` used to fail the mount ("unknown mount option").
    #[test]
    fn generic_flags_from_mount8_are_accepted() {
        let mut o = MountOptions::default();
        o.parse_into("rw,noatime,nodiratime,lazytime,dirsync,strictatime,config=/x,dev,suid")
            .unwrap();
        o.parse_into("diratime,nostrictatime,nolazytime,norelatime,mand,nomand,iversion,noiversion,silent,loud,owner,group")
            .unwrap();
        assert_eq!(o.config, Some(PathBuf::from("/x")));
        // A security flag this mount cannot honour is refused, not ignored.
        let err = MountOptions::default()
            .parse_into("nosymfollow")
            .unwrap_err();
        assert!(err.contains("unknown mount option"), "{err}");
    }

    #[test]
    fn bad_options_are_named() {
        for (bad, says) in [
            ("colour=red", "unknown mount option"),
            ("uid=abc", "expected a number"),
            ("umask=9", "octal"),
            ("cache_size=lots", "size"),
            ("metadata_ttl=soon", "duration"),
            ("retry_timeout=", "needs a value"),
            ("storage_class=standard_ia", "storage class"),
            ("storage_class=GLACIER IR", "storage class"),
            ("ro=1", "takes no value"),
            ("config=", "needs a value"),
        ] {
            let err = MountOptions::default().parse_into(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert!(parse_size("-1G").is_err());
        // Every form the README shows, and the spellings of one unit.
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        for one_mib in ["1M", "1m", "1MB", "1MiB", "1 mib", " 1M "] {
            assert_eq!(parse_size(one_mib), Ok(1 << 20), "{one_mib}");
        }
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        let err = parse_size("lots").unwrap_err();
        assert!(err.contains("expected a size such as 512M or 10G"), "{err}");
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-3").is_err());
    }

    #[test]
    fn durations_past_any_clock_are_refused() {
        // `Instant::now() + ttl` (every attribute's expiry) panics when it overflows the clock:
        // a TTL meant as "for ever" must not take the mount down at its first lookup.
        let ten_years = 10 * 365 * 86_400;
        assert_eq!(
            parse_duration(&format!("{ten_years}")),
            Ok(Duration::from_secs(ten_years))
        );
        for huge in ["1e19", "9223372036854775807", "500000000000y"] {
            let err = parse_duration(huge).unwrap_err();
            assert!(err.contains("at most"), "{huge}: {err}");
        }
        let bound = parse_duration(&MAX_DURATION.as_secs().to_string()).expect("the bound");
        assert!(std::time::Instant::now().checked_add(bound).is_some());
    }
}
