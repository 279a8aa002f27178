//! Names and directories: lookup, getattr, readdir, mkdir, rmdir, symlinks, the root.

use std::time::Duration;

use super::*;
use crate::fs::attr::{S_IFDIR, S_IFLNK};

const LONG: Duration = Duration::from_secs(3600);

/// (name, kind) of each entry, sorted by name.
fn kinds(entries: &[DirEntry]) -> Vec<(&str, NodeKind)> {
    let mut out: Vec<_> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.attrs.kind))
        .collect();
    out.sort_by_key(|(name, _)| *name);
    out
}

// ---- lookup / stat --------------------------------------------------------------------------

#[test]
fn lookup_asks_head_and_list_and_a_directory_shadows_a_file() {
    let fx = fx();
    fx.put_behind("f", b"12345");
    fx.put_behind("both", b"file");
    fx.put_behind("both/inside", b"x");
    fx.put_behind("implicit/deep/k", b"x");
    fx.store.reset_counts();

    let f = fx.stat("f").unwrap();
    assert_eq!((f.kind, f.size), (NodeKind::File, 5));
    assert_eq!(fx.count(Operation::HeadObject), 1);
    assert_eq!(fx.count(Operation::ListObjectsV2), 1);

    assert_eq!(fx.stat("both").unwrap().kind, NodeKind::Dir);
    assert_eq!(fx.stat("implicit").unwrap().kind, NodeKind::Dir);
    assert_eq!(fx.stat("implicit/deep").unwrap().kind, NodeKind::Dir);
    assert_eq!(fx.ls("").unwrap(), ["both", "f", "implicit"]);
    assert_eq!(fx.ls("both").unwrap(), ["inside"]);
    assert_eq!(errno(fx.stat("missing")), libc::ENOENT);
    assert_eq!(errno(fx.stat("f/below")), libc::ENOTDIR);
}

#[test]
fn size_is_content_length_and_mtime_is_the_metadata_else_last_modified() {
    let fx = fx();
    fx.store.set_time(Some(at(1_600_000_000)));
    fx.put_behind("plain", b"abc");
    fx.store.put_behind_with(
        BUCKET,
        "stamped",
        b"abcdef".to_vec(),
        &meta(&[("mtime", "1700000000.5")]),
        &[],
    );
    let plain = fx.stat("plain").unwrap();
    assert_eq!((plain.size, plain.mtime), (3, at(1_600_000_000)));
    let stamped = fx.stat("stamped").unwrap();
    assert_eq!(stamped.size, 6);
    assert_eq!(
        stamped.mtime,
        at(1_700_000_000) + Duration::from_millis(500)
    );
}

#[test]
fn within_the_ttl_lookups_send_nothing_and_misses_ask_again() {
    let fx = setup().ttl(LONG).mount();
    fx.put_behind("f", b"1");
    fx.stat("f").unwrap();
    assert_eq!(errno(fx.stat("nope")), libc::ENOENT);
    fx.store.reset_counts();
    fx.stat("f").unwrap();
    fx.getattr("f").unwrap();
    assert_eq!(fx.store.total_requests(), 0, "attributes are trusted");
    assert_eq!(errno(fx.stat("nope")), libc::ENOENT);
    assert_eq!(
        (
            fx.count(Operation::HeadObject),
            fx.count(Operation::ListObjectsV2)
        ),
        (1, 1),
        "a miss is asked again: another client may have made the name since"
    );

    // Once the TTL is over (here: none), the server is asked again.
    let fx = fx.remount();
    fx.stat("f").unwrap();
    fx.store.reset_counts();
    fx.put_behind("nope", b"now");
    assert_eq!(fx.stat("nope").unwrap().size, 3);
    assert!(fx.count(Operation::HeadObject) >= 1);
}

// ---- readdir --------------------------------------------------------------------------------

