//! A fault-injecting HTTP/1.1 proxy for tests (std only, plus `libc` for a hard reset).
//!
//! [`Proxy::start`] listens on `127.0.0.1:0` and forwards each request to the real server.
//! Every client connection carries exactly one request and gets `Connection: close` on its
//! reply; every request goes to the server on a connection of its own. The request's bytes
//! reach the server unchanged (Host included, so SigV4 signed for the proxy's address still
//! verifies: the server recomputes the signature from the headers it receives) except for the
//! hop-by-hop `Connection` header, which becomes `close`. Replies are forwarded byte for byte
//! except for that same header.
//!
//! [`Rule`]s pick requests by method, a substring of the request target (path and query) and
//! optionally a header they carry, and inject a [`Fault`] on some of the matching requests (skip the first `skip`, then
//! `times` of them). [`Proxy::seen`] lists every request with the fault it got.
//!
//! Three faults run test code inside the proxy: [`Fault::Before`] calls a [`Hook`] before the
//! request is forwarded (it may act on the server meanwhile, e.g. overwrite the object a copy
//! reads, and may answer in the server's place, e.g. with a 412 that a lax server would not
//! give); [`Fault::HoldReply`] calls one after the server answered and before the reply goes
//! back (a late reply that describes the server as it was); [`Fault::RewriteBody`] forwards
//! and then hands the reply body to a [`BodyRewrite`] (e.g. to put bytes into a listing that
//! the server itself would never send).
//! [`Fault::StallAfterForward`] loses a reply to the client's timeout after the server acted;
//! [`Fault::SetHeader`] changes one reply header (e.g. an ETag that is not an MD5).
//! [`Proxy::down`] and [`Proxy::up`] play a server restart: no listening socket in between
//! (connections refused), and a request read meanwhile answered by a reset.
//!
//! Lifetime: dropping the proxy stops the accept thread (joined); connection threads are
//! detached but every read, write and stall in them is bounded (and stalls end at the drop).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a proxy socket read or write may block.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Test code run by [`Fault::Before`]: given the request, `Some(reply)` answers it (a whole
/// HTTP/1.1 reply, see [`s3_error_reply`]) instead of forwarding it, `None` forwards it.
#[derive(Clone)]
pub struct Hook(pub Arc<HookFn>);

/// The closure inside a [`Hook`].
pub type HookFn = dyn Fn(&Seen) -> Option<Vec<u8>> + Send + Sync;

