//! The HEADs a listing leaves to the first lookup in a large directory
//! (`fs::listing_heads`): a small file there may be a symlink or a special file, so its type
//! is not trusted from the listing; the HEADs come in windows, also after the listing expired.

use std::time::Duration;

use super::*;

const LONG: Duration = Duration::from_secs(3600);

/// In a directory listed in more than one page (or with more unknown entries than
/// `listing_head_limit`), nothing is HEADed before `readdir` answers, but a small file may be
/// a symlink or a special file: it is handed out for the kernel not to keep, and its first
/// lookup finds its type. Trusting the listing's "regular file" had `cp -a` of a directory of
/// 1000 symlinks copy most of them as files holding their target paths, and fail on others
/// with EIO (the kernel's inode changed type under an open file).
#[test]
fn a_small_file_of_a_large_directory_is_looked_at_before_its_type_is_trusted() {
    let fx = setup().ttl(LONG).mount();
    let link = meta(&[("mode", &(0o120777).to_string())]);
    let fifo = meta(&[("mode", &(0o010644).to_string())]);
    for i in 0..1200 {
        fx.store
            .put_behind_with(BUCKET, &format!("big/l{i:04}"), b"t".to_vec(), &link, &[]);
    }
    fx.store
        .put_behind_with(BUCKET, "big/pipe", Vec::new(), &fifo, &[]);
    fx.put_behind("big/t", b"target");
    fx.put_behind("big/z-large", &[7; 5000]);
    let entries = fx.ls_entries("big").unwrap();
    assert_eq!(entries.len(), 1203);
    let ino = |n: &str| entries.iter().find(|e| e.name == n).unwrap().ino;
    let deferred = |n: &str| {
        let t = fx.fs.table();
        fx.fs.metadata_deferred(&t, ino(n))
    };
    assert!(deferred("l0000") && deferred("l1199") && deferred("pipe") && deferred("t"));
    assert!(
        !deferred("z-large"),
        "only a regular file can be that large"
    );
    assert_eq!(fx.stat("big/l0000").unwrap().kind, NodeKind::Symlink);
    assert_eq!(fx.readlink("big/l0000").unwrap(), "t");
    assert!(!deferred("l0511") && deferred("l0512"), "a window of 512");
    assert_eq!(fx.stat("big/l1100").unwrap().kind, NodeKind::Symlink);
    assert_eq!(fx.stat("big/pipe").unwrap().kind, NodeKind::Fifo);
    assert_eq!(fx.stat("big/t").unwrap().kind, NodeKind::File);
    assert!(!deferred("t"));
    // `--listing-head-limit 0` trusts listings: no HEAD, as it says.
    let trusting = setup_over(fx.store.clone())
        .ttl(LONG)
        .opts(|o| o.listing_head_limit = 0)
        .mount();
    trusting.ls_entries("big").unwrap();
    trusting.store.reset_counts();
    assert_eq!(trusting.stat("big/l0001").unwrap().kind, NodeKind::File);
    assert_eq!(trusting.store.total_requests(), 0);
}

/// `ls -l` of a large directory stats most entries after its listing expired (the listing
/// took long, the TTL is short): those entries are still HEADed in windows, never asked one
/// by one with a LIST each (a LIST of a large directory is slow on some servers: `ls -l` of
/// 10 000 entries took minutes on s3s-fs so).
#[test]
fn a_large_directorys_small_files_are_headed_in_windows_after_its_listing_expired() {
    let fx = setup().ttl(LONG).mount();
    for i in 0..1100 {
        fx.put_behind(&format!("big/f{i:04}"), b"x");
    }
    let entries = fx.ls_entries("big").unwrap();
    assert_eq!(entries.len(), 1100);
    // The listing and what it said of each entry expire (as after a slow listing).
    let big = fx.dir_ino("big").unwrap();
    {
        let mut t = fx.fs.table();
        t.invalidate_dir(big);
        for e in &entries {
            t.expire_attr(e.ino);
        }
    }
    fx.store.reset_counts();
    for i in 0..600 {
        assert_eq!(
            fx.stat(&format!("big/f{i:04}")).unwrap().kind,
            NodeKind::File
        );
    }
    assert_eq!(fx.count(Operation::ListObjectsV2), 0, "no LIST per file");
    assert_eq!(fx.count(Operation::HeadObject), 1024, "two rounds of 512");
}
