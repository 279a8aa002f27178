//! Request bodies: nothing, bytes in memory, or a range of a file read with `pread`.
//!
//! A body can be read any number of times (a retry resends the same bytes, a look after a
//! lost reply compares them with the object, the in-memory store keeps them), so a file body
//! never moves the file's position: it is read with `pread` from `offset`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use md5::Md5;
use sha2::{Digest, Sha256};

/// Bytes read at a time when hashing or copying a file body.
const CHUNK: usize = 256 * 1024;

/// A request body.
#[derive(Debug, Clone, Copy)]
pub enum RequestBody<'a> {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// `len` bytes of `file` from `offset` (read with `pread`, so the file position is untouched
    /// and a retry can send the same bytes again).
    File {
        /// The file.
        file: &'a File,
        /// Where the body starts.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

impl RequestBody<'_> {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Empty => 0,
            RequestBody::Bytes(b) => b.len() as u64,
            RequestBody::File { len, .. } => *len,
        }
    }

    /// True for a body of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader of the whole body (a file that turns out shorter is an error).
    pub fn reader(&self) -> Box<dyn Read + '_> {
        match *self {
            RequestBody::Empty => Box::new(std::io::empty()),
            RequestBody::Bytes(b) => Box::new(b),
            RequestBody::File { file, offset, len } => Box::new(FileRangeReader {
                file,
                pos: offset,
                end: offset.saturating_add(len),
            }),
        }
    }

    /// Bytes `[offset, offset + buf.len())` of the body.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "shorter than its length",
            ));
        }
        match *self {
            RequestBody::Empty => Ok(()),
            RequestBody::Bytes(b) => {
                // In range: checked against the length above.
                let start = offset as usize;
                buf.copy_from_slice(&b[start..start + buf.len()]);
                Ok(())
            }
            RequestBody::File {
                file, offset: at, ..
            } => file.read_exact_at(buf, at + offset),
        }
    }

    /// The whole body in memory.
    pub fn to_vec(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        self.reader().read_to_end(&mut out)?;
        Ok(out)
    }

    /// The MD5 of the body as lower-case hex: what S3 makes the ETag of a single PUT or part.
    pub fn md5_hex(&self) -> std::io::Result<String> {
        self.digest_hex::<Md5>()
    }

    /// The SHA-256 of the body as lower-case hex (SigV4's payload hash).
    pub fn sha256_hex(&self) -> std::io::Result<String> {
        self.digest_hex::<Sha256>()
    }

    fn digest_hex<D: Digest>(&self) -> std::io::Result<String> {
        let mut digest = D::new();
        match *self {
            RequestBody::Empty => {}
            RequestBody::Bytes(b) => digest.update(b),
            RequestBody::File { .. } => {
                let mut reader = self.reader();
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    digest.update(&buf[..n]);
                }
            }
        }
        Ok(hex::encode(digest.finalize()))
    }
}

/// Reads `[pos, end)` of a file with `pread`; a file that ends early is an error.
pub(crate) struct FileRangeReader<'a> {
    pub(crate) file: &'a File,
    pub(crate) pos: u64,
    pub(crate) end: u64,
}

impl Read for FileRangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while it was being uploaded",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_bytes_and_file_ranges() {
        assert_eq!(
            RequestBody::Bytes(b"hello").md5_hex().unwrap(),
            "5d41402abc4b2a76b9719d911017c592"
        );
        assert_eq!(
            RequestBody::Empty.md5_hex().unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            RequestBody::Empty.sha256_hex().unwrap(),
            crate::s3::sign::EMPTY_SHA256
        );
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"xxhelloyy").unwrap();
        let slice = RequestBody::File {
            file: &f,
            offset: 2,
            len: 5,
        };
        assert_eq!(slice.md5_hex().unwrap(), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(
            slice.sha256_hex().unwrap(),
            RequestBody::Bytes(b"hello").sha256_hex().unwrap()
        );
        assert_eq!(slice.to_vec().unwrap(), b"hello");
        assert_eq!(slice.len(), 5);
        let mut buf = [0u8; 3];
        slice.read_at(1, &mut buf).unwrap();
        assert_eq!(&buf, b"ell");
        assert!(slice.read_at(3, &mut buf).is_err(), "past the body's end");
        let past_end = RequestBody::File {
            file: &f,
            offset: 5,
            len: 10,
        };
        assert!(past_end.md5_hex().is_err(), "a short file is an error");
        assert!(past_end.to_vec().is_err());
        assert!(RequestBody::Bytes(b"ab").read_at(1, &mut buf).is_err());
        RequestBody::Bytes(b"abcd").read_at(1, &mut buf).unwrap();
        assert_eq!(&buf, b"bcd");
        assert!(RequestBody::Empty.is_empty());
    }
}