#[test]
fn readdir_lists_every_page_and_a_fresh_listing_answers_lookups() {
    let fx = setup().ttl(LONG).mount();
    let names: Vec<String> = (0..2500).map(|i| format!("k{i:04}")).collect();
    for n in &names {
        fx.put_behind(&format!("big/{n}"), b"");
    }
    fx.store.reset_counts();
    let listed = fx.ls("big").unwrap();
    assert_eq!(listed, names, "every page, in order");
    assert_eq!(
        fx.count(Operation::ListObjectsV2),
        1 + 3,
        "the lookup, then 3 pages"
    );
    assert_eq!(
        fx.count(Operation::HeadObject),
        1,
        "only the lookup's: over 1 page, no HEAD per entry"
    );

    fx.store.reset_counts();
    assert_eq!(fx.ls("big").unwrap().len(), 2500);
    assert_eq!(
        fx.store.total_requests(),
        0,
        "answered from the fresh listing"
    );
    // Small enough to be a symlink or a special file: HEADed at its first lookup, with the
    // next such files (a window of `listing_head_limit`, 512), not one by one, not all.
    assert_eq!(fx.stat("big/k1234").unwrap().kind, NodeKind::File);
    assert_eq!(fx.count(Operation::HeadObject), 512);
    fx.store.reset_counts();
    assert_eq!(fx.stat("big/k1745").unwrap().kind, NodeKind::File);
    assert_eq!(fx.stat("big/k1300").unwrap().kind, NodeKind::File);
    assert_eq!(fx.store.total_requests(), 0, "in the window already HEADed");
    assert_eq!(fx.stat("big/k2000").unwrap().kind, NodeKind::File);
    assert_eq!(fx.count(Operation::HeadObject), 500, "k2000 to the end");
    fx.store.reset_counts();
    assert_eq!(errno(fx.stat("big/none")), libc::ENOENT);
    assert_eq!(
        fx.store.total_requests(),
        1,
        "a name the listing lacks is asked of the server (one LIST of the name)"
    );

    // Changes through the mount show at once, still without a request to list.
    fx.put("big/new", b"n").unwrap();
    fx.unlink("big/k0000").unwrap();
    fx.store.reset_counts();
    let listed = fx.ls("big").unwrap();
    assert!(listed.contains(&"new".to_string()));
    assert!(!listed.contains(&"k0000".to_string()));
    assert_eq!(fx.count(Operation::ListObjectsV2), 0);
}

#[test]
fn readdir_heads_small_directories_so_ls_l_shows_what_stat_will() {
    let fx = fx();
    let m = meta(&[("mode", &(0o100600).to_string()), ("uid", "1234")]);
    fx.store
        .put_behind_with(BUCKET, "small/a", b"a".to_vec(), &m, &[]);
    fx.put_behind("small/b", b"bb");
    let entries = fx.ls_entries("small").unwrap();
    let a = entries.iter().find(|e| e.name == "a").unwrap();
    assert_eq!((a.attrs.perm, a.attrs.uid), (0o600, 1234));
    let b = entries.iter().find(|e| e.name == "b").unwrap();
    assert_eq!((b.attrs.perm, b.attrs.size), (0o644, 2));

    // Over the limit: no HEAD per entry, defaults until looked up by name.
    let fx = setup_over(fx.store.clone())
        .opts(|o| o.listing_head_limit = 1)
        .mount();
    fx.store.reset_counts();
    let entries = fx.ls_entries("small").unwrap();
    assert_eq!(
        fx.count(Operation::HeadObject),
        1,
        "only the lookup of `small`"
    );
    let a = entries.iter().find(|e| e.name == "a").unwrap();
    assert_eq!(
        a.attrs.perm, 0o644,
        "the default while the listing is trusted"
    );
    assert_eq!(fx.remount().stat("small/a").unwrap().perm, 0o600);
}

