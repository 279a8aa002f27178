//! The commands that clear what failed uploads, stops and crashes leave: `--recover` and
//! `--abort-stale-uploads`. Both take a mount's connection flags and exit when done.

use std::sync::Arc;
use std::time::Duration;

use s3mount::fs::unsaved;
use s3mount::s3::store::abort_if_open;
use s3mount::s3::{S3Metrics, UploadJournal};

use crate::cli::{merged_options, split_bucket_spec, Cli};
use crate::progress::Progress;
use crate::setup::{default_cache_dir, load_config, make_storage, secure_cache_dir};

/// `println!` that survives a closed stdout ([`crate::progress::out_line`]).
macro_rules! outln {
    ($($arg:tt)*) => { crate::progress::out_line(&format!($($arg)*)) };
}

/// `eprintln!` that survives a closed stderr ([`crate::progress::err_line`]).
macro_rules! errln {
    ($($arg:tt)*) => { crate::progress::err_line(&format!($($arg)*)) };
}

/// `--recover`: abort the multipart uploads stopped mounts left in `<cache-dir>/*/uploads/`,
/// and re-upload what failed uploads left under `<cache-dir>/*/unsaved/` — each only over the
/// version it was made from ([`unsaved::upload_kept`]); one whose object changed since stays.
pub fn recover(cli: &Cli) -> Result<(), String> {
    // It goes through every mount's dir under the cache dir: a bucket or a mount point named
    // after it would seem to narrow it to one, and did nothing.
    if let Some(arg) = cli.args.first() {
        return Err(format!(
            "--recover takes no BUCKET or MOUNTPOINT ({arg:?}): it uploads what every mount left under the cache dir (choose it with --cache-dir)"
        ));
    }
    let o = merged_options(cli)?;
    let config = load_config(&o, None, None)?;
    let metrics = Arc::new(S3Metrics::default());
    let base_storage = make_storage(cli, &o, &config, None, Some(metrics.clone()))?;
    let root = o.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let (mut done, mut failed, mut changed, mut aborted) = (0usize, 0usize, 0usize, 0usize);
    // Copies whose file a running mount still has open (and may still be writing).
    let mut open = 0usize;
    // What is to be uploaded: the client (with its mount's journal), the copy, its note, size.
    let mut pending = Vec::new();
    let mounts = std::fs::read_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    // The same rule as a mount's: the upload journal and anything re-created here stay private.
    secure_cache_dir(&root, o.allow_shared_cache)?;
    for mount_dir in mounts.flatten() {
        if !mount_dir.path().is_dir() {
            continue; // s3mount.log of an older version, or anything else that is not a mount's
        }
        if let Err(e) = secure_cache_dir(&mount_dir.path(), o.allow_shared_cache) {
            errln!("{e}; left alone");
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
                        outln!(
                            "aborted multipart upload {id} of {obj} (left by a stopped s3mount)"
                        );
                    }
                    for (path, why) in &r.kept {
                        errln!("{}: {why}; left in place", path.display());
                    }
                    if r.live > 0 {
                        outln!(
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
                    errln!("{}: {e}", journal_dir.display());
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
                    outln!(
                        "{}: a file that was open when s3mount stopped (maybe incomplete, object unknown); not uploaded",
                        data.display()
                    );
                    continue;
                }
            };
            let Some(note) = note else {
                errln!("{}: no readable .key note; left in place", data.display());
                failed += 1;
                continue;
            };
            let len = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
            pending.push((storage.clone(), data, note, len));
        }
    }
    // Then the uploads, the long part: a bar on a terminal.
    let bytes = pending.iter().map(|p| p.3).sum();
    let mut progress = Progress::new("recover", "files", pending.len() as u64, bytes)
        .with_live_bytes(move || metrics.uploads().iter().map(|u| u.sent).sum());
    for (storage, data, note, len) in pending {
        let obj = &note.obj;
        match unsaved::upload_kept(&storage.bucket(&obj.bucket), &data, &note) {
            Ok(unsaved::Recovered::Uploaded) => {
                progress.say(&format!("uploaded {} -> {obj}", data.display()));
                done += 1;
            }
            Ok(unsaved::Recovered::AlreadyThere) => {
                progress.say(&format!(
                    "{} -> {obj}: the object already holds these bytes; the copy is removed",
                    data.display()
                ));
                done += 1;
            }
            Ok(unsaved::Recovered::Changed { now }) => {
                // Never over what was written since: the copy stays for the user to judge.
                let now = match now {
                    unsaved::Base::Absent => "the object has been removed since".to_string(),
                    unsaved::Base::Version(etag) => format!("the object is now ETag {etag}"),
                    unsaved::Base::Unknown => {
                        "the object changed while it was being uploaded".to_string()
                    }
                };
                progress.warn(&format!(
                    "{} -> {obj}: not uploaded: the copy was made from {}, and {now}; it stays \
                     where it is (compare, then copy it in by hand, or delete it and its .key note)",
                    data.display(),
                    note.base
                ));
                changed += 1;
            }
            Ok(unsaved::Recovered::StillOpen) => {
                // Maybe half-written: its program may be writing it still, through another
                // descriptor, and the mount uploads it at its close.
                progress.warn(&format!(
                    "{} -> {obj}: not uploaded: a running s3mount still has the file open; it \
                     stays where it is (run --recover again once the file is closed)",
                    data.display()
                ));
                open += 1;
            }
            Err(e) => {
                progress.warn(&format!("{} -> {obj}: {e}; left in place", data.display()));
                failed += 1;
            }
        }
        progress.item_done(len);
    }
    drop(progress);
    let mut why = Vec::new();
    if changed > 0 {
        why.push(format!("{changed} whose object changed since"));
    }
    if open > 0 {
        why.push(format!("{open} still open in a running s3mount"));
    }
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({})", why.join(", "))
    };
    let left = failed + changed + open;
    outln!("recover: {done} uploaded, {left} left{why}, {aborted} multipart upload(s) aborted");
    if left > 0 {
        return Err(format!(
            "{left} file(s) could not be uploaded ({changed} because their object changed since, \
             {open} because a running s3mount still has them open)"
        ));
    }
    Ok(())
}

