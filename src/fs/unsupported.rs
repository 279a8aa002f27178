//! The FUSE operations the mount does not support, and the errno each one answers at once.
//!
//! `fuser`'s default for an operation a file system does not implement logs a multi-line
//! `WARN [Not Implemented] …` and answers ENOSYS. Programs call several of these all the time
//! (`cp` asks for `copy_file_range`, `isatty()` on a file is an `ioctl(TCGETS)`), so the default
//! buried the warnings a user must act on under noise. [`fuse`](super::fuse) implements each of
//! them and answers the errno below, logged once per mount at debug. (`copy_file_range` is
//! supported: a whole-object copy is made on the server, [`copy`](super::copy); other ranges
//! answer EOPNOTSUPP per call, not ENOSYS, which would turn the server-side copy off for the
//! whole mount.)
//!
//! ENOSYS is chosen where the kernel remembers it for the whole mount and falls back to its
//! generic code, so the operation is asked for once and then never again: `lseek` (SEEK_DATA/SEEK_HOLE as for a file
//! without holes) and `poll` (always ready, right for regular files). (`fallocate` is
//! supported, [`allocate`](super::allocate); its other modes answer EOPNOTSUPP per call.)
//! `ioctl` answers ENOTTY, what an ioctl on a file that is not a device
//! gets everywhere.

use std::sync::atomic::{AtomicU32, Ordering};

/// One operation the mount does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// `ioctl(2)`: no device here.
    Ioctl,
    /// SEEK_DATA/SEEK_HOLE: the kernel answers them as for a file without holes.
    Lseek,
    /// `poll(2)` on a file: the kernel answers "ready".
    Poll,
    /// POSIX lock test; the kernel only asks with FUSE_POSIX_LOCKS, which the mount does not
    /// ask for: locks stay local to this machine.
    Getlk,
    /// POSIX lock set (see [`Unsupported::Getlk`]).
    Setlk,
    /// Block mapping: only for block-device-backed file systems.
    Bmap,
    /// Hard links: S3 has one name per object.
    Link,
}

impl Unsupported {
    /// Every variant, for tests.
    pub const ALL: [Unsupported; 7] = [
        Unsupported::Ioctl,
        Unsupported::Lseek,
        Unsupported::Poll,
        Unsupported::Getlk,
        Unsupported::Setlk,
        Unsupported::Bmap,
        Unsupported::Link,
    ];

    /// The errno the kernel gets.
    pub fn errno(self) -> i32 {
        match self {
            Unsupported::Ioctl => libc::ENOTTY,
            Unsupported::Link => libc::ENOTSUP,
            Unsupported::Lseek
            | Unsupported::Poll
            | Unsupported::Getlk
            | Unsupported::Setlk
            | Unsupported::Bmap => libc::ENOSYS,
        }
    }

    /// The operation's name, as in the log.
    pub fn name(self) -> &'static str {
        match self {
            Unsupported::Ioctl => "ioctl",
            Unsupported::Lseek => "lseek",
            Unsupported::Poll => "poll",
            Unsupported::Getlk => "getlk",
            Unsupported::Setlk => "setlk",
            Unsupported::Bmap => "bmap",
            Unsupported::Link => "link",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Which unsupported operations have been logged on this mount (each once, at debug).
#[derive(Debug, Default)]
pub struct UnsupportedLog {
    seen: AtomicU32,
}

impl UnsupportedLog {
    /// Log `op`'s first call at debug; return the errno to answer.
    pub fn answer(&self, op: Unsupported) -> i32 {
        let before = self.seen.fetch_or(op.bit(), Ordering::Relaxed);
        if before & op.bit() == 0 {
            log::debug!(
                "{}: not supported, answered {} (said once per mount)",
                op.name(),
                std::io::Error::from_raw_os_error(op.errno())
            );
        }
        op.errno()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_has_its_own_bit_and_ioctl_is_enotty() {
        let bits: u32 = Unsupported::ALL.iter().map(|o| o.bit()).sum();
        assert_eq!(bits.count_ones() as usize, Unsupported::ALL.len());
        assert_eq!(Unsupported::Ioctl.errno(), libc::ENOTTY);
        let log = UnsupportedLog::default();
        for op in Unsupported::ALL {
            assert_eq!(log.answer(op), op.errno());
            assert_eq!(
                log.answer(op),
                op.errno(),
                "{} answers the same again",
                op.name()
            );
        }
        assert_eq!(
            log.seen.load(Ordering::Relaxed),
            bits,
            "every operation recorded as logged"
        );
    }
}
