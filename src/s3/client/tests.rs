//! The client's tests: addressing, signing policy, failure lines, and the retries against
//! real sockets (refused, silent, back within the budget).

use super::*;
use crate::s3::operation::Operation;

#[test]
fn file_bodies_are_signed_only_where_a_network_could_change_them() {
    let at = |s: &str| crate::config::Endpoint::parse(s, None).unwrap();
    let auto = PayloadSigning::Auto;
    assert!(auto.signs_file_bodies(&at("http://minio.lan:9000")));
    assert!(auto.signs_file_bodies(&at("http://10.0.0.5:9000")));
    assert!(!auto.signs_file_bodies(&at("https://s3.amazonaws.com")));
    for local in [
        "http://127.0.0.1:9000",
        "http://127.0.0.53",
        "http://localhost:3900",
        "http://LOCALHOST",
        "http://[::1]:9000",
    ] {
        assert!(!auto.signs_file_bodies(&at(local)), "{local}");
    }
    // A host merely named like it is not loopback.
    assert!(auto.signs_file_bodies(&at("http://localhost.example.com")));
    assert!(PayloadSigning::Always.signs_file_bodies(&at("http://127.0.0.1:9000")));
}

/// A server that accepts connections and never replies: each attempt waits out the read
/// timeout, so a client giving up after a time limit starts no more attempts past it,
/// where the retry count alone would have made six.
#[test]
fn a_client_giving_up_after_a_limit_starts_no_retry_past_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            counting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    let mut cfg = config_for(port, RetryPolicy::default());
    cfg.io_timeout = Duration::from_millis(200);
    let client = S3Client::new(cfg)
        .unwrap()
        .giving_up_after(Duration::from_millis(300));
    let req = S3Request::new(Operation::HeadBucket, "demo", "");
    let err = client.execute(&req).unwrap_err();
    assert!(err.is_transient(), "{err}");
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&n), "{n} attempts");
}

fn config_for(port: u16, retry: RetryPolicy) -> ClientConfig {
    ClientConfig {
        endpoint: crate::config::Endpoint::parse(&format!("http://127.0.0.1:{port}"), None)
            .unwrap(),
        region: "us-east-1".into(),
        access_key_id: "AKID".into(),
        secret_access_key: crate::config::Secret::new("SECRET"),
        session_token: None,
        addressing_style: crate::config::AddressingStyle::Path,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        io_timeout: DEFAULT_IO_TIMEOUT,
        retry,
        payload_signing: PayloadSigning::Auto,
        ca_file: None,
    }
}

/// A server restarting: connections to its port are refused for a while, then one is
/// answered. A request within the budget gets through — even one that is not blindly
/// repeatable, since a refused connection carried nothing; one past the budget fails.
#[test]
fn refused_connections_are_retried_until_the_budget_is_spent() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let quick = |budget_ms| RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        budget: Duration::from_millis(budget_ms),
    };
    let req = S3Request::new(Operation::CreateMultipartUpload, "demo", "k").not_idempotent();
    let t0 = Instant::now();
    let err = S3Client::new(config_for(port, quick(300)))
        .unwrap()
        .execute(&req)
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(300), "gave up after {took:?}");
    assert!(took < Duration::from_secs(2), "gave up after {took:?}");

    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let (mut conn, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        std::io::Write::write_all(
            &mut conn,
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    let resp = S3Client::new(config_for(port, quick(5000)))
        .unwrap()
        .execute(&req)
        .expect("the server came back within the budget");
    assert_eq!(resp.status, 200);
    assert!(server.join().unwrap().starts_with("POST /demo/k"));
}

/// A short budget also shortens the waits of one try, so that a silent server costs about
/// the budget, not the 30 s stall timeout; a long one leaves them.
#[test]
fn a_short_budget_shortens_the_stall_and_connect_timeouts() {
    let short = config_for(1, RetryPolicy::default()).with_retry_budget(Duration::from_secs(2));
    assert_eq!(short.io_timeout, Duration::from_secs(2));
    assert_eq!(short.connect_timeout, Duration::from_secs(2));
    assert_eq!(short.retry.budget, Duration::from_secs(2));
    let none = config_for(1, RetryPolicy::default()).with_retry_budget(Duration::ZERO);
    assert_eq!(none.io_timeout, MIN_TIMEOUT);
    let long = config_for(1, RetryPolicy::default()).with_retry_budget(Duration::from_secs(120));
    assert_eq!(long.io_timeout, DEFAULT_IO_TIMEOUT);
    assert_eq!(long.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
}

#[test]
fn the_last_pause_ends_at_the_budget() {
    let p = RetryPolicy {
        budget: Duration::from_millis(100),
        ..RetryPolicy::default()
    };
    let first = Instant::now();
    for a in 1..10 {
        let pause = p.next_pause(a, first).expect("within the budget");
        assert!(pause <= Duration::from_millis(100), "{pause:?}");
    }
    let long_ago = Instant::now() - Duration::from_millis(150);
    assert_eq!(p.next_pause(1, long_ago), None);
    let counted = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    assert!(counted.next_pause(2, first).is_some());
    assert_eq!(counted.next_pause(3, first), None);
}

#[test]
fn a_failure_names_the_request_once() {
    let req = S3Request::new(Operation::ListObjectsV2, "demo", "");
    let denied = StorageError::AccessDenied {
        bucket: "demo".into(),
        key: "".into(),
        code: "SignatureDoesNotMatch".into(),
        message: "no".into(),
        action: None,
        request_id: None,
    };
    let line = failure_line(&req, &denied);
    assert!(
        line.starts_with("GET s3://demo/: access denied ("),
        "{line}"
    );
    assert_eq!(line.matches("s3://demo/").count(), 1, "{line}");
    let net = StorageError::Network {
        what: req.describe(),
        detail: "io: Connection refused".into(),
    };
    assert_eq!(
        failure_line(&req, &net),
        "GET s3://demo/: network error: io: Connection refused"
    );
    let other = StorageError::NoSuchBucket {
        bucket: "demo".into(),
    };
    assert_eq!(
        failure_line(&req, &other),
        "GET s3://demo/: bucket \"demo\" does not exist (NoSuchBucket)"
    );
}

#[test]
fn backoff_is_capped() {
    let p = RetryPolicy::default();
    for a in 0..40 {
        assert!(p.backoff(a) <= p.max_delay);
    }
}

#[test]
fn requests_know_their_operation() {
    let r = S3Request::new(Operation::ListObjectsV2, "b", "").query("list-type", "2");
    assert_eq!(r.operation(), Operation::ListObjectsV2);
    assert_eq!(r.describe(), "GET s3://b/");
}
