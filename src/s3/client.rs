//! The HTTP side of S3: one `ureq` agent, request signing, addressing, retries, error mapping.
//!
//! How a request goes out:
//! 1. [`S3Request`] says what to do (method, bucket, key, query, headers, body) with no HTTP
//!    detail; new headers or parameters are set through its builder methods, so callers never
//!    change when the request grows a field.
//! 2. [`S3Client::execute`] builds the URL for the bucket's addressing style (path-style
//!    `endpoint/bucket/key`, or virtual-hosted `bucket.endpoint/key`), signs it with SigV4, and
//!    sends it on the shared agent (keep-alive pool, `TCP_NODELAY`).
//! 3. Transport errors, timeouts, 5xx and throttling replies are retried — idempotent requests,
//!    and any whose connection was refused (nothing was sent) — with capped exponential backoff
//!    and full jitter, until the policy's time budget is spent ([`RetryPolicy::budget`]; a try
//!    in progress then still ends by its stall timeout).
//! 4. Error replies become [`StorageError`]s carrying the S3 error code, the key, the request id
//!    and, for 403, the IAM action the request needed. The final failure of every request is
//!    logged once, at WARN (debug for 404/412, which callers expect).
//!
//! The response body is handed back unread, so a GET streams straight into its destination.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, warn};
use rand::Rng;
use ureq::http;

use super::body::RequestBody;
use super::error::{error_for, is_retryable_status, ErrorReply, Result, StorageError};
pub use super::message::{S3Request, S3Response};
use super::metrics::S3Metrics;
use super::operation::Method;
use super::sign::{self, SigningCredentials};
use super::xml;
use crate::config::{AddressingStyle, Endpoint, Secret};

/// How long to wait for a TCP (and TLS) connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one socket read or write may stall before the request is abandoned (and retried).
/// S3 may take a while to answer a large CompleteMultipartUpload or CopyObject, but it sends
/// whitespace to keep the connection alive, so a long silence means a dead peer. A stall
/// timeout, not a limit on the whole transfer: a slow body that keeps coming is never cut.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request goes on being retried after its first attempt (`--retry-timeout`): long
/// enough to ride out a server restart (a Garage or MinIO restart takes a second or two, a
/// container rescheduled on the same host 10–20 s), short enough that a server that is gone
/// for good costs a program half a minute, not minutes. The same as the I/O stall timeout, so
/// a server that accepts connections and never answers costs one stall and no retry.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(30);
/// Most resumes of a body cut short in one read ([`RetryPolicy::resumes`]).
pub const MAX_RESUMES: u32 = 6;
/// Shortest stall and connect timeout a short retry budget brings them down to.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Retry policy for transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Most attempts per request, including the first (`u32::MAX`: the budget alone bounds
    /// them).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base_delay: Duration,
    /// Cap on a single backoff.
    pub max_delay: Duration,
    /// No retry starts once this long has passed since the first attempt; the last pause is
    /// shortened to end there, so a server back just before it still gets its try.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    /// Retries for [`DEFAULT_RETRY_BUDGET`] (30 s), with pauses of 50 ms doubling to at most
    /// 3 s (full jitter: about 1.5 s once capped): a refused connection or a 503 is tried
    /// some 20 times over the 30 s, a server that comes back is seen at most 3 s later.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(3),
            budget: DEFAULT_RETRY_BUDGET,
        }
    }
}

impl RetryPolicy {
    /// The pause before the attempt after `attempt`.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        // Full jitter: uniform in [0, min(cap, base * 2^attempt)].
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let cap = exp.min(self.max_delay);
        let millis = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }

    /// How many times one read resumes a body cut short: the attempts, at most
    /// [`MAX_RESUMES`] (the GET of each resume has the client's retries and budget of its own,
    /// so a server restarting mid-body costs one).
    pub(crate) fn resumes(&self) -> u32 {
        self.max_attempts.min(MAX_RESUMES)
    }

    /// After `attempt` attempts, the first of which started at `first`: the pause before the
    /// next one, or `None` when the attempts or the budget are spent. The pause never ends
    /// past the budget: the last try is made at its end.
    pub(crate) fn next_pause(&self, attempt: u32, first: Instant) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let left = self.budget.checked_sub(first.elapsed())?;
        if left.is_zero() {
            return None;
        }
        Some(self.backoff(attempt).min(left))
    }
}

/// When to hash the request body into the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadSigning {
    /// Always sign the SHA-256 of the body.
    Always,
    /// Sign small in-memory bodies; file bodies go `UNSIGNED-PAYLOAD` over TLS (TLS already
    /// protects the bytes on the wire) and to a loopback endpoint (no wire: hashing a body
    /// there costs both sides a pass over it, a quarter of the time of a 1 MiB upload to a
    /// local server), and signed over plain HTTP to anything else.
    Auto,
}