#[test]
fn files_that_can_only_be_regular_are_headed_at_their_first_lookup_not_by_readdir() {
    // A listing trusted for a while, as in a mount.
    let fx = setup().ttl(Duration::from_secs(60)).mount();
    let private = meta(&[("mode", &(0o100600).to_string()), ("uid", "1234")]);
    let link = meta(&[("mode", &(0o120777).to_string())]);
    // Big enough to be nothing but regular files: no HEAD before readdir answers.
    for name in ["big1", "big2", "big3"] {
        fx.store
            .put_behind_with(BUCKET, &format!("d/{name}"), vec![7; 5000], &private, &[]);
    }
    // Small enough to be a symlink (its target) or a special file: HEADed, as before.
    fx.store
        .put_behind_with(BUCKET, "d/link", b"big1".to_vec(), &link, &[]);
    fx.store.reset_counts();
    let entries = fx.ls_entries("d").unwrap();
    assert_eq!(
        fx.count(Operation::HeadObject),
        2,
        "`d` and `link`, none of the big files"
    );
    let link_entry = entries.iter().find(|e| e.name == "link").unwrap();
    assert_eq!(
        link_entry.attrs.kind,
        NodeKind::Symlink,
        "its type from its HEAD"
    );
    let ino = |n: &str| entries.iter().find(|e| e.name == n).unwrap().ino;
    // `readdirplus` hands the big files out for the kernel not to keep.
    let deferred = |n: &str| {
        let t = fx.fs.table();
        fx.fs.metadata_deferred(&t, ino(n))
    };
    assert!(deferred("big1") && deferred("big3") && !deferred("link"));
    // The first lookup of one HEADs them all, in parallel; later ones ask nothing.
    fx.store.reset_counts();
    let a = fx.stat("d/big2").unwrap();
    assert_eq!((a.perm, a.uid), (0o600, 1234));
    assert_eq!(fx.count(Operation::HeadObject), 3);
    fx.store.reset_counts();
    for name in ["big1", "big3"] {
        assert_eq!(fx.stat(&format!("d/{name}")).unwrap().perm, 0o600);
    }
    assert_eq!(fx.store.total_requests(), 0);
    assert!(!deferred("big1"));
    // A later listing over the limit leaves nothing deferred from an earlier one.
    fx.put_behind("d/big4", &[7; 5000]);
    let short = setup_over(fx.store.clone())
        .ttl(Duration::from_millis(300))
        .opts(|o| o.listing_head_limit = 5)
        .mount();
    short.ls_entries("d").unwrap(); // big1-4 for a lookup, `link` now: 5
    let d = short.dir_ino("d").unwrap();
    assert!(short.fs.table().get(d).unwrap().heads_deferred());
    for name in ["big5", "big6"] {
        fx.put_behind(&format!("d/{name}"), &[7; 5000]);
    }
    std::thread::sleep(Duration::from_millis(400)); // the listing is stale
    short.ls_entries("d").unwrap(); // big1-6 not known: over the limit
    assert!(!short.fs.table().get(d).unwrap().heads_deferred());
    // A listing over the limit defers nothing: it HEADs nothing, as before.
    let over = setup_over(fx.store.clone())
        .ttl(Duration::from_secs(60))
        .opts(|o| o.listing_head_limit = 2)
        .mount();
    over.ls_entries("d").unwrap();
    let d = over.dir_ino("d").unwrap();
    assert!(!over.fs.table().get(d).unwrap().heads_deferred());
}

/// The deferred HEADs of one directory do not hold up another directory's: a lookup in `b`
/// completes while `a`'s round waits in the middle of its first HEAD.
#[test]
fn directories_make_their_deferred_heads_each_on_their_own() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::channel;
    let fx = setup().ttl(Duration::from_secs(60)).mount();
    for d in ["a", "b"] {
        for f in 0..3 {
            fx.put_behind(&format!("{d}/big{f}"), &[1; 5000]);
        }
        fx.ls_entries(d).unwrap();
    }
    let (started_tx, started_rx) = channel();
    let (go_tx, go_rx) = channel::<()>();
    let b_came_first = std::sync::Arc::new(AtomicBool::new(false));
    let flag = b_came_first.clone();
    fx.store.before_next(Operation::HeadObject, move |_| {
        let _ = started_tx.send(());
        flag.store(
            go_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            Ordering::SeqCst,
        );
    });
    std::thread::scope(|s| {
        let a = s.spawn(|| fx.stat("a/big0").map(|a| a.size));
        started_rx.recv().unwrap();
        assert_eq!(fx.stat("b/big1").unwrap().size, 5000);
        let _ = go_tx.send(());
        assert_eq!(a.join().unwrap().unwrap(), 5000);
    });
    assert!(
        b_came_first.load(Ordering::SeqCst),
        "b's lookup waited for a's round"
    );
}

#[test]
fn readdir_shows_markers_and_prefixes_as_directories_and_hides_keys_that_are_no_names() {
    let fx = fx();
    fx.put_behind("d/", b"");
    fx.put_behind("d/in", b"x");
    fx.put_behind("p/q", b"x");
    fx.put_behind("a//b", b"x");
    fx.put_behind("./dot", b"x");
    fx.put_behind("../up", b"x");
    fx.put_behind("ok", b"x");
    assert_eq!(
        kinds(&fx.ls_entries("").unwrap()),
        [
            ("a", NodeKind::Dir),
            ("d", NodeKind::Dir),
            ("ok", NodeKind::File),
            ("p", NodeKind::Dir)
        ]
    );
    assert_eq!(
        fx.ls("a").unwrap(),
        Vec::<String>::new(),
        "`a//b` is hidden"
    );
    assert_eq!(fx.ls("d").unwrap(), ["in"], "the marker is not an entry");
}

