//! A server that restarts or hangs under a mount. A proxy in front of the test server plays the
//! restart ([`Proxy::down`]: connections refused, a request read meanwhile reset; then
//! [`Proxy::up`]) or the hang (every request read and never answered): calls ride out a
//! restart shorter than the retry budget (`--retry-timeout`, default 30 s) and end with EIO
//! within it when the server does not come back or never answers, not minutes later.
//!
//! One test uses the default budget; the others pass a short one, so that they stay quick.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::proxy::{Fault, Proxy, Rule};
use common::{
    assert_same, close, put_direct, random_bytes, server, server_bytes, set_xattr, unsaved_files,
    Mount,
};
use s3mount::s3::ObjectStore;

const MIB: usize = 1024 * 1024;

/// Longer than the 6 tries of the old policy lasted (their pauses added up to at most 3.1 s).
const OUTAGE: Duration = Duration::from_secs(5);

/// A file written through the mount and closed while the server restarts, with the default
/// budget: half of it is written, the server goes down for [`OUTAGE`], the rest is written
/// and `close` uploads it (streamed parts and completion retried): it succeeds once the server
/// is back, and the object is byte-exact. With the old 6 quick tries `close` failed with EIO.
#[test]
fn close_rides_out_a_server_restart_with_the_default_budget() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("restart-close");
    let proxy = Proxy::start(&server().endpoint);
    let mount = Mount::new(&server().via(proxy.endpoint()), &bucket);
    let data = random_bytes(24 * MIB + 7, 1);
    let (first, second) = data.split_at(data.len() / 2);
    let mut f = std::fs::File::create(mount.join("big.bin")).unwrap();
    f.write_all(first).unwrap();
    proxy.down();
    let down = Instant::now();
    let closed = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(OUTAGE);
            proxy.up();
        });
        f.write_all(second)?;
        close(f)
    });
    let took = down.elapsed();
    closed.unwrap_or_else(|e| panic!("close during a restart: {e}; log:\n{}", mount.log()));
    assert!(took >= OUTAGE, "closed {took:?} after the server went down");
    let st = server().storage_in(&bucket);
    assert_same(
        "uploaded across the restart",
        &server_bytes(&st, "big.bin").expect("big.bin on the server"),
        &data,
    );
    assert_eq!(unsaved_files(&mount), Vec::<std::path::PathBuf>::new());
}

/// `ls`, `cat`, `mv`, `rm` and `setfattr` made while the server is down all wait for it and
/// succeed once it is back (metadata TTL 0: each must ask the server).
#[test]
fn calls_made_while_the_server_restarts_succeed_once_it_is_back() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("restart-calls");
    for key in ["a.txt", "b.txt", "c.txt"] {
        put_direct(&bucket, key, key.as_bytes());
    }
    let proxy = Proxy::start(&server().endpoint);
    let args = ["--retry-timeout", "20", "--metadata-ttl", "0"];
    let mount = Mount::with_args(&server().via(proxy.endpoint()), &bucket, &args);
    proxy.down();
    let down = Instant::now();
    let results: Vec<(&str, Result<String, String>)> = std::thread::scope(|s| {
        let m = &mount;
        let calls = [
            s.spawn(move || {
                let names = std::fs::read_dir(m.path())
                    .and_then(|d| {
                        d.map(|e| e.map(|e| e.file_name()))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(|e| e.to_string())?;
                Ok(format!("{}", names.len()))
            }),
            s.spawn(move || {
                std::fs::read(m.join("a.txt"))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|e| e.to_string())
            }),
            s.spawn(move || {
                std::fs::rename(m.join("b.txt"), m.join("b2.txt"))
                    .map(|()| String::new())
                    .map_err(|e| e.to_string())
            }),
            s.spawn(move || {
                std::fs::remove_file(m.join("c.txt"))
                    .map(|()| String::new())
                    .map_err(|e| e.to_string())
            }),
            s.spawn(move || {
                set_xattr(&m.join("a.txt"), "user.color", b"red", 0)
                    .map(|()| String::new())
                    .map_err(|e| format!("errno {e}"))
            }),
        ];
        std::thread::sleep(OUTAGE);
        proxy.up();
        ["ls", "cat", "mv", "rm", "setfattr"]
            .into_iter()
            .zip(calls)
            .map(|(what, h)| (what, h.join().expect("call thread")))
            .collect()
    });
    let took = down.elapsed();
    for (what, r) in &results {
        assert!(
            r.is_ok(),
            "{what} during a restart: {r:?}; log:\n{}",
            mount.log()
        );
    }
    assert_eq!(results[1].1.as_deref(), Ok("a.txt"));
    assert!(took >= OUTAGE, "{took:?}");
    let st = server().storage_in(&bucket);
    assert_eq!(server_bytes(&st, "b2.txt").as_deref(), Some(&b"b.txt"[..]));
    assert_eq!(server_bytes(&st, "b.txt"), None);
    assert_eq!(server_bytes(&st, "c.txt"), None);
    let head = st.head_object(&common::obj(&bucket, "a.txt")).unwrap();
    let xattrs = head.metadata.get("xattr").unwrap_or_default();
    assert!(xattrs.contains("user.color"), "{head:?}");
}

/// A server that accepts every request and never answers: a `cat` fails with EIO within the
/// budget plus one stall timeout (both 2 s here, the budget bringing the 30 s stall timeout
/// down to it), where each of 6 tries used to wait out 30 s (about 3 minutes). Once the server
/// answers again, so does the mount.
#[test]
fn a_hung_server_fails_a_call_within_the_budget() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("hung");
    put_direct(&bucket, "f", b"content");
    let proxy = Proxy::start(&server().endpoint);
    let args = ["--retry-timeout", "2", "--metadata-ttl", "0"];
    let mount = Mount::with_args(&server().via(proxy.endpoint()), &bucket, &args);
    proxy.add(Rule::new("*", "", Fault::Stall(Duration::from_secs(60))));
    let t0 = Instant::now();
    let err = std::fs::read(mount.join("f")).expect_err("a read from a hung server");
    let took = t0.elapsed();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "EIO after {took:?}"
    );
    proxy.clear_rules();
    assert_eq!(std::fs::read(mount.join("f")).unwrap(), b"content");
}

/// A server that does not come back within the budget: `close` fails with EIO once the budget
/// is spent, not before, and the bytes are kept under `unsaved/` (for `--recover`).
#[test]
fn close_fails_once_the_budget_is_spent_and_keeps_the_bytes() {
    let _serial = common::one_at_a_time();
    let bucket = server().fresh_bucket("down-close");
    let proxy = Proxy::start(&server().endpoint);
    let args = ["--retry-timeout", "2"];
    let mount = Mount::with_args(&server().via(proxy.endpoint()), &bucket, &args);
    let data = random_bytes(MIB + 3, 2);
    let mut f = std::fs::File::create(mount.join("kept.bin")).unwrap();
    f.write_all(&data).unwrap();
    proxy.down();
    let t0 = Instant::now();
    let err = close(f).expect_err("close with the server gone");
    let took = t0.elapsed();
    proxy.up();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "EIO after {took:?}"
    );
    let kept = unsaved_files(&mount);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_same("kept copy", &std::fs::read(&kept[0]).unwrap(), &data);
}
