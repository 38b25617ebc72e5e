//! Builds request bodies from pre-serialised items: JSON arrays of at most
//! `max_items` items, always under the 1 MiB request budget.

use super::wire::MAX_BYTES;

/// A body ready to send and the number of items in it.
pub(crate) struct Body {
    pub bytes: Vec<u8>,
    pub items: u64,
    /// The worker sequence number of the oldest item in it.
    pub min_seq: u64,
    /// Bytes charged for its items against `max_buffered_bytes`.
    pub cost: u64,
}

/// Accumulates items between a fixed prefix and suffix (`[`..`]` for arrays,
/// the OTLP envelope for spans).
pub(crate) struct Batcher {
    prefix: Vec<u8>,
    suffix: &'static [u8],
    max_items: usize,
    buf: Vec<u8>,
    items: u64,
    min_seq: u64,
    cost: u64,
}

impl Batcher {
    pub fn new(prefix: Vec<u8>, suffix: &'static [u8], max_items: usize) -> Self {
        Batcher {
            buf: prefix.clone(),
            prefix,
            suffix,
            max_items: max_items.max(1),
            items: 0,
            min_seq: 0,
            cost: 0,
        }
    }

    pub fn array(max_items: usize) -> Self {
        Self::new(b"[".to_vec(), b"]", max_items)
    }

    /// The oldest sequence number waiting here, if any item is.
    pub fn min_seq(&self) -> Option<u64> {
        (self.items > 0).then_some(self.min_seq)
    }

    /// Whether one item of `len` bytes fits in a request on its own.
    pub fn fits_alone(&self, len: usize) -> bool {
        self.prefix.len() + len + self.suffix.len() <= MAX_BYTES
    }

    /// Adds one item (items arrive in sequence order); returns the bodies
    /// that became complete (at most two).
    pub fn push(&mut self, item: &[u8], seq: u64, cost: u64, out: &mut Vec<Body>) {
        let extra = item.len() + usize::from(self.items > 0);
        if self.items > 0 && self.buf.len() + extra + self.suffix.len() > MAX_BYTES {
            out.extend(self.take());
        }
        if self.items > 0 {
            self.buf.push(b',');
        } else {
            self.min_seq = seq;
        }
        self.buf.extend_from_slice(item);
        self.items += 1;
        self.cost += cost;
        if self.items as usize >= self.max_items {
            out.extend(self.take());
        }
    }

    /// The partial batch, if any.
    pub fn take(&mut self) -> Option<Body> {
        if self.items == 0 {
            return None;
        }
        // The next body starts with room for one like this one (up to 64 KiB),
        // so it does not regrow from a few bytes through a dozen reallocations.
        let mut next = Vec::with_capacity((self.buf.len() + self.suffix.len()).min(64 * 1024));
        next.extend_from_slice(&self.prefix);
        let mut bytes = std::mem::replace(&mut self.buf, next);
        bytes.extend_from_slice(self.suffix);
        Some(Body {
            bytes,
            items: std::mem::take(&mut self.items),
            min_seq: self.min_seq,
            cost: std::mem::take(&mut self.cost),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_count() {
        let mut b = Batcher::array(2);
        let mut out = Vec::new();
        for i in 0..5 {
            b.push(format!("{i}").as_bytes(), i, 1, &mut out);
        }
        out.extend(b.take());
        let bodies: Vec<String> = out
            .iter()
            .map(|b| String::from_utf8(b.bytes.clone()).unwrap())
            .collect();
        assert_eq!(bodies, ["[0,1]", "[2,3]", "[4]"]);
        assert_eq!(out.iter().map(|b| b.items).sum::<u64>(), 5);
        assert_eq!(out.iter().map(|b| b.cost).sum::<u64>(), 5);
        assert_eq!(out.iter().map(|b| b.min_seq).collect::<Vec<_>>(), [0, 2, 4]);
    }

    #[test]
    fn splits_by_bytes() {
        let mut b = Batcher::array(10);
        let mut out = Vec::new();
        let big = vec![b'1'; 600 * 1024];
        b.push(&big, 0, 1, &mut out);
        b.push(&big, 1, 1, &mut out);
        assert_eq!(out.len(), 1, "first body closed before exceeding 1 MiB");
        assert!(out[0].bytes.len() <= MAX_BYTES);
        assert_eq!(b.min_seq(), Some(1));
    }
}