#[test]
fn another_clients_name_over_255_bytes_is_shown_but_the_mount_makes_none() {
    // Hidden, it would be silently left behind by a `cp -r` of the tree; a disk's limit holds
    // for the names the mount makes (and statfs says 255).
    let fx = fx();
    let long = "l".repeat(256);
    fx.put_behind(&format!("d/{long}"), b"long");
    fx.put_behind(&"é".repeat(200), b"400 bytes");
    assert_eq!(fx.ls("d").unwrap(), [long.as_str()]);
    assert_eq!(fx.ls("").unwrap(), ["d".to_string(), "é".repeat(200)]);
    let path = format!("d/{long}");
    assert_eq!(fx.cat(&path).unwrap(), b"long");
    fx.rename(&path, "d/short").unwrap();
    assert_eq!(fx.data("d/short"), b"long");
    assert_eq!(errno(fx.rename("d/short", &path)), libc::ENAMETOOLONG);
    assert_eq!(
        errno(fx.put(&format!("d/{}", "n".repeat(256)), b"x")),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno(fx.mkdir(&format!("d/{}", "n".repeat(256)))),
        libc::ENAMETOOLONG
    );
    // Not there: ENAMETOOLONG, as on a disk, not ENOENT.
    assert_eq!(
        errno(fx.stat(&format!("d/{}", "z".repeat(256)))),
        libc::ENAMETOOLONG
    );
    fx.unlink(&"é".repeat(200)).unwrap();
    assert_eq!(fx.keys(), ["d/short"]);
}

#[test]
fn a_file_listed_before_a_directory_of_its_name_is_shadowed() {
    let fx = fx();
    // "x" sorts before "x/…" (and "x-…" between them): one entry, the directory.
    fx.put_behind("x", b"file");
    fx.put_behind("x-y", b"1");
    fx.put_behind("x/z", b"1");
    assert_eq!(
        kinds(&fx.ls_entries("").unwrap()),
        [("x", NodeKind::Dir), ("x-y", NodeKind::File)]
    );
}

// ---- mkdir / rmdir --------------------------------------------------------------------------

#[test]
fn mkdir_writes_a_marker_with_the_mode_and_rmdir_needs_it_empty() {
    let fx = fx();
    fx.mkdir("d").unwrap();
    let marker = fx.object("d/").expect("the marker");
    assert!(marker.data.is_empty());
    assert_eq!(
        marker.metadata.get("mode"),
        Some((S_IFDIR | 0o755).to_string().as_str())
    );
    assert_eq!(fx.stat("d").unwrap().perm, 0o755);
    assert_eq!(errno(fx.mkdir("d")), libc::EEXIST);

    fx.put("d/f", b"x").unwrap();
    assert_eq!(errno(fx.rmdir("d")), libc::ENOTEMPTY);
    fx.mkdir("d/sub").unwrap();
    fx.unlink("d/f").unwrap();
    assert_eq!(errno(fx.rmdir("d")), libc::ENOTEMPTY, "a subdirectory");
    fx.rmdir("d/sub").unwrap();
    fx.rmdir("d").unwrap();
    assert_eq!(fx.keys(), Vec::<String>::new());
    assert_eq!(errno(fx.stat("d")), libc::ENOENT);
    assert_eq!(errno(fx.rmdir("d")), libc::ENOENT);
    fx.put("f", b"").unwrap();
    assert_eq!(errno(fx.rmdir("f")), libc::ENOTDIR);
}

#[test]
fn rmdir_of_a_directory_emptied_behind_the_mount_and_of_one_holding_another_client_key() {
    let fx = setup().ttl(LONG).mount();
    fx.mkdir("d").unwrap();
    // Another client writes into it: the fresh listing does not know, rmdir asks the server.
    fx.put_behind("d/theirs", b"x");
    assert_eq!(errno(fx.rmdir("d")), libc::ENOTEMPTY);
    assert_eq!(fx.data("d/theirs"), b"x");
}

#[test]
fn an_emptied_directory_without_marker_stays_until_rmdir() {
    let fx = fx();
    fx.put_behind("d/only", b"x");
    fx.unlink("d/only").unwrap();
    assert_eq!(fx.keys(), ["d/"], "a marker keeps the directory");
    assert_eq!(fx.stat("d").unwrap().kind, NodeKind::Dir);
    fx.rmdir("d").unwrap();
    assert_eq!(fx.keys(), Vec::<String>::new());

    // An existing marker (and its metadata) is kept, never rewritten.
    fx.store
        .put_behind_with(BUCKET, "e/", Vec::new(), &meta(&[("color", "red")]), &[]);
    fx.put_behind("e/only", b"x");
    fx.unlink("e/only").unwrap();
    assert_eq!(fx.object("e/").unwrap().metadata.get("color"), Some("red"));
}

// ---- symlinks -------------------------------------------------------------------------------

