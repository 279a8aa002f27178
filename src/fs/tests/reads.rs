//! Which blocks reads keep in the data cache (`cache::policy`): a read that seeks keeps the
//! whole blocks it fetched only in an object that could be fetched whole; a larger object is
//! left out, even when its first read does not start at 0 (as the kernel's out-of-order reads
//! of a sequential reader may).

use super::*;

const MIB_U64: u64 = MIB as u64;

/// Read `[offset, offset + len)` of `path` in one call on a fresh open, and close.
fn read_once(fx: &Fx, path: &str, offset: u64, len: u32) -> Vec<u8> {
    let fh = fx.open(path, libc::O_RDONLY).unwrap();
    let got = fx.read(fh, offset, len).unwrap();
    fx.close(fh).unwrap();
    got
}

fn cached_blocks(fx: &Fx) -> usize {
    fx.fs.data_cache.as_ref().map_or(0, |c| c.blocks())
}

#[test]
fn a_seek_keeps_the_blocks_of_an_object_that_could_be_fetched_whole() {
    let fx = setup().mount();
    let max = fx.fs.options().data_cache_size;
    let data = bytes(4 * MIB, 7);
    assert!((data.len() as u64) <= max / crate::cache::policy::WHOLE_SHARE);
    fx.put_behind("small.bin", &data);
    let got = read_once(&fx, "small.bin", 2 * MIB_U64, MIB as u32);
    assert_eq!(got, &data[2 * MIB..3 * MIB]);
    assert_eq!(cached_blocks(&fx), 1, "the whole block read is kept");
}

#[test]
fn a_seek_in_an_object_larger_than_its_share_keeps_nothing() {
    let fx = setup().mount();
    let max = fx.fs.options().data_cache_size;
    let size = (max / crate::cache::policy::WHOLE_SHARE + 2 * MIB_U64) as usize;
    let data = bytes(size, 8);
    fx.put_behind("big.bin", &data);
    let got = read_once(&fx, "big.bin", 8 * MIB_U64, MIB as u32);
    assert_eq!(got, &data[8 * MIB..9 * MIB]);
    assert_eq!(
        cached_blocks(&fx),
        0,
        "no block of the large object is kept"
    );
}
