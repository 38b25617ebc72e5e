//! Making one item fit one request (1 MiB of JSON) by cutting its text
//! instead of dropping it.
//!
//! The character cap (`max_text_field_chars`) bounds each field, but not the
//! item: two capped fields, CJK text (3 bytes a character) or text full of
//! characters JSON escapes can still exceed the request limit. When the
//! serialised item does, the longest strings are cut down to a common
//! length, measured in escaped JSON bytes, until the excess is gone; each cut
//! string ends with [`TRUNCATION_MARKER`]. Only an item that still does not
//! fit (its size is in keys and structure, not text) is dropped as
//! `Oversize`.

use serde_json::{Map, Value};

use super::wire::{cap, MAX_BYTES, TRUNCATION_MARKER};
use crate::item::{AiData, EventRecord, IdentifyRecord, InteractionUpdate, SignalRecord};
use crate::model::Attachment;
use crate::span::{AttributeValue, SpanRecord};

/// Room left below [`MAX_BYTES`] when cutting, for the array brackets or
/// OTLP envelope of a request holding the item alone.
const SLACK: usize = 1024;

/// Bytes `s` takes inside a JSON string, as serde_json writes it.
pub(crate) fn json_len(s: &str) -> usize {
    s.bytes().map(escaped_len).sum()
}

fn escaped_len(b: u8) -> usize {
    match b {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0x00..=0x1f => 6,
        _ => 1,
    }
}

/// Cuts `s` so that its escaped JSON length is at most `budget` bytes,
/// marker included (without a marker when the budget cannot hold it).
fn cut_to(s: &mut String, budget: usize) {
    let marker = TRUNCATION_MARKER.len();
    let keep_budget = budget.saturating_sub(marker);
    let with_marker = budget > marker;
    let limit = if with_marker { keep_budget } else { budget };
    let mut used = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let mut buf = [0u8; 4];
        let w: usize = c.encode_utf8(&mut buf).bytes().map(escaped_len).sum();
        if used + w > limit {
            break;
        }
        used += w;
        end = i + c.len_utf8();
    }
    s.truncate(end);
    if with_marker {
        s.push_str(TRUNCATION_MARKER);
    }
    s.shrink_to_fit();
}

/// Cuts the longest of `fields` to one common length so that at least
/// `excess` bytes of JSON are gone. Returns whether that was possible.
fn shrink(mut fields: Vec<&mut String>, excess: usize) -> bool {
    let mut lens: Vec<usize> = fields.iter().map(|s| json_len(s)).collect();
    let total: usize = lens.iter().sum();
    // Each cut string gains the marker back; ask for that much more.
    let marker = TRUNCATION_MARKER.len();
    lens.sort_unstable_by(|a, b| b.cmp(a));
    // Find the highest level such that cutting every longer field down to it
    // frees `excess` plus a marker per cut field.
    let mut level = None;
    let mut above = 0usize; // sum of the lengths of the fields above the level
    for (n, len) in lens.iter().enumerate() {
        above += len;
        let count = n + 1;
        let next = lens.get(n + 1).copied().unwrap_or(0);
        // With the first `count` fields cut to `t`: freed = above - count * t - count * marker.
        let need = excess + count * marker;
        if above >= need + count * next {
            let t = (above - need) / count;
            level = Some(t.max(next));
            break;
        }
    }
    let Some(level) = level else {
        return total >= excess && {
            for f in fields.iter_mut() {
                f.clear();
            }
            true
        };
    };
    for f in fields {
        if json_len(f) > level + marker {
            cut_to(f, level + marker);
        }
    }
    true
}

/// Applies the character cap in place, so lengths measured after it are
/// what will be sent.
fn cap_in_place(s: &mut String, max_chars: usize) {
    if let std::borrow::Cow::Owned(c) = cap(s, max_chars) {
        *s = c;
    }
}

fn strings_in<'a>(map: &'a mut Map<String, Value>, out: &mut Vec<&'a mut String>) {
    let mut stack: Vec<&'a mut Value> = map.values_mut().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::Object(m) => stack.extend(m.values_mut()),
            _ => {}
        }
    }
}

fn ai_strings<'a>(ai: &'a mut AiData, max_chars: usize, out: &mut Vec<&'a mut String>) {
    for s in [&mut ai.input, &mut ai.output].into_iter().flatten() {
        cap_in_place(s, max_chars);
        out.push(s);
    }
}

fn attachment_strings<'a>(a: &'a mut [Attachment], out: &mut Vec<&'a mut String>) {
    out.extend(a.iter_mut().map(|a| &mut a.value));
}

/// Serialises with `encode` into `out`, cutting text with `texts` when the
/// result is over the limit; `Err` with its size when the item cannot be
/// made to fit. `out` is the worker's reused buffer: on `Ok` it holds the item.
fn fitted<T>(
    item: &mut T,
    out: &mut Vec<u8>,
    encode: impl Fn(&T, &mut Vec<u8>),
    texts: impl for<'a> Fn(&'a mut T, &mut Vec<&'a mut String>),
) -> Result<(), usize> {
    encode(item, out);
    if out.len() <= MAX_BYTES - SLACK {
        return Ok(());
    }
    // Two rounds: the first one's lengths are measured before the character
    // cap was applied in place by `texts`, the second's after.
    let mut len = out.len();
    for _ in 0..2 {
        let mut fields = Vec::new();
        texts(item, &mut fields);
        if !shrink(fields, len - (MAX_BYTES - SLACK)) {
            return Err(len);
        }
        encode(item, out);
        if out.len() <= MAX_BYTES - SLACK {
            return Ok(());
        }
        len = out.len();
    }
    Err(len)
}