#[test]
fn symlinks_are_stored_as_s3fs_stores_them() {
    let fx = fx();
    fx.symlink("../target/file", "link").unwrap();
    let o = fx.object("link").unwrap();
    assert_eq!(o.data, b"../target/file");
    assert_eq!(
        o.metadata.get("mode"),
        Some((S_IFLNK | 0o777).to_string().as_str())
    );
    assert_eq!(fx.readlink("link").unwrap(), "../target/file");
    let fresh = fx.remount();
    let a = fresh.stat("link").unwrap();
    assert_eq!((a.kind, a.size), (NodeKind::Symlink, 14));
    assert_eq!(fresh.readlink("link").unwrap(), "../target/file");
    assert_eq!(
        fresh.ls_entries("").unwrap()[0].attrs.kind,
        NodeKind::Symlink
    );
    assert_eq!(errno(fx.symlink("x", "link")), libc::EEXIST);
    fx.put("f", b"").unwrap();
    assert_eq!(errno(fx.readlink("f")), libc::EINVAL);
}

/// The kernel asks `readlink` at every path resolution through a link and for every link of
/// an `ls -l` (it does not cache targets): each version of a link is read once, and another
/// client's new target is read as soon as the table knows the new version.
#[test]
fn a_symlink_target_is_read_once_per_version() {
    let fx = fx();
    fx.symlink("../a", "link").unwrap();
    fx.store.reset_counts();
    for _ in 0..3 {
        assert_eq!(fx.readlink("link").unwrap(), "../a");
    }
    assert_eq!(fx.count(Operation::GetObject), 1);
    let mode = (S_IFLNK | 0o777).to_string();
    fx.store.put_behind_with(
        BUCKET,
        "link",
        b"../b".to_vec(),
        &meta(&[("mode", mode.as_str())]),
        &[],
    );
    fx.store.reset_counts();
    for _ in 0..3 {
        assert_eq!(fx.readlink("link").unwrap(), "../b");
    }
    assert_eq!(fx.count(Operation::GetObject), 1);
}

// ---- the root -------------------------------------------------------------------------------

#[test]
fn the_root_of_a_whole_bucket_mount_is_the_bucket() {
    let fx = fx();
    let root = fx.stat("").unwrap();
    assert_eq!((root.kind, root.perm), (NodeKind::Dir, 0o755));
    assert_eq!(errno(fx.getxattr("", "user.x-amz-meta-any")), libc::ENODATA);
    assert_eq!(fx.listxattr("").unwrap(), Vec::<String>::new());
    assert_eq!(
        fx.store.total_requests(),
        0,
        "no request for the root's metadata"
    );
    assert_eq!(
        errno(fx.setxattr("", "user.x-amz-meta-k", "v", 0)),
        libc::ENOTSUP
    );
    // chmod of the root is kept for this mount only (`cp -a` onto it works).
    let a = fx
        .setattr(
            "",
            AttrChange {
                mode: Some(0o700),
                ..AttrChange::default()
            },
        )
        .unwrap();
    assert_eq!(a.perm, 0o700);
    assert_eq!(fx.keys(), Vec::<String>::new(), "nothing written");
}

#[test]
fn a_prefix_mount_shows_only_the_prefix() {
    let fx = setup().opts(|o| o.prefix = "pre/".into()).mount();
    fx.put_behind("pre/in", b"1");
    fx.put_behind("outside", b"2");
    fx.put_behind("prefix-lookalike", b"3");
    assert_eq!(fx.ls("").unwrap(), ["in"]);
    fx.put("new", b"n").unwrap();
    fx.mkdir("d").unwrap();
    assert_eq!(
        fx.keys(),
        ["outside", "pre/d/", "pre/in", "pre/new", "prefix-lookalike"]
    );
    assert_eq!(fx.cat("in").unwrap(), b"1");
}

#[test]
fn a_read_only_mount_refuses_every_change() {
    let fx = setup().opts(|o| o.read_only = true).mount();
    fx.put_behind("f", b"data");
    assert_eq!(errno(fx.put("f", b"x")), libc::EROFS);
    assert_eq!(errno(fx.open("f", libc::O_WRONLY)), libc::EROFS);
    assert_eq!(errno(fx.mkdir("d")), libc::EROFS);
    assert_eq!(errno(fx.unlink("f")), libc::EROFS);
    assert_eq!(errno(fx.rename("f", "g")), libc::EROFS);
    assert_eq!(errno(fx.truncate("f", 0)), libc::EROFS);
    assert_eq!(
        errno(fx.setxattr("f", "user.x-amz-meta-k", "v", 0)),
        libc::EROFS
    );
    assert_eq!(fx.cat("f").unwrap(), b"data");
    assert_eq!(fx.keys(), ["f"]);
}
