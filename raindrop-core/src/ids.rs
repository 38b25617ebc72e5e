//! Random ids without a system call per id.
//!
//! Asking the OS for randomness on every id cost ≈380 ns here, a third of
//! `track_ai`. Ids only need to be unique, not secret: each thread seeds a
//! 128-bit wyrand generator once (from std's randomly keyed `RandomState`,
//! the thread id and the clock) and draws from it afterwards. The wall
//! clock's nanoseconds are mixed into every draw, so a process forked after
//! drawing (which copies the state) still gives its child different ids.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static STATE: Cell<[u64; 2]> = Cell::new([seed(0), seed(1)]);
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A seed from a fresh, OS-keyed SipHash over the thread id and the clock.
fn seed(lane: u64) -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(lane);
    h.write_u64(now_nanos());
    h.write(format!("{:?}", std::thread::current().id()).as_bytes());
    h.finish()
}

/// One wyrand step.
fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state).wrapping_mul(u128::from(*state ^ 0xe703_7ed1_a0b4_28db));
    (t >> 64) as u64 ^ t as u64
}

/// 128 random bits from two independent streams.
pub(crate) fn random_u128() -> u128 {
    STATE.with(|s| {
        let mut st = s.get();
        st[1] ^= now_nanos();
        let hi = wyrand(&mut st[0]);
        let lo = wyrand(&mut st[1]);
        s.set(st);
        (u128::from(hi) << 64) | u128::from(lo)
    })
}

/// A random UUID v4, lowercase and hyphenated (8-4-4-4-12).
pub(crate) fn uuid_v4() -> String {
    let mut b = random_u128().to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn uuids_are_v4_and_distinct_across_threads() {
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..10_000).map(|_| uuid_v4()).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let set: HashSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        for id in ids.iter().take(100) {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4);
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id, &u.hyphenated().to_string());
        }
    }
}