/// An `events/track` event that fits a request, written into `out`, or its
/// size when it cannot fit.
pub(crate) fn event(e: &mut EventRecord, max_chars: usize, out: &mut Vec<u8>) -> Result<(), usize> {
    fitted(
        e,
        out,
        |e, out| super::wire::track_event(e, max_chars, out),
        |e, out| {
            if let Some(ai) = e.ai.as_mut() {
                ai_strings(ai, max_chars, out);
            }
            attachment_strings(&mut e.attachments, out);
            strings_in(&mut e.properties, out);
        },
    )
}

/// A signal that fits a request, written into `out`.
pub(crate) fn signal(s: &mut SignalRecord, out: &mut Vec<u8>) -> Result<(), usize> {
    fitted(s, out, super::wire::signal, |s, out| {
        strings_in(&mut s.properties, out)
    })
}

/// An identify call that fits a request, written into `out`.
pub(crate) fn identify(i: &mut IdentifyRecord, out: &mut Vec<u8>) -> Result<(), usize> {
    fitted(i, out, super::wire::identify, |i, out| {
        strings_in(&mut i.traits, out)
    })
}

/// A span that fits a request, written into `out`.
pub(crate) fn span(s: &mut SpanRecord, max_chars: usize, out: &mut Vec<u8>) -> Result<(), usize> {
    fitted(
        s,
        out,
        |s, out| super::wire::span(s, max_chars, out),
        |s, out| {
            for (_, v) in s.attributes.iter_mut() {
                match v {
                    AttributeValue::String(t) => {
                        cap_in_place(t, max_chars);
                        out.push(t);
                    }
                    AttributeValue::StringArray(a) => {
                        for t in a.iter_mut() {
                            cap_in_place(t, max_chars);
                            out.push(t);
                        }
                    }
                    _ => {}
                }
            }
        },
    )
}

/// An interaction update's text cut to fit a request (attachments beyond
/// what fits are split off before this, see [`split_attachments`]). Its
/// own buffer: it is the body of a request of its own.
pub(crate) fn update(u: &mut InteractionUpdate, max_chars: usize) -> Result<Vec<u8>, usize> {
    let mut out = Vec::new();
    fitted(
        u,
        &mut out,
        |u, out| *out = super::wire::partial(u, max_chars),
        |u, out| {
            ai_strings(&mut u.ai, max_chars, out);
            attachment_strings(&mut u.attachments, out);
            strings_in(&mut u.properties, out);
        },
    )?;
    Ok(out)
}

/// Splits off the attachments of `u` that do not fit one request beside the
/// rest of it, keeping at least one: they travel in later requests of the
/// same interaction, in order. Empty when everything fits.
pub(crate) fn split_attachments(u: &mut InteractionUpdate, max_chars: usize) -> Vec<Attachment> {
    if u.attachments.len() < 2 || super::wire::partial(u, max_chars).len() <= MAX_BYTES - SLACK {
        return Vec::new();
    }
    let atts = std::mem::take(&mut u.attachments);
    let base = super::wire::partial(u, max_chars).len() + 32;
    let mut used = base;
    let mut keep = 0;
    for a in &atts {
        let len = serde_json::to_vec(&super::wire::sparse(a)).map_or(0, |b| b.len()) + 1;
        if keep > 0 && used + len > MAX_BYTES - SLACK {
            break;
        }
        used += len;
        keep += 1;
    }
    let mut atts = atts;
    let rest = atts.split_off(keep);
    u.attachments = atts;
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_lengths_match_serde_json() {
        for s in ["plain", "q\"uote\\", "\n\t\u{1}\u{7f}", "日本語", "😀 é"] {
            let encoded = serde_json::to_string(s).unwrap();
            assert_eq!(json_len(s) + 2, encoded.len(), "{s:?}");
        }
    }

    #[test]
    fn cut_strings_end_with_the_marker_within_budget() {
        let mut s = "日本語".repeat(1000);
        cut_to(&mut s, 100);
        assert!(s.ends_with(TRUNCATION_MARKER));
        assert!(json_len(&s) <= 100);
        assert!(json_len(&s) > 100 - 3, "as much kept as fits");
        let mut tiny = "abcdef".to_owned();
        cut_to(&mut tiny, 4);
        assert_eq!(tiny, "abcd", "no room for the marker: hard cut");
    }

    #[test]
    fn shrinking_cuts_the_longest_first_to_a_common_level() {
        let mut a = "a".repeat(1000);
        let mut b = "b".repeat(300);
        let mut c = "c".repeat(10);
        assert!(shrink(vec![&mut a, &mut b, &mut c], 800));
        let freed = 1310 - (a.len() + b.len() + c.len());
        assert!(freed >= 800, "freed {freed}");
        assert_eq!(c.len(), 10, "short fields are left alone");
        assert!(a.ends_with(TRUNCATION_MARKER) && b.ends_with(TRUNCATION_MARKER));
        assert!(a.len().abs_diff(b.len()) <= 1, "{} vs {}", a.len(), b.len());
    }

    #[test]
    fn a_single_long_field_is_cut_alone() {
        let mut a = "x".repeat(10_000);
        let mut b = "y".repeat(100);
        assert!(shrink(vec![&mut a, &mut b], 5_000));
        assert_eq!(b.len(), 100);
        assert!(a.len() <= 5_000);
    }
}
