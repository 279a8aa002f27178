//! Self-describing file contents for concurrency tests: a fixed-size header naming the writer,
//! its sequence number and the payload length, then a payload derived from (writer, sequence).
//! [`check`] says whether some bytes are exactly one complete version, so a torn object or a mix
//! of two versions is caught, and names that version.

use super::random_bytes;

/// Header length: `S3V w=WWWW n=NNNNNNNN len=LLLLLLLLLL\n`.
pub const HEADER_LEN: usize = 37;

/// One version of a file: who wrote it and which of its writes it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Writer id.
    pub writer: u32,
    /// The writer's sequence number.
    pub seq: u64,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "w{}#{}", self.writer, self.seq)
    }
}

fn seed(v: Version) -> u64 {
    (u64::from(v.writer) << 40) ^ v.seq ^ 0x5EED_0000_0000_0000
}

/// The bytes of version `v` with a payload of `len` bytes.
pub fn content(v: Version, len: usize) -> Vec<u8> {
    let mut out = format!("S3V w={:04} n={:08} len={:010}\n", v.writer, v.seq, len).into_bytes();
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(&random_bytes(len, seed(v)));
    out
}

fn header(bytes: &[u8]) -> Result<(Version, usize), String> {
    let h = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| format!("{} bytes: shorter than a header", bytes.len()))?;
    let h = std::str::from_utf8(h).map_err(|_| "header is not text".to_string())?;
    let field = |name: &str, from: usize, to: usize| -> Result<u64, String> {
        h.get(from..to)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad {name} in header {h:?}"))
    };
    if !h.starts_with("S3V w=") || !h.ends_with('\n') {
        return Err(format!("not a version header: {h:?}"));
    }
    let writer = field("writer", 6, 10)? as u32;
    let seq = field("sequence", 13, 21)?;
    let len = field("length", 26, 36)? as usize;
    Ok((Version { writer, seq }, len))
}

/// `Ok(version)` if `bytes` is exactly one complete version, else what is wrong.
pub fn check(bytes: &[u8]) -> Result<Version, String> {
    let (v, len) = header(bytes)?;
    if bytes.len() != HEADER_LEN + len {
        return Err(format!(
            "{v}: {} bytes, the header says {}",
            bytes.len(),
            HEADER_LEN + len
        ));
    }
    if bytes[HEADER_LEN..] != random_bytes(len, seed(v))[..] {
        return Err(format!(
            "{v}: payload is not that version's (mixed or torn)"
        ));
    }
    Ok(v)
}

/// True if `bytes` is empty, or a prefix of one complete version (what a reader may see while
/// that version is being written into the file in the same mount).
pub fn is_prefix_of_a_version(bytes: &[u8]) -> bool {
    if bytes.len() < HEADER_LEN {
        return b"S3V w=".starts_with(&bytes[..bytes.len().min(6)]);
    }
    match header(bytes) {
        Ok((v, len)) => {
            bytes.len() <= HEADER_LEN + len
                && bytes[HEADER_LEN..] == random_bytes(bytes.len() - HEADER_LEN, seed(v))[..]
        }
        Err(_) => false,
    }
}
