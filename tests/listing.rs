//! Directory listings: a fresh listing answers lookups, and `readdir` of a directory of more
//! than one page, without asking the server again (a directory of one page is listed again by
//! each `ls`), changes made through the mount show at once, changes made behind it show once
//! the listing expires, and a listing that took long is trusted as long as it took. A proxy
//! in front of the server counts the LIST requests, so every claim is checked on the wire.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::proxy::{Fault, Proxy, Rule};
use common::{server, skip_on, Mount, ServerLimit};
use s3mount::s3::{ObjectRef, PutOptions, RequestBody};

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The query parameters of a request target.
fn params(target: &str) -> Vec<&str> {
    target
        .split_once('?')
        .map(|(_, q)| q.split('&').collect())
        .unwrap_or_default()
}

/// A LIST of the directory `d/` (its contents, not a one-key lookup probe).
fn is_dir_list(method: &str, target: &str) -> bool {
    let p = params(target);
    method == "GET"
        && p.contains(&"list-type=2")
        && p.contains(&"prefix=d%2F")
        && !p.contains(&"max-keys=1")
}

fn dir_lists(proxy: &Proxy) -> usize {
    proxy
        .seen()
        .iter()
        .filter(|s| is_dir_list(&s.method, &s.target))
        .count()
}

/// A mount of `bucket` with `args`, through a proxy that records every request.
fn counted_mount(bucket: &str, args: &[&str]) -> (Proxy, Mount) {
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::with_args(&server().via(proxy.endpoint()), bucket, args);
    (proxy, mount)
}

fn put(bucket: &str, key: &str, body: &[u8]) {
    let obj = ObjectRef {
        bucket: bucket.to_string(),
        key: key.to_string(),
    };
    server()
        .storage_in(bucket)
        .bucket(&obj.bucket)
        .put(&obj.key, RequestBody::Bytes(body), &PutOptions::default())
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// The 1001 keys of a directory `d/` listed in two pages: `a`, `b`, `c` and 998 fillers.
fn two_pages() -> (Vec<String>, BTreeSet<String>) {
    let mut names: BTreeSet<String> = (0..998).map(|i| format!("f{i:04}")).collect();
    names.extend(["a", "b", "c"].map(str::to_string));
    let keys = names.iter().map(|n| format!("d/{n}")).collect();
    (keys, names)
}

#[test]
fn a_fresh_listing_answers_readdir_and_follows_changes_made_through_the_mount() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let bucket = server().fresh_bucket("listing-fresh");
    // More than one page: `ls` is answered from the listing while it is fresh.
    let (keys, mut want) = two_pages();
    put_many(&bucket, &keys);
    let (proxy, mount) = counted_mount(&bucket, &["--metadata-ttl", "60"]);
    let d = mount.join("d");
    assert_eq!(names(&d), want);
    let first = dir_lists(&proxy);
    assert_eq!(first, 2, "two pages of d/: {:?}", proxy.seen());

    // Again, with `ls -l` (readdirplus + stat of each entry): no listing; each small file,
    // which may be a symlink or a special file, is HEADed once (in rounds), and a second
    // `ls -l` asks nothing at all.
    let before = proxy.seen().len();
    let out = common::sh(&format!("ls -l {}", d.display()));
    assert!(out.status.success(), "ls -l: {out:?}");
    let seen = &proxy.seen()[before..];
    assert!(
        seen.iter().all(|s| s.method == "HEAD") && seen.len() <= keys.len(),
        "{seen:?}"
    );
    let before = proxy.seen().len();
    let out = common::sh(&format!("ls -l {}", d.display()));
    assert!(out.status.success(), "ls -l: {out:?}");
    assert_eq!(names(&d), want);
    assert_eq!(
        proxy.seen()[before..].len(),
        0,
        "{:?}",
        &proxy.seen()[before..]
    );

    // Changes through the mount show in the cached listing at once.
    std::fs::write(d.join("new"), b"n").expect("create d/new");
    std::fs::remove_file(d.join("a")).expect("rm d/a");
    std::fs::rename(d.join("b"), d.join("b2")).expect("mv d/b d/b2");
    std::fs::create_dir(d.join("sub")).expect("mkdir d/sub");
    for gone in ["a", "b"] {
        want.remove(gone);
    }
    want.extend(["b2", "new", "sub"].map(str::to_string));
    assert_eq!(names(&d), want);
    assert_eq!(dir_lists(&proxy), first, "{:?}", proxy.seen());

    // Ordered like a listing, whatever the table's order.
    let out = common::sh(&format!("ls -f {}", d.display()));
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l != "." && *l != "..")
        .map(str::to_string)
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);

    // A change behind the mount is not seen while the listing is trusted...
    put(&bucket, "d/behind", b"b");
    assert!(!names(&d).contains("behind"));
    drop(mount);

    // ...and is seen by a mount whose listings expire at once.
    let mount = Mount::with_args(
        &server().via(proxy.endpoint()),
        &bucket,
        &["--metadata-ttl", "0"],
    );
    want.insert("behind".into());
    let t0 = Instant::now();
    assert_eq!(names(&mount.join("d")), want);
    // A listing is trusted for as long as it took, even with a TTL of 0.
    std::thread::sleep(t0.elapsed() + Duration::from_millis(100));
    put(&bucket, "d/later", b"l");
    assert!(names(&mount.join("d")).contains("later"));
}