impl Hook {
    /// Wrap a closure.
    pub fn new(f: impl Fn(&Seen) -> Option<Vec<u8>> + Send + Sync + 'static) -> Hook {
        Hook(Arc::new(f))
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl PartialEq for Hook {
    fn eq(&self, other: &Hook) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Hook {}

/// Test code run by [`Fault::RewriteBody`]: the server's reply body in, the body to send out.
#[derive(Clone)]
pub struct BodyRewrite(pub Arc<RewriteFn>);

/// The closure inside a [`BodyRewrite`].
pub type RewriteFn = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

impl BodyRewrite {
    /// Wrap a closure.
    pub fn new(f: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> BodyRewrite {
        BodyRewrite(Arc::new(f))
    }
}

impl std::fmt::Debug for BodyRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyRewrite")
    }
}

impl PartialEq for BodyRewrite {
    fn eq(&self, other: &BodyRewrite) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for BodyRewrite {}

/// What to do to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `503 SlowDown` (S3 XML error body) without forwarding.
    SlowDown,
    /// Answer `500 InternalError` (S3 XML error body) without forwarding.
    InternalError,
    /// Forward the request (the server does the work), then reset the client connection
    /// instead of answering.
    ResetBeforeResponse,
    /// Forward, send the reply head and the first N body bytes, then reset the connection.
    ResetAfterBody(usize),
    /// Forward, send the reply head (original Content-Length) and the first N body bytes, then
    /// close the connection normally (FIN).
    TruncateBody(usize),
    /// Read the request, say nothing for this long (not forwarded), then close.
    Stall(Duration),
    /// Wait this long, then forward the request and answer normally (a slow server).
    Delay(Duration),
    /// Run test code first; it may answer in the server's place.
    Before(Hook),
    /// Forward, then replace the reply body (Content-Length follows).
    RewriteBody(BodyRewrite),
    /// Forward (the server does the work), then say nothing for this long and close: a reply
    /// lost to a client timeout.
    StallAfterForward(Duration),
    /// Forward, then set a reply header (name, value), replacing it if present: e.g. ETags
    /// that are not MD5s, as servers with encryption give.
    SetHeader(String, String),
    /// Forward (the server answers), then run test code before the reply goes back: a reply
    /// that arrives late, describing the server as it was when it answered. The hook's
    /// return value is ignored.
    HoldReply(Hook),
}

/// Which requests get a fault.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `GET`, `PUT`, ... or `*` for any.
    pub method: String,
    /// Substring of the request target (`/bucket/key?query`).
    pub target_contains: String,
    /// Matching requests let through before the first fault.
    pub skip: usize,
    /// Faults to inject (then the rule lets everything through); `usize::MAX`: every time.
    pub times: usize,
    /// Only requests carrying this header (lower-case name), when set.
    pub header: Option<String>,
    /// The fault.
    pub fault: Fault,
}

impl Rule {
    /// Inject `fault` on every `method` request whose target contains `target_contains`.
    pub fn new(method: &str, target_contains: &str, fault: Fault) -> Rule {
        Rule {
            method: method.to_string(),
            target_contains: target_contains.to_string(),
            skip: 0,
            times: usize::MAX,
            header: None,
            fault,
        }
    }

    /// Only requests carrying header `name` (e.g. `x-amz-copy-source`: a CopyObject, not a
    /// PUT of the same key).
    pub fn with_header(mut self, name: &str) -> Rule {
        self.header = Some(name.to_ascii_lowercase());
        self
    }

    /// Only `n` times.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }

    /// Let the first `n` matches through.
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }

