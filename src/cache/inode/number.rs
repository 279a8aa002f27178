//! Which inode number a node gets: one derived from its key, so that a file keeps its number
//! across remounts as it does on a disk.
//!
//! Programs keep inode numbers between runs: git's index records each file's `st_ino` beside its
//! size and times, and takes a file whose number changed for one that may have changed, reading
//! (here: downloading) it again to hash it; `tar --listed-incremental --no-check-device` takes a
//! directory whose number changed for a new one and dumps it whole. Numbers counted up in the order the kernel
//! happened to look names up changed at every mount. A number is instead a hash of the node's
//! path (its key without the trailing `/`, so a name keeps its number when a file there is
//! replaced by a directory) when the node is first known; a renamed node keeps the number it
//! has, as on a disk. A number already taken (a node renamed away from the name, or still open
//! after its unlink, or a collision of two hashes) moves on to the next free one: the node
//! gets a number of its own, just not the same one at the next mount.

/// The number a node of key `path` is given, unless `taken` says it is in use. Never 0 (no
/// inode) nor 1 (the root), and below 2^63, so that programs that hold `st_ino` in a signed
/// 64-bit integer see it positive.
pub(super) fn number_for(path: &[u8], taken: impl Fn(u64) -> bool) -> u64 {
    first_free(fnv1a(path), taken)
}

/// `start` (its low 63 bits), or the first number after it that is free.
fn first_free(start: u64, taken: impl Fn(u64) -> bool) -> u64 {
    let mut n = start;
    loop {
        n &= u64::MAX >> 1;
        if n > super::ROOT_INO && !taken(n) {
            return n;
        }
        n = n.wrapping_add(1);
    }
}

/// 64-bit FNV-1a: the same number for the same bytes on every machine and every run (the
/// standard library's hasher is seeded at random per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_has_one_number_on_every_run() {
        // Pinned: a change of the hash would give every file of every bucket a new number at
        // the next mount (and every git repository on a mount a full re-read).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let n = number_for(b"repo/src/main.c", |_| false);
        assert_eq!(n, number_for(b"repo/src/main.c", |_| false));
        assert_ne!(n, number_for(b"repo/src/main.h", |_| false));
        assert!(n > 1 && n < 1 << 63);
    }

    #[test]
    fn a_taken_number_moves_on_to_the_next_free_one() {
        let n = number_for(b"f", |_| false);
        assert_eq!(number_for(b"f", |x| x == n), (n + 1) & (u64::MAX >> 1));
        assert_eq!(
            number_for(b"f", |x| x == n || x == n + 1),
            (n + 2) & (u64::MAX >> 1)
        );
    }

    #[test]
    fn zero_and_the_roots_number_are_never_given() {
        assert_eq!(first_free(0, |_| false), 2);
        assert_eq!(first_free(1 << 63, |_| false), 2);
        assert_eq!(first_free(1, |x| x == 2), 3);
        assert_eq!(first_free(u64::MAX, |_| false), u64::MAX >> 1);
        assert_eq!(first_free(u64::MAX >> 1, |x| x == u64::MAX >> 1), 2);
    }

    #[test]
    fn a_table_gives_a_key_the_same_number_whatever_the_order_it_learns_keys_in() {
        use crate::cache::inode::{InodeTable, NodeAttr, NodeKind, ROOT_INO};
        use std::time::{Duration, Instant};
        let later = Instant::now() + Duration::from_secs(5);
        let file = NodeAttr {
            size: 1,
            ..NodeAttr::dir()
        };
        let mut one = InodeTable::new("pre/");
        let d1 = one.upsert_child(ROOT_INO, "d", NodeKind::Dir, NodeAttr::dir(), later);
        let a1 = one.upsert_child(d1, "a", NodeKind::File, file.clone(), later);
        let b1 = one.upsert_child(d1, "b", NodeKind::File, file.clone(), later);
        // Another mount, which happens to look the names up in another order.
        let mut two = InodeTable::new("pre/");
        let d2 = two.upsert_child(ROOT_INO, "d", NodeKind::Dir, NodeAttr::dir(), later);
        let b2 = two.upsert_child(d2, "b", NodeKind::File, file.clone(), later);
        let a2 = two.upsert_child(d2, "a", NodeKind::File, file.clone(), later);
        assert_eq!((d1, a1, b1), (d2, a2, b2));
        assert_eq!(a1, number_for(b"pre/d/a", |_| false));
        // A renamed node keeps its number; a new file under the old name gets another one.
        assert_eq!(one.move_child(d1, "a", d1, "c"), Some(a1));
        let new_a = one.upsert_child(d1, "a", NodeKind::File, file, later);
        assert_ne!(new_a, a1);
        assert_eq!(one.child(d1, "c"), Some(a1));
    }
}