impl PayloadSigning {
    /// True if a file body sent to `endpoint` goes with the SHA-256 of its bytes signed.
    pub fn signs_file_bodies(self, endpoint: &crate::config::Endpoint) -> bool {
        match self {
            PayloadSigning::Always => true,
            PayloadSigning::Auto => !endpoint.tls && !endpoint.is_loopback(),
        }
    }
}

/// Everything the client needs to reach and authenticate to the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where the server is.
    pub endpoint: Endpoint,
    /// Signing region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret key (redacted in Debug).
    pub secret_access_key: Secret,
    /// Session token for temporary credentials.
    pub session_token: Option<Secret>,
    /// Addressing style as configured (`Auto` resolves per bucket).
    pub addressing_style: AddressingStyle,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Per socket read/write stall timeout.
    pub io_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Body signing policy.
    pub payload_signing: PayloadSigning,
    /// Extra PEM file of CA certificates to trust (instead of the system roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl ClientConfig {
    /// Client settings from a loaded [`crate::Config`], with default timeouts and retries.
    pub fn from_config(c: &crate::config::Config) -> Self {
        ClientConfig {
            endpoint: c.endpoint.clone(),
            region: c.region.clone(),
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.clone(),
            session_token: c.session_token.clone(),
            addressing_style: c.addressing_style,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            retry: RetryPolicy::default(),
            payload_signing: PayloadSigning::Auto,
            ca_file: None,
        }
    }

    /// The same settings retrying for `budget` (`--retry-timeout`). A budget shorter than the
    /// stall or connect timeout brings them down to it (not below [`MIN_TIMEOUT`]): whoever
    /// asks for an answer within 5 s when the server is gone means a silent server too, and
    /// a call then ends within twice the budget at most (a last try started just before it
    /// waits out one stall).
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry.budget = budget;
        let bound = budget.max(MIN_TIMEOUT);
        self.io_timeout = self.io_timeout.min(bound);
        self.connect_timeout = self.connect_timeout.min(bound);
        self
    }

    fn addressing_for(&self, bucket: &str) -> AddressingStyle {
        match self.addressing_style {
            AddressingStyle::Auto => {
                if self.endpoint.is_aws()
                    && !bucket.contains('.')
                    && crate::config::is_dns_compatible_bucket(bucket)
                {
                    AddressingStyle::Virtual
                } else {
                    AddressingStyle::Path
                }
            }
            other => other,
        }
    }
}

/// `METHOD s3://bucket/key: reason` once: most errors already start with the object
/// (`s3://…: access denied`) or with the whole request (`GET s3://…: network error`).
fn failure_line(req: &S3Request<'_>, err: &StorageError) -> String {
    let what = req.describe();
    let msg = err.to_string();
    let object = format!("s3://{}/{}", req.bucket, req.key);
    if msg.starts_with(&what) {
        msg
    } else if let Some(rest) = msg.strip_prefix(&object) {
        format!("{} {object}{rest}", req.method().as_str())
    } else {
        format!("{what}: {msg}")
    }
}

/// The S3 client: cheap to clone (shares the connection pool, and the metrics if any).
#[derive(Clone)]
pub struct S3Client {
    agent: ureq::Agent,
    cfg: Arc<ClientConfig>,
    /// Where every request is counted (`None`: not counted).
    metrics: Option<Arc<S3Metrics>>,
    /// Log final failures at debug: the caller reports them itself.
    quiet: bool,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client").field("cfg", &self.cfg).finish()
    }
}