/// `--abort-stale-uploads AGE [BUCKET[:PREFIX/]]`: abort the multipart uploads under the
/// bucket (and prefix) started more than `age` ago.
pub fn abort_stale_uploads(cli: &Cli, age: Duration) -> Result<(), String> {
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
    let storage = make_storage(cli, &o, &config, Some(bucket.clone()), None)?;
    let uploads = storage
        .bucket(&bucket)
        .list_uploads(&config.prefix)
        .map_err(|e| e.to_string())?;
    let cutoff = std::time::SystemTime::now()
        .checked_sub(age)
        .unwrap_or(std::time::UNIX_EPOCH);
    let (mut aborted, mut young, mut failed) = (0usize, 0usize, 0usize);
    let mut stale = Vec::new();
    for u in uploads {
        let obj = s3mount::s3::ObjectRef {
            bucket: bucket.clone(),
            key: u.key.clone(),
        };
        match u.initiated {
            None => {
                errln!(
                    "{obj}: upload {} has no readable start date; left alone",
                    u.upload_id
                );
                failed += 1;
            }
            Some(started) if started > cutoff => young += 1,
            Some(started) => stale.push((obj, u.upload_id, started)),
        }
    }
    let mut progress = Progress::new("abort-stale-uploads", "uploads", stale.len() as u64, 0);
    for (obj, upload_id, started) in stale {
        let when = humantime::format_rfc3339_seconds(started);
        // An upload already gone (completed or aborted meanwhile) counts as aborted.
        match abort_if_open(&storage, &obj, &upload_id) {
            Ok(_) => {
                progress.say(&format!(
                    "aborted multipart upload {upload_id} of {obj} (started {when})"
                ));
                aborted += 1;
            }
            Err(e) => {
                progress.warn(&format!("{obj}: cannot abort upload {upload_id}: {e}"));
                failed += 1;
            }
        }
        progress.item_done(0);
    }
    drop(progress);
    outln!(
        "abort-stale-uploads: {aborted} aborted, {young} younger than {} left, {failed} failed",
        humantime::format_duration(age)
    );
    if failed > 0 {
        return Err(format!("{failed} upload(s) could not be aborted"));
    }
    Ok(())
}
