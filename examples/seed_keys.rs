//! Seed a bucket with objects fast, through the library (not through a mount): parallel
//! PUTs of `PREFIX/k000000` … (one directory) or `PREFIX/d0000/k000000` … (several), empty or
//! of BYTES bytes each, for `bench/scale.sh`. Keys already there are not sent again, so a
//! repeated run costs one listing.
//!
//!   cargo run --release --example seed_keys -- BUCKET PREFIX DIRS KEYS_PER_DIR [THREADS [BYTES]]
//!
//! The server and credentials come from the environment as for the mount (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`). Prints the number of keys under
//! PREFIX/ once done.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use s3mount::config::LoadRequest;
use s3mount::s3::types::PutOptions;
use s3mount::s3::{ObjectStore, RequestBody};
use s3mount::{Config, Storage};

/// PUTs in flight by default: enough to keep a local server's cores busy; each is a small
/// request, so the client's cost is the round trip, not the bytes.
const DEFAULT_THREADS: usize = 64;

fn main() -> ExitCode {
    match run() {
        Ok(n) => {
            println!("{n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seed_keys: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("{what}: not a number"))
}

fn run() -> Result<usize, String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: seed_keys BUCKET PREFIX DIRS KEYS_PER_DIR [THREADS [BYTES]]".into());
    }
    let (bucket_name, prefix) = (&args[1], args[2].trim_end_matches('/'));
    let dirs: usize = arg(&args, 3, "DIRS")?;
    let per_dir: usize = arg(&args, 4, "KEYS_PER_DIR")?;
    let threads: usize = if args.len() > 5 {
        arg(&args, 5, "THREADS")?
    } else {
        DEFAULT_THREADS
    };
    let bytes: usize = if args.len() > 6 {
        arg(&args, 6, "BYTES")?
    } else {
        0
    };
    let content = vec![b'x'; bytes];
    let config = Config::load(&LoadRequest::from_process_env(None)).map_err(|e| e.to_string())?;
    let storage = Storage::new(&config).map_err(|e| e.to_string())?;
    // An existing bucket (ours from an earlier run) is fine; anything else shows at the PUTs.
    let _ = storage.create_bucket(bucket_name);
    let bucket = storage.bucket(bucket_name);
    let listed = |bucket: &s3mount::s3::Bucket| -> Result<HashSet<String>, String> {
        let (objects, _) = bucket
            .list_all(&format!("{prefix}/"), None)
            .map_err(|e| e.to_string())?;
        Ok(objects.into_iter().map(|o| o.key).collect())
    };
    let have = listed(&bucket)?;
    let mut wanted = Vec::with_capacity(dirs * per_dir);
    for d in 0..dirs {
        for k in 0..per_dir {
            let key = if dirs == 1 {
                format!("{prefix}/k{k:06}")
            } else {
                format!("{prefix}/d{d:04}/k{k:06}")
            };
            if !have.contains(&key) {
                wanted.push(key);
            }
        }
    }
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = wanted.get(i) else { break };
                let body = if bytes == 0 {
                    RequestBody::Empty
                } else {
                    RequestBody::Bytes(&content)
                };
                if let Err(e) = bucket.put(key, body, &PutOptions::default()) {
                    let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                    f.get_or_insert_with(|| format!("{key}: {e}"));
                    break;
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(listed(&bucket)?.len())
}
