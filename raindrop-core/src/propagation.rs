//! W3C Trace Context (`traceparent`) and Baggage (`baggage`) for carrying an
//! interaction across services: the codec only, with no I/O and no tracing.
//!
//! Headers come from other machines, so parsing treats them as hostile:
//! anything malformed, oversized or odd is ignored (with a DEBUG line), never
//! a panic, and nothing allocates more than the header's bounded size. A
//! baggage header can set only the four `raindrop.*` keys here; other
//! members are passed through untouched when a service adds its own.

use std::fmt::Write as _;

/// The `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";
/// The `baggage` header name.
pub const BAGGAGE: &str = "baggage";

/// Longest `traceparent` accepted (version 00 is 55 bytes; later versions
/// may append fields).
const MAX_TRACEPARENT: usize = 512;
/// The W3C baggage limits: 8,192 bytes and 180 list members.
const MAX_BAGGAGE_BYTES: usize = 8192;
const MAX_BAGGAGE_MEMBERS: usize = 180;
/// Longest decoded value accepted for a `raindrop.*` baggage key.
const MAX_VALUE_CHARS: usize = 1024;

/// The remote parent from a `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The 16-byte trace id (never all zero).
    pub trace_id: [u8; 16],
    /// The 8-byte id of the caller's span (never all zero).
    pub parent_span_id: [u8; 8],
    /// The caller's sampled flag.
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` for anything invalid.
    ///
    /// ```
    /// use raindrop_core::propagation::TraceParent;
    /// let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// assert!(tp.sampled);
    /// assert_eq!(tp.to_header(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
    /// ```
    pub fn parse(value: &str) -> Option<TraceParent> {
        let v = value.trim();
        if v.len() > MAX_TRACEPARENT || !v.is_ascii() {
            return reject("traceparent", "too long or not ASCII");
        }
        let b = v.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return reject("traceparent", "not version-traceid-parentid-flags");
        }
        let version = hex_byte(&b[0..2])?;
        // Version 00 is exactly 55 bytes; later ones may add `-...` fields.
        if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return reject("traceparent", "bad version or length");
        }
        let mut trace_id = [0u8; 16];
        let mut parent_span_id = [0u8; 8];
        for (i, out) in trace_id.iter_mut().enumerate() {
            *out = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        for (i, out) in parent_span_id.iter_mut().enumerate() {
            *out = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        if trace_id == [0; 16] || parent_span_id == [0; 8] {
            return reject("traceparent", "all-zero id");
        }
        Some(TraceParent {
            trace_id,
            parent_span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The header value, version 00.
    pub fn to_header(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        for b in self.trace_id {
            let _ = write!(s, "{b:02x}");
        }
        s.push('-');
        for b in self.parent_span_id {
            let _ = write!(s, "{b:02x}");
        }
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }
}

fn reject<T>(header: &str, why: &str) -> Option<T> {
    tracing::debug!(target: "raindrop", header, "ignored an incoming {header} header: {why}");
    None
}

/// Two lowercase hex digits (the spec allows no uppercase).
fn hex_byte(b: &[u8]) -> Option<u8> {
    let d = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    match (d(b[0]), d(b[1])) {
        (Some(h), Some(l)) => Some(h << 4 | l),
        _ => reject("traceparent", "not lowercase hex"),
    }
}

/// The interaction fields that travel in `baggage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InteractionBaggage {
    /// `raindrop.event_id`
    pub event_id: Option<String>,
    /// `raindrop.user_id`
    pub user_id: Option<String>,
    /// `raindrop.convo_id`
    pub convo_id: Option<String>,
    /// `raindrop.event` (the event name)
    pub event: Option<String>,
}

const KEYS: [&str; 4] = [
    "raindrop.event_id",
    "raindrop.user_id",
    "raindrop.convo_id",
    "raindrop.event",
];

impl InteractionBaggage {
    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        match key {
            "raindrop.event_id" => Some(&mut self.event_id),
            "raindrop.user_id" => Some(&mut self.user_id),
            "raindrop.convo_id" => Some(&mut self.convo_id),
            "raindrop.event" => Some(&mut self.event),
            _ => None,
        }
    }

    fn values(&self) -> [(&'static str, Option<&str>); 4] {
        [
            (KEYS[0], self.event_id.as_deref()),
            (KEYS[1], self.user_id.as_deref()),
            (KEYS[2], self.convo_id.as_deref()),
            (KEYS[3], self.event.as_deref()),
        ]
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.values().iter().all(|(_, v)| v.is_none())
    }

    /// Reads the `raindrop.*` members of a `baggage` header; every other
    /// member is ignored. An oversized header is ignored whole.
    ///
    /// ```
    /// use raindrop_core::propagation::InteractionBaggage;
    /// let b = InteractionBaggage::extract("team=ai, raindrop.event_id=e-1, raindrop.user_id=ada%20l;p=1");
    /// assert_eq!(b.event_id.as_deref(), Some("e-1"));
    /// assert_eq!(b.user_id.as_deref(), Some("ada l"));
    /// ```
    pub fn extract(header: &str) -> InteractionBaggage {
        let mut out = InteractionBaggage::default();
        if header.len() > MAX_BAGGAGE_BYTES {
            reject::<()>("baggage", "over 8192 bytes");
            return out;
        }
        for member in header.split(',').take(MAX_BAGGAGE_MEMBERS) {
            let kv = member.split(';').next().unwrap_or("");
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Some(slot) = out.slot(k.trim()) else {
                continue;
            };
            match percent_decode(v.trim()) {
                Some(v) if !v.is_empty() && v.chars().count() <= MAX_VALUE_CHARS => *slot = Some(v),
                _ => {
                    reject::<()>(
                        "baggage",
                        "a raindrop value is empty, too long or badly encoded",
                    );
                }
            }
        }
        out
    }

    /// The `baggage` value carrying these fields, keeping every member of
    /// `existing` that is not one of ours, untouched. `None` if the result
    /// would break the W3C limits (then the caller should send `existing`
    /// as it was).
    ///
    /// ```
    /// use raindrop_core::propagation::InteractionBaggage;
    /// let b = InteractionBaggage { event_id: Some("e 1".into()), ..Default::default() };
    /// assert_eq!(b.inject(Some("team=ai,raindrop.event_id=old")).unwrap(), "team=ai,raindrop.event_id=e%201");
    /// ```
    pub fn inject(&self, existing: Option<&str>) -> Option<String> {
        let mut members: Vec<String> = existing
            .unwrap_or("")
            .split(',')
            .filter(|m| {
                let key = m.split(['=', ';']).next().unwrap_or("").trim();
                !m.trim().is_empty() && !KEYS.contains(&key)
            })
            .map(|m| m.trim().to_owned())
            .collect();
        for (k, v) in self.values() {
            if let Some(v) = v {
                members.push(format!("{k}={}", percent_encode(v)));
            }
        }
        let out = members.join(",");
        (out.len() <= MAX_BAGGAGE_BYTES && members.len() <= MAX_BAGGAGE_MEMBERS).then_some(out)
    }
}

/// Percent-encodes everything outside the baggage value's safe set.
fn percent_encode(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        let safe = b.is_ascii_alphanumeric() || b"!#$&'()*+-./:<>?@[]^_`{|}~".contains(&b);
        if safe {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// Decodes `%XX` escapes; `None` for a broken escape or invalid UTF-8.
fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let n = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(n, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_rejects_what_the_spec_rejects() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceParent::parse(ok).unwrap().sampled);
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
        // A later version may append fields.
        assert!(TraceParent::parse(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
        )
        .is_some());
    }

    #[test]
    fn baggage_round_trips_and_passes_foreign_members_through() {
        let b = InteractionBaggage {
            event_id: Some("e-1".into()),
            user_id: Some("ada, lovelace; =%".into()),
            convo_id: None,
            event: Some("chat".into()),
        };
        let header = b
            .inject(Some("k1=v1;prop, raindrop.user_id=stale"))
            .unwrap();
        assert!(header.starts_with("k1=v1;prop,"), "{header}");
        assert_eq!(InteractionBaggage::extract(&header), b);
    }

    #[test]
    fn hostile_baggage_is_bounded_and_cannot_add_keys() {
        let huge = format!("raindrop.event_id={}", "a".repeat(9000));
        assert!(InteractionBaggage::extract(&huge).is_empty());
        let long_value = format!("raindrop.event_id={}", "a".repeat(2000));
        assert!(InteractionBaggage::extract(&long_value).is_empty());
        let b = InteractionBaggage::extract(
            "raindrop.properties=x,raindrop.event_id=%zz,raindrop.user_id=%ff",
        );
        assert!(b.is_empty(), "{b:?}");
    }
}
