//! One S3 request described without HTTP details ([`S3Request`], built by its methods so
//! callers never change when a request grows a field), and one successful reply with its body
//! unread ([`S3Response`]). [`super::client::S3Client`] sends the one and hands back the other.

use std::borrow::Cow;
use std::io::Read;

use ureq::http;

use super::body::RequestBody;
use super::error::{Result, StorageError};
use super::operation::{Method, Operation};

/// Largest error or XML reply body we read into memory; S3's are a few KiB.
const MAX_SMALL_BODY: u64 = 16 * 1024 * 1024;

/// One S3 request, described without HTTP details.
#[derive(Debug, Clone)]
pub struct S3Request<'a> {
    pub(super) op: Operation,
    pub(super) bucket: &'a str,
    pub(super) key: &'a str,
    pub(super) query: Vec<(String, String)>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: RequestBody<'a>,
    pub(super) idempotent: bool,
}

impl<'a> S3Request<'a> {
    /// A request of kind `op` on `bucket` (and `key`; "" for bucket-level requests). The
    /// operation gives the HTTP method and the IAM action named if the request is denied.
    pub fn new(op: Operation, bucket: &'a str, key: &'a str) -> Self {
        S3Request {
            op,
            bucket,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: RequestBody::Empty,
            idempotent: true,
        }
    }

    /// Add a query parameter (raw; encoded when sent).
    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_string(), value.into()));
        self
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Add an optional header.
    pub fn header_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.header(name, v),
            None => self,
        }
    }

    /// Add several headers.
    pub fn headers(mut self, h: impl IntoIterator<Item = (String, String)>) -> Self {
        for (n, v) in h {
            self.headers.push((n.to_ascii_lowercase(), v));
        }
        self
    }

    /// Set the body.
    pub fn body(mut self, body: RequestBody<'a>) -> Self {
        self.body = body;
        self
    }

    /// Mark the request as not safe to repeat (it is then never retried).
    pub fn not_idempotent(mut self) -> Self {
        self.idempotent = false;
        self
    }

    /// `METHOD s3://bucket/key` for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} s3://{}/{}",
            self.method().as_str(),
            self.bucket,
            self.key
        )
    }

    /// What kind of request this is.
    pub fn operation(&self) -> Operation {
        self.op
    }

    pub(super) fn method(&self) -> Method {
        self.op.method()
    }
}

/// A successful reply; the body is unread.
#[derive(Debug)]
pub struct S3Response {
    /// HTTP status (2xx, or 304).
    pub status: u16,
    /// Reply headers.
    pub headers: http::HeaderMap,
    pub(super) body: ureq::Body,
}

impl S3Response {
    /// A header's value as text, if present and printable ASCII. (A content header such as
    /// `Content-Disposition` holding raw UTF-8 is left out: sent again raw with a rewrite it
    /// fails the signature check of servers such as moto, 403; user metadata is read in any
    /// case by [`S3Response::header_pairs`] and sent again RFC 2047-encoded.)
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All headers as `(lower-case name, value)` pairs: UTF-8 values as they are, others read
    /// as Latin-1 (HTTP's old default), so that no user metadata is dropped.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        self.headers.iter().map(|(n, v)| {
            let value = match std::str::from_utf8(v.as_bytes()) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => Cow::Owned(v.as_bytes().iter().map(|&b| char::from(b)).collect()),
            };
            (n.as_str(), value)
        })
    }

    /// Content-Length, if the server sent a valid one.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// The body as a stream (no size limit; callers bound what they read).
    pub fn into_reader(self) -> impl Read + Send + 'static {
        self.body.into_reader()
    }

    /// Read a small (XML) body, at most 16 MiB.
    pub fn read_small_body(mut self, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.body
            .as_reader()
            .take(MAX_SMALL_BODY)
            .read_to_end(&mut out)
            .map_err(|e| StorageError::Network {
                what: what.to_string(),
                detail: e.to_string(),
            })?;
        Ok(out)
    }
}