    fn matches(&self, req: &Request) -> bool {
        (self.method == "*" || self.method.eq_ignore_ascii_case(&req.method))
            && req.target.contains(&self.target_contains)
            && self
                .header
                .as_ref()
                .is_none_or(|h| req.headers.iter().any(|(n, _)| n == h))
    }
}

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Request target.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The fault it got, if any.
    pub fault: Option<Fault>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct RuleState {
    rule: Rule,
    matched: usize,
    injected: usize,
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<RuleState>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
    /// Refusing connections, as a server that is restarting ([`Proxy::down`]).
    down: AtomicBool,
    request_ids: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Start a proxy in front of `upstream_endpoint` (`http://HOST:PORT`).
    pub fn start(upstream_endpoint: &str) -> Proxy {
        let upstream = upstream_endpoint
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("proxy: plain http endpoint expected: {upstream_endpoint}"))
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy: local address");
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            down: AtomicBool::new(false),
            request_ids: AtomicU64::new(0),
        });
        let sh = Arc::clone(&shared);
        listener
            .set_nonblocking(true)
            .expect("proxy: non-blocking listener");
        let accept = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(&sh, addr, listener))
            .expect("proxy: spawn accept thread");
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add a rule (rules are tried in order; the first that matches and still has faults to
    /// give decides).
    pub fn add(&self, rule: Rule) {
        lock(&self.shared.rules).push(RuleState {
            rule,
            matched: 0,
            injected: 0,
        });
    }

    /// Go down as a restarting server does: the listening socket is closed, so every new
    /// connection is refused, and a request read meanwhile is answered by a reset.
    pub fn down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
    }

    /// Listen again, on the same port, after [`Proxy::down`].
    pub fn up(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// Remove every rule.
    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Requests received with this method and a target containing `target_contains`.
    pub fn count(&self, method: &str, target_contains: &str) -> usize {
        lock(&self.shared.seen)
            .iter()
            .filter(|s| s.method == method && s.target.contains(target_contains))
            .count()
    }

    /// Faults injected so far.
    pub fn faults(&self) -> usize {
        lock(&self.shared.seen)
            .iter()
            .filter(|s| s.fault.is_some())
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept loop polls: it sees this within a few milliseconds.
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    head_lines: Vec<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut head_lines = vec![request_line.clone()];
    let mut headers = Vec::new();
    for l in lines {
        head_lines.push(l.to_string());
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if header("transfer-encoding").is_some() {
        // Not needed by the client under test: fail loudly rather than mis-frame.
        let _ = conn.write_all(
            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return None;
    }
    let len: usize = header("content-length")
        .map(|v| v.parse().ok())
        .unwrap_or(Some(0))?;
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(Request {
        method,
        target,
        head_lines,
        headers,
        body,
    })
}

fn decide(shared: &Shared, req: &Request) -> Option<Fault> {
    let mut rules = lock(&shared.rules);
    for st in rules.iter_mut() {
        if !st.rule.matches(req) {
            continue;
        }
        st.matched += 1;
        if st.matched > st.rule.skip && st.injected < st.rule.times {
            st.injected += 1;
            return Some(st.rule.fault.clone());
        }
    }
    None
}

/// Close with RST instead of FIN (SO_LINGER on, timeout 0).
fn reset(conn: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

fn error_reply(shared: &Shared, status: &str, code: &str, message: &str) -> Vec<u8> {
    let n = shared.request_ids.fetch_add(1, Ordering::Relaxed);
    s3_error_reply(status, code, message, n)
}

/// A whole S3 error reply (`status` e.g. `412 Precondition Failed`), as a [`Hook`] returns it.
pub fn s3_error_reply(status: &str, code: &str, message: &str, request_number: u64) -> Vec<u8> {
    let id = format!("FAULTPROXY{request_number}");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{id}</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: {id}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Send the request to the server on a new connection; the whole reply.
fn forward(shared: &Shared, req: &Request) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(&shared.upstream).ok()?;
    up.set_read_timeout(Some(SOCKET_TIMEOUT)).ok()?;
    up.set_write_timeout(Some(SOCKET_TIMEOUT)).ok()?;
    let mut head = String::new();
    for l in &req.head_lines {
        if l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        head.push_str(l);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes()).ok()?;
    up.write_all(&req.body).ok()?;
    let mut reply = Vec::new();
    up.read_to_end(&mut reply).ok()?;
    Some(reply)
}

/// The reply's head with `Connection: close`, and its body.
fn split_reply(reply: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let end = find(reply, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&reply[..end]);
    let mut out = String::new();
    for l in head.split("\r\n") {
        if l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    Some((out.into_bytes(), &reply[end + 4..]))
}

/// A reply head (ending in a blank line) with its Content-Length replaced.
fn with_content_length(head: &[u8], len: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for l in text.split("\r\n").filter(|l| !l.is_empty()) {
        if l.to_ascii_lowercase().starts_with("content-length:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    out.into_bytes()
}

/// Say nothing for `d` (cut short when the proxy stops).
fn stall(shared: &Shared, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A reply head (ending in a blank line) with header `name` set to `value`.
fn with_header(head: &[u8], name: &str, value: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut out = String::new();
    for l in text.split("\r\n").filter(|l| !l.is_empty()) {
        if l.to_ascii_lowercase().starts_with(&prefix) {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str(&format!("{name}: {value}\r\n\r\n"));
    out.into_bytes()
}

/// Accept connections until the proxy is dropped, without a listening socket while it is down
/// (polling: a blocking accept could not be told to give its socket up).
fn accept_loop(shared: &Arc<Shared>, addr: SocketAddr, listener: TcpListener) {
    let mut listener = Some(listener);
    let pause = || std::thread::sleep(Duration::from_millis(2));
    while !shared.stop.load(Ordering::SeqCst) {
        if shared.down.load(Ordering::SeqCst) {
            listener = None;
            pause();
            continue;
        }
        if listener.is_none() {
            // std sets SO_REUSEADDR: the port is free again at once.
            listener = TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .ok();
        }
        let Some(l) = &listener else {
            pause();
            continue;
        };
        match l.accept() {
            Ok((conn, _)) => {
                let _ = conn.set_nonblocking(false);
                let sh = Arc::clone(shared);
                let _ = std::thread::Builder::new()
                    .name("fault-proxy-conn".into())
                    .spawn(move || serve(&sh, conn));
            }
            Err(_) => pause(),
        }
    }
}

fn serve(shared: &Shared, mut conn: TcpStream) {
    if shared.stop.load(Ordering::SeqCst) {
        return;
    }
    let _ = conn.set_read_timeout(Some(SOCKET_TIMEOUT));
    let _ = conn.set_write_timeout(Some(SOCKET_TIMEOUT));
    let Some(req) = read_request(&mut conn) else {
        return;
    };
    if shared.down.load(Ordering::SeqCst) {
        reset(conn);
        return;
    }
    let fault = decide(shared, &req);
    let seen = Seen {
        method: req.method.clone(),
        target: req.target.clone(),
        headers: req.headers.clone(),
        fault: fault.clone(),
    };
    lock(&shared.seen).push(seen.clone());
    match &fault {
        Some(Fault::Before(hook)) => {
            if let Some(reply) = (hook.0)(&seen) {
                let _ = conn.write_all(&reply);
                let _ = conn.shutdown(Shutdown::Both);
                return;
            }
        }
        Some(Fault::SlowDown) => {
            let r = error_reply(
                shared,
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
            );
            let _ = conn.write_all(&r);
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
        Some(Fault::InternalError) => {
            let r = error_reply(
                shared,
                "500 Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
            );
            let _ = conn.write_all(&r);
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
        Some(Fault::Stall(d)) => {
            stall(shared, *d);
            return;
        }
        Some(Fault::Delay(d)) => std::thread::sleep(*d),
        _ => {}
    }
    let Some(reply) = forward(shared, &req) else {
        reset(conn);
        return;
    };
    let Some((head, body)) = split_reply(&reply) else {
        reset(conn);
        return;
    };
    match fault {
        Some(Fault::ResetBeforeResponse) => reset(conn),
        Some(Fault::ResetAfterBody(n)) => {
            let _ = conn.write_all(&head);
            let _ = conn.write_all(&body[..n.min(body.len())]);
            let _ = conn.flush();
            // Let the client take the bytes in before the reset discards what is in flight.
            std::thread::sleep(Duration::from_millis(100));
            reset(conn);
        }
        Some(Fault::TruncateBody(n)) => {
            let _ = conn.write_all(&head);
            let _ = conn.write_all(&body[..n.min(body.len())]);
            let _ = conn.shutdown(Shutdown::Both);
        }
        Some(Fault::StallAfterForward(d)) => stall(shared, d),
        Some(Fault::HoldReply(hook)) => {
            let _ = (hook.0)(&seen);
            let _ = conn.write_all(&head);
            let _ = conn.write_all(body);
            let _ = conn.shutdown(Shutdown::Write);
        }
        Some(Fault::SetHeader(name, value)) => {
            let _ = conn.write_all(&with_header(&head, &name, &value));
            let _ = conn.write_all(body);
            let _ = conn.shutdown(Shutdown::Write);
        }
        Some(Fault::RewriteBody(rewrite)) => {
            let new_body = (rewrite.0)(body);
            let head = with_content_length(&head, new_body.len());
            let _ = conn.write_all(&head);
            let _ = conn.write_all(&new_body);
            let _ = conn.shutdown(Shutdown::Write);
        }
        _ => {
            let _ = conn.write_all(&head);
            let _ = conn.write_all(body);
            let _ = conn.shutdown(Shutdown::Write);
        }
    }
}
