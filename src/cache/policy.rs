//! What the data cache takes in, and when a random reader's object is fetched whole into it.
//!
//! Two kinds of readers, two rules, both relative to the cache's size:
//!
//! - **A sequential reader** is served at full speed by read-ahead; the cache would only help a
//!   later read after a remount (a re-read in the same mount comes from the kernel's page
//!   cache), and writing a large stream into it costs as much CPU as the read itself on a
//!   small machine, and evicts everything else. So a streamed object is admitted whole when
//!   it is at most [`STREAM_SHARE`] of the cache, and not at all when larger: a scan of large
//!   files leaves the cache as it was (scan resistance).
//! - **A random reader** waits a round trip for every read the cache cannot answer. When its
//!   reads of one object version keep missing — [`RandomReads`] counts the distinct blocks
//!   they touch — and the object is at most [`WHOLE_SHARE`] of the cache, the whole object is
//!   fetched into the cache in the background (`fs::whole`), and reads are served from
//!   blocks as they land. A larger object is never fetched whole: its reader gets the bytes it
//!   asks for (whole blocks only when that at most doubles them).

use std::collections::HashSet;

/// A streamed object is cached when its size is at most the cache's size divided by this:
/// eight such objects fit before one pushes another out.
pub const STREAM_SHARE: u64 = 8;
/// A randomly read object is fetched whole when its size is at most the cache's size divided
/// by this: the object a reader keeps seeking in is the hot one, but it leaves room for the
/// rest.
pub const WHOLE_SHARE: u64 = 2;
/// Distinct blocks a random reader touches in one object version before it is fetched whole,
/// at least. Enough that a program reading a header and an index (a zip's central directory,
/// a video's moov box, a Parquet footer) does not pull the whole object.
pub const LEARN_MIN_BLOCKS: usize = 16;
/// ... or this share (1/N) of the object's blocks, if more: reading a few scattered blocks of a
/// large object is not yet a reason to fetch all of it.
pub const LEARN_SHARE: u64 = 64;

/// True if a sequentially read object of `size` bytes is cached, in a cache of `max_bytes`.
pub fn admits_streamed(size: u64, max_bytes: u64) -> bool {
    size <= max_bytes / STREAM_SHARE
}

/// True if the whole blocks random reads of an object of `size` bytes fetch are kept, in a
/// cache of `max_bytes`: only for an object that could be fetched whole (an object larger than
/// that share is one a sequential read may have begun with, or one too large to keep).
pub fn admits_random(size: u64, max_bytes: u64) -> bool {
    size <= max_bytes / WHOLE_SHARE
}

/// True if a randomly read object of `size` bytes may be fetched whole into a cache of
/// `max_bytes` (it must also be more than one block: a single block is fetched whole anyway).
pub fn may_fetch_whole(size: u64, max_bytes: u64, block_size: u64) -> bool {
    size > block_size && size <= max_bytes / WHOLE_SHARE
}

/// The distinct blocks random reads of one object version touched, until they are enough to
/// fetch it whole.
#[derive(Debug)]
pub struct RandomReads {
    touched: HashSet<u64>,
    needed: usize,
}

impl RandomReads {
    /// For an object of `blocks` blocks.
    pub fn new(blocks: u64) -> Self {
        let share = usize::try_from(blocks / LEARN_SHARE).unwrap_or(usize::MAX);
        RandomReads {
            touched: HashSet::new(),
            needed: share.max(LEARN_MIN_BLOCKS),
        }
    }

    /// A random read touched blocks `first..=last`; true once the reads have touched enough
    /// distinct blocks (and from then on).
    pub fn touch(&mut self, first: u64, last: u64) -> bool {
        let mut b = first;
        while b <= last && self.touched.len() < self.needed {
            self.touched.insert(b);
            b += 1;
        }
        self.touched.len() >= self.needed
    }

    /// Distinct blocks touched so far (counted up to the number needed).
    pub fn touched(&self) -> usize {
        self.touched.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn streamed_objects_are_admitted_up_to_a_share() {
        let cache = 4 * GIB;
        assert!(admits_streamed(0, cache));
        assert!(admits_streamed(512 * MIB, cache));
        assert!(!admits_streamed(512 * MIB + 1, cache));
        assert!(!admits_streamed(GIB, cache), "the 1 GiB scan is not cached");
        assert!(
            !admits_streamed(1, 0),
            "no cache, nothing admitted but empty objects"
        );
    }

    #[test]
    fn only_objects_within_a_share_are_fetched_whole() {
        let cache = 4 * GIB;
        assert!(may_fetch_whole(GIB, cache, MIB));
        assert!(may_fetch_whole(2 * GIB, cache, MIB));
        assert!(!may_fetch_whole(2 * GIB + 1, cache, MIB));
        assert!(
            !may_fetch_whole(10 * GIB, cache, MIB),
            "larger than the cache"
        );
        assert!(
            !may_fetch_whole(MIB, cache, MIB),
            "one block: nothing to learn"
        );
    }

    #[test]
    fn random_reads_learn_after_enough_distinct_blocks() {
        // 1 GiB of 1 MiB blocks: 1024 / 64 = 16 blocks.
        let mut r = RandomReads::new(1024);
        for _ in 0..100 {
            assert!(
                !r.touch(7, 7),
                "the same block again and again is not learning"
            );
        }
        for b in 0..14 {
            assert!(!r.touch(100 + b, 100 + b));
        }
        assert_eq!(r.touched(), 15);
        assert!(r.touch(500, 501), "16 distinct blocks");
        assert!(r.touch(7, 7), "stays learnt");
        // 10 GiB: 160 blocks needed.
        let mut big = RandomReads::new(10 * 1024);
        assert!(!big.touch(0, 158));
        assert!(big.touch(1000, 1000));
        // A huge range counts no more than needed (no huge set).
        let mut r = RandomReads::new(1024);
        assert!(r.touch(0, u64::MAX - 1));
        assert_eq!(r.touched(), 16);
    }
}