#[test]
fn ls_of_a_directory_of_one_page_shows_changes_behind_the_mount_at_once() {
    // Listed again by each `ls`, as s3fs and Mountpoint list: one request; lookups are still
    // answered from the listing while it is fresh.
    let bucket = server().fresh_bucket("listing-small");
    for k in ["d/a", "d/b"] {
        put(&bucket, k, b"x");
    }
    let (proxy, mount) = counted_mount(&bucket, &["--metadata-ttl", "60"]);
    let d = mount.join("d");
    assert_eq!(names(&d), set(&["a", "b"]));
    let lists = dir_lists(&proxy);
    put(&bucket, "d/theirs", b"t");
    assert_eq!(names(&d), set(&["a", "b", "theirs"]));
    assert_eq!(dir_lists(&proxy), lists + 1, "{:?}", proxy.seen());
    let before = proxy.seen().len();
    std::fs::metadata(d.join("a")).expect("stat d/a");
    assert_eq!(proxy.seen().len(), before, "{:?}", &proxy.seen()[before..]);
}

#[test]
fn a_listing_that_took_long_is_trusted_as_long_as_it_took() {
    let bucket = server().fresh_bucket("listing-slow");
    put(&bucket, "d/a", b"x");
    let (proxy, mount) = counted_mount(&bucket, &["--metadata-ttl", "1"]);
    let d = mount.join("d");
    std::fs::metadata(&d).expect("stat d");
    // Every listing of d/ now takes 6 s.
    proxy.add(Rule::new(
        "GET",
        "list-type=2&prefix=d%2F",
        Fault::Delay(Duration::from_secs(6)),
    ));
    let t0 = Instant::now();
    assert_eq!(names(&d), set(&["a"]));
    assert!(
        t0.elapsed() >= Duration::from_secs(6),
        "the delay was not applied"
    );
    let lists = dir_lists(&proxy);
    assert_eq!(lists, 1, "{:?}", proxy.seen());
    // Past the 1 s TTL, but within the 6 s the listing took: a lookup asks nothing.
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::metadata(d.join("a")).expect("stat d/a");
    assert_eq!(dir_lists(&proxy), lists, "{:?}", proxy.seen());
}

/// Put `keys` (empty bodies) with a few threads.
fn put_many(bucket: &str, keys: &[String]) {
    std::thread::scope(|s| {
        for chunk in keys.chunks(keys.len().div_ceil(8)) {
            s.spawn(move || {
                for k in chunk {
                    put(bucket, k, b"");
                }
            });
        }
    });
}

