//! Random ids without a system call per id.
//!
//! `Uuid::new_v4()` asks the OS for randomness on every call (≈380 ns here),
//! which was a third of `track_ai`. Ids only need to be unique, not secret:
//! each thread seeds a 128-bit wyrand generator once from the OS and draws
//! from it afterwards. The wall clock's nanoseconds are mixed into every
//! draw, so a process forked after drawing (which copies the state) still
//! gives its child different ids.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<[u64; 2]> = Cell::new(seed());
}

fn seed() -> [u64; 2] {
    let r = uuid::Uuid::new_v4().as_u128();
    [r as u64, (r >> 64) as u64]
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
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        st[1] ^= nanos;
        let hi = wyrand(&mut st[0]);
        let lo = wyrand(&mut st[1]);
        s.set(st);
        (u128::from(hi) << 64) | u128::from(lo)
    })
}

/// A random UUID v4, lowercase and hyphenated.
pub(crate) fn uuid_v4() -> String {
    let u = uuid::Builder::from_random_bytes(random_u128().to_le_bytes()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    u.hyphenated().encode_lower(&mut buf).to_owned()
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
            assert_eq!(id, &id.to_lowercase());
            assert_eq!(id.len(), 36);
        }
    }
}