impl S3Client {
    /// A client for these settings.
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| StorageError::io(ca.display(), e))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(StorageError::invalid(
                    "CA file",
                    format!("{}: no PEM certificate found", ca.display()),
                ));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        } else {
            tls = tls.root_certs(ureq::tls::RootCerts::PlatformVerifier);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .no_delay(true)
            .max_redirects(0)
            .max_idle_connections(64)
            .max_idle_connections_per_host(64)
            .user_agent(concat!("s3mount/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_per_read(Some(cfg.io_timeout))
            .timeout_per_write(Some(cfg.io_timeout))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(S3Client {
            agent,
            cfg: Arc::new(cfg),
            metrics: None,
            quiet: false,
        })
    }

    /// The same client, counting every request (count, errors, latency per [`Operation`](super::operation::Operation)) in
    /// `metrics`, shared with its clones.
    pub fn with_metrics(mut self, metrics: Arc<S3Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The metrics this client counts in, if any.
    pub fn metrics(&self) -> Option<&Arc<S3Metrics>> {
        self.metrics.as_ref()
    }

    /// The same client logging a request's final failure at debug instead of WARN: for a
    /// caller that reports the error itself, in words of its own (the start-up check of the
    /// bucket), so that it is said once.
    pub fn quiet_failures(&self) -> S3Client {
        S3Client {
            quiet: true,
            ..self.clone()
        }
    }

    /// The same client starting no retry once `limit` has passed since a request's first
    /// attempt, if its budget is longer: for a caller that must answer soon (the start-up
    /// check of the bucket, which mount(8) and a boot wait for).
    pub fn giving_up_after(&self, limit: Duration) -> S3Client {
        let mut cfg = (*self.cfg).clone();
        cfg.retry.budget = cfg.retry.budget.min(limit);
        S3Client {
            cfg: Arc::new(cfg),
            ..self.clone()
        }
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The same client (the same connection pool) sending each request once, without
    /// retries: for callers whose own loop counts attempts, such as the looks of
    /// [`super::reconcile`].
    pub fn single_attempt(&self) -> S3Client {
        let mut cfg = (*self.cfg).clone();
        cfg.retry.max_attempts = 1;
        S3Client {
            cfg: Arc::new(cfg),
            ..self.clone()
        }
    }

    /// Send a request, retrying transient failures if it is idempotent.
    ///
    /// Returns the reply for 2xx and 304; every other status is an error.
    pub fn execute(&self, req: &S3Request<'_>) -> Result<S3Response> {
        let mut attempt = 0u32;
        let first = Instant::now();
        loop {
            let started = Instant::now();
            let outcome = self.execute_once(req);
            if let Some(m) = &self.metrics {
                // A missing object (404) or a condition that did not hold (412) is an answer
                // the caller expects, not a failure of the request; a missing bucket is one.
                let failed = outcome.as_ref().is_err_and(|Failed { err: e, .. }| {
                    !(matches!(e, StorageError::NotFound { .. }) || e.is_precondition_failed())
                });
                m.record(req.op, started.elapsed(), failed);
            }
            let (err, unsent) = match outcome {
                Ok(resp) => return Ok(resp),
                Err(Failed { err, unsent }) => (err, unsent),
            };
            attempt += 1;
            // A request that never left may be sent again whatever it is.
            let pause = ((req.idempotent || unsent) && err.is_transient())
                .then(|| self.cfg.retry.next_pause(attempt, first))
                .flatten();
            let Some(delay) = pause else {
                self.log_failure(req, &err);
                return Err(err);
            };
            debug!(
                "{}: attempt {attempt} failed ({err}); retrying in {delay:?}",
                req.describe()
            );
            std::thread::sleep(delay);
        }
    }

    fn log_failure(&self, req: &S3Request<'_>, err: &StorageError) {
        let line = failure_line(req, err);
        if self.quiet || err.is_not_found() || err.is_precondition_failed() {
            debug!("{line}");
        } else {
            warn!("{line}");
        }
    }

    /// Virtual-hosted or path-style URL parts: (host header, canonical URI path).
    fn locate(&self, bucket: &str, key: &str) -> (String, String) {
        let ep = &self.cfg.endpoint;
        let encoded_key = sign::uri_encode(key, false);
        if bucket.is_empty() {
            return (ep.host_header(), "/".to_string());
        }
        match self.cfg.addressing_for(bucket) {
            AddressingStyle::Virtual => (
                format!("{bucket}.{}", ep.host_header()),
                format!("/{encoded_key}"),
            ),
            _ => {
                let path = if key.is_empty() {
                    format!("/{}", sign::uri_encode(bucket, true))
                } else {
                    format!("/{}/{encoded_key}", sign::uri_encode(bucket, true))
                };
                (ep.host_header(), path)
            }
        }
    }

    fn execute_once(&self, req: &S3Request<'_>) -> std::result::Result<S3Response, Failed> {
        let what = req.describe();
        let (host, path) = self.locate(req.bucket, req.key);
        let query = sign::canonical_query_string(&req.query);
        let scheme = if self.cfg.endpoint.tls {
            "https"
        } else {
            "http"
        };
        let url = if query.is_empty() {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{scheme}://{host}{path}?{query}")
        };

        let payload_hash = self.payload_hash(&req.body, &what)?;
        let mut headers = req.headers.clone();
        headers.push(("host".to_string(), host.clone()));
        let creds = SigningCredentials {
            access_key_id: &self.cfg.access_key_id,
            secret_access_key: self.cfg.secret_access_key.expose(),
            session_token: self.cfg.session_token.as_ref().map(|s| s.expose()),
        };
        let to_sign = sign::RequestToSign {
            method: req.method().as_str(),
            canonical_uri: &path,
            query: &req.query,
            headers: &headers,
            payload_sha256: &payload_hash,
        };
        let added = sign::sign(&to_sign, &creds, &self.cfg.region, "s3", SystemTime::now());
        headers.extend(added);

        let mut builder = http::Request::builder()
            .method(req.method().as_str())
            .uri(url.as_str());
        for (n, v) in &headers {
            builder = builder.header(n.as_str(), v.as_str());
        }
        let result = match req.body {
            RequestBody::Empty => {
                let body_len = if matches!(req.method(), Method::Put | Method::Post) {
                    Some(0)
                } else {
                    None
                };
                if let Some(l) = body_len {
                    builder = builder.header("content-length", l);
                }
                let request = builder
                    .body(())
                    .map_err(|e| StorageError::invalid("request", format!("{what}: {e}")))?;
                self.agent.run(request)
            }
            RequestBody::Bytes(b) => {
                builder = builder.header("content-length", b.len());
                let request = builder
                    .body(b)
                    .map_err(|e| StorageError::invalid("request", format!("{what}: {e}")))?;
                self.agent.run(request)
            }
            RequestBody::File { len, .. } => {
                builder = builder.header("content-length", len);
                let mut reader = req.body.reader();
                let request = builder
                    .body(ureq::SendBody::from_reader(&mut reader))
                    .map_err(|e| StorageError::invalid("request", format!("{what}: {e}")))?;
                self.agent.run(request)
            }
        };
        let resp = result.map_err(|e| Failed {
            unsent: never_sent(&e),
            err: transport_error(&what, e),
        })?;
        let (parts, body) = resp.into_parts();
        let status = parts.status.as_u16();
        if (200..300).contains(&status) || status == 304 {
            return Ok(S3Response {
                status,
                headers: parts.headers,
                body,
            });
        }
        let request_id = parts
            .headers
            .get("x-amz-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body_bytes = if req.method() == Method::Head {
            Vec::new()
        } else {
            let mut buf = Vec::new();
            // An error body is small; a broken one must not fail the mapping.
            let _ = body.into_reader().take(64 * 1024).read_to_end(&mut buf);
            buf
        };
        Err(map_error_reply(req, status, request_id, &body_bytes).into())
    }

    fn payload_hash(&self, body: &RequestBody<'_>, what: &str) -> Result<String> {
        match body {
            RequestBody::File { .. }
                if !self
                    .cfg
                    .payload_signing
                    .signs_file_bodies(&self.cfg.endpoint) =>
            {
                Ok(sign::UNSIGNED_PAYLOAD.to_string())
            }
            _ => body
                .sha256_hex()
                .map_err(|e| StorageError::io(format!("{what}: reading body"), e)),
        }
    }
}

/// A failed attempt, and whether its request surely never reached the server.
struct Failed {
    err: StorageError,
    /// No connection was made: nothing was sent, so even a write that is not blindly
    /// repeatable may be sent again.
    unsent: bool,
}

impl From<StorageError> for Failed {
    fn from(err: StorageError) -> Self {
        Failed { err, unsent: false }
    }
}

/// True for a transport error that happened before any byte of the request was sent: the name
/// did not resolve, the connection was refused (a server restarting) or not made in time.
fn never_sent(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

fn transport_error(what: &str, e: ureq::Error) -> StorageError {
    match e {
        ureq::Error::Timeout(t) => StorageError::Timeout {
            what: format!("{what} ({t})"),
        },
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => StorageError::Timeout {
            what: what.to_string(),
        },
        other => StorageError::Network {
            what: what.to_string(),
            detail: other.to_string(),
        },
    }
}

fn map_error_reply(
    req: &S3Request<'_>,
    status: u16,
    request_id: Option<String>,
    body: &[u8],
) -> StorageError {
    let parsed = xml::parse_error(body);
    let reply = ErrorReply {
        status,
        code: parsed.as_ref().map(|e| e.code.clone()),
        message: parsed
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| body_excerpt(body)),
        request_id: request_id.or_else(|| parsed.as_ref().and_then(|e| e.request_id.clone())),
    };
    error_for(req.op, req.bucket, req.key, reply)
}

fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let t = text.trim();
    if t.is_empty() {
        "(no details)".to_string()
    } else {
        t.replace(['\r', '\n'], " ")
    }
}

/// `true` if a reply with this status and code would be retried.
pub fn is_retryable(status: u16, code: Option<&str>) -> bool {
    is_retryable_status(status, code)
}

#[cfg(test)]
mod tests;