#[test]
fn a_long_listing_is_handed_out_page_by_page_and_a_directory_on_a_later_page_shadows_a_file() {
    if skip_on(ServerLimit::FileBesideDirectory) {
        return;
    }
    let bucket = server().fresh_bucket("listing-pages");
    // 999 files and `x` fill the first page (1000 keys); the directory `x/` opens the second.
    let mut keys: Vec<String> = (0..999).map(|i| format!("d/a{i:04}")).collect();
    keys.push("d/x".into());
    keys.push("d/x/y".into());
    keys.push("d/z".into());
    put_many(&bucket, &keys);
    let (proxy, mount) = counted_mount(&bucket, &[]);
    let d = mount.join("d");
    std::fs::metadata(&d).expect("stat d");
    // The second page of d/ comes 8 s late.
    proxy.add(Rule::new(
        "GET",
        "continuation-token=",
        Fault::Delay(Duration::from_secs(8)),
    ));
    let t0 = Instant::now();
    let mut it = std::fs::read_dir(&d).expect("opendir d");
    let first = it.next().expect("an entry").expect("readdir");
    let first_at = t0.elapsed();
    let mut all: Vec<(String, bool)> = vec![(
        first.file_name().to_string_lossy().into_owned(),
        first.file_type().expect("type").is_dir(),
    )];
    for e in it {
        let e = e.expect("readdir");
        all.push((
            e.file_name().to_string_lossy().into_owned(),
            e.file_type().expect("type").is_dir(),
        ));
    }
    let total = t0.elapsed();
    assert!(
        total >= Duration::from_secs(8),
        "the second page was not delayed"
    );
    assert!(
        first_at < Duration::from_secs(8),
        "the first entries waited for the whole listing ({first_at:?})"
    );
    assert_eq!(proxy.faults(), 1, "{:?}", proxy.seen());
    // Every name once; x is the directory.
    let names: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), all.len(), "a name listed twice");
    assert_eq!(all.len(), 1001, "999 a*, x and z");
    assert!(
        all.contains(&("x".to_string(), true)),
        "x is not a directory"
    );
    assert!(all.contains(&("z".to_string(), false)));
    assert!(d.join("x").is_dir());
    assert!(d.join("x/y").is_file());
}

#[test]
fn a_directory_emptied_through_the_mount_stays_until_rmdir() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let bucket = server().fresh_bucket("listing-implicit");
    put(&bucket, "d/a", b"a");
    put(&bucket, "d/b", b"b");
    put(&bucket, "e/c", b"c");
    // TTL 0: every lookup asks the server, as after an `rm -r` that took longer than the TTL.
    let mount = Mount::with_args(server(), &bucket, &["--metadata-ttl", "0"]);
    let d = mount.join("d");
    assert_eq!(names(&d), set(&["a", "b"]));
    std::fs::remove_file(d.join("a")).expect("rm d/a");
    std::fs::remove_file(d.join("b")).expect("rm d/b");
    std::fs::rename(mount.join("e/c"), mount.join("c")).expect("mv e/c c");
    // Without a marker the directories would be gone from the server with their last keys.
    let storage = server().storage_in(&bucket);
    let keys = |p: &str| -> Vec<String> {
        let (objects, _) = storage.bucket(&bucket).list_all(p, None).expect("list");
        objects.into_iter().map(|o| o.key).collect()
    };
    assert_eq!(keys("d/"), vec!["d/"]);
    assert_eq!(keys("e/"), vec!["e/"]);
    assert!(d.is_dir() && mount.join("e").is_dir());
    assert_eq!(names(&d), set(&[]));
    std::fs::remove_dir(&d).expect("rmdir d");
    assert!(!d.exists());
    assert_eq!(keys("d/"), Vec::<String>::new());
    assert_eq!(
        std::fs::remove_dir(&d).map_err(|e| e.raw_os_error()),
        Err(Some(libc::ENOENT)),
        "a second rmdir"
    );
}

#[test]
fn emptying_a_directory_keeps_its_marker_and_metadata() {
    if skip_on(ServerLimit::MarkerObjects) {
        return;
    }
    let bucket = server().fresh_bucket("listing-marker");
    let mount = Mount::with_args(server(), &bucket, &["--metadata-ttl", "0"]);
    let d = mount.join("d");
    std::fs::create_dir(&d).expect("mkdir d");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod d");
    std::fs::write(d.join("f"), b"f").expect("write d/f");
    drop(mount);
    // A new mount knows d only from the root listing, not whether it has a marker.
    let mount = Mount::with_args(server(), &bucket, &["--metadata-ttl", "0"]);
    let d = mount.join("d");
    assert_eq!(names(mount.path()), set(&["d"]));
    std::fs::remove_file(d.join("f")).expect("rm d/f");
    let mode = std::fs::metadata(&d).expect("stat d").permissions().mode();
    assert_eq!(mode & 0o7777, 0o700, "the directory's mode was lost");
}
