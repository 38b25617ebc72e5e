//! W3C Trace Context (`traceparent`) and Baggage (`baggage`) for carrying an
//! interaction across services: the codec only, with no I/O and no tracing.
//!
//! Headers come from other machines, so parsing treats them as hostile:
//! anything malformed, oversized or odd is ignored (with a DEBUG line), never
//! a panic, and nothing allocates more than the header's bounded size. A
//! baggage header can set only the four `raindrop.*` keys here; other
//! members are passed through untouched when a service adds its own.

use std::fmt::{self, Write as _};
use std::time::Duration;

use ring::hmac;

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
    /// The field a baggage key sets: this SDK's spelling (`raindrop.event_id`)
    /// or the Python SDK's (`raindrop-event-id`), so a Python service's
    /// carrier is read too.
    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        match key {
            "raindrop.event_id" | "raindrop-event-id" => Some(&mut self.event_id),
            "raindrop.user_id" | "raindrop-user-id" => Some(&mut self.user_id),
            "raindrop.convo_id" | "raindrop-convo-id" => Some(&mut self.convo_id),
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

    /// Reads the `raindrop.*` members of a `baggage` header (and the Python
    /// SDK's spelling of the same fields: `raindrop-event-id`,
    /// `raindrop-user-id`, `raindrop-convo-id`); every other member is
    /// ignored. An oversized header is ignored whole, and so is one naming
    /// a field twice with different values (in either spelling): which one
    /// was meant cannot be known.
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
                Some(v) if slot.as_ref().is_some_and(|old| *old != v) => {
                    reject::<()>(
                        "baggage",
                        "a raindrop field is named twice with different values",
                    );
                    return InteractionBaggage::default();
                }
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
                !m.trim().is_empty()
                    && !KEYS.contains(&key)
                    && InteractionBaggage::default().slot(key).is_none()
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
pub(crate) fn percent_encode(v: &str) -> String {
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
pub(crate) fn percent_decode(v: &str) -> Option<String> {
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

/// The header carrying a carrier's signature, next to `traceparent` and
/// `baggage`.
pub const SIGNATURE: &str = "x-raindrop-signature";

/// How far a carrier's timestamp may be from the receiver's clock, either
/// way, and still be accepted: the replay window (and the clock skew
/// tolerated between services). Default of
/// `ClientOptions::propagation_replay_window`.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);

/// The label a write key is turned into a carrier key with (see
/// [`CarrierKey::from_write_key`]).
const WRITE_KEY_LABEL: &[u8] = b"raindrop propagation key v1";
/// The label a carrier key's id is made with (see [`CarrierKey::id`]).
const KEY_ID_LABEL: &[u8] = b"raindrop propagation key id v1";
/// The longest signature header read (the v1 format is at most 110 bytes).
const MAX_SIGNATURE: usize = 128;

/// Whether a receiving service joins interactions named by carriers that
/// are not signed with its key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CarrierTrust {
    /// Join only carriers whose signature verifies and is fresh (the default).
    #[default]
    Signed,
    /// Join every carrier, signed or not: only for a network where no
    /// outsider can reach the service (a mesh with mTLS between services).
    Unsigned,
}

/// Why a carrier's interaction was not joined (its trace still is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CarrierRefusal {
    /// Raindrop baggage with no signature header.
    Unsigned,
    /// A signature header that is malformed, made with another key, or
    /// does not match the traceparent and baggage it came with.
    BadSignature,
    /// A valid signature whose timestamp is outside the replay window.
    Stale,
}

impl CarrierRefusal {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CarrierRefusal::Unsigned => "unsigned",
            CarrierRefusal::BadSignature => "bad_signature",
            CarrierRefusal::Stale => "stale",
        }
    }
}

/// What a verified carrier grants the receiving service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarrierGrant {
    /// The caller delegated finishing the interaction to the receiver.
    pub delegate_finish: bool,
}

/// The HMAC-SHA256 key that signs and verifies carriers. Its `Debug` shows
/// only the key id.
///
/// The wire format (`x-raindrop-signature`, version 1), so that any SDK can
/// sign and verify it:
///
/// ```text
/// x-raindrop-signature: v1;kid=<kid>;ts=<ts>;fin=<0|1>;sig=<sig>
/// ```
///
/// * `kid`: the key id, 8 lowercase hex digits: the first 4 bytes of
///   HMAC-SHA256(K, `raindrop propagation key id v1`).
/// * `ts`: when it was signed, unix seconds, decimal.
/// * `fin`: `1` when the caller delegates finishing the interaction.
/// * `sig`: 64 lowercase hex digits, HMAC-SHA256(K, canonical string).
///
/// The canonical string is these lines joined by `\n` (no trailing newline):
///
/// ```text
/// raindrop-carrier-v1
/// kid=<kid>
/// ts=<ts>
/// fin=<0|1>
/// trace-id=<the traceparent's trace id, 32 lowercase hex digits>
/// raindrop.event_id=<value>     (each raindrop member present, in this
/// raindrop.user_id=<value>       order; an absent one has no line)
/// raindrop.convo_id=<value>
/// raindrop.event=<value>
/// ```
///
/// A value is the decoded baggage value percent-encoded again: every byte of
/// its UTF-8 outside `A-Z a-z 0-9 ! # $ & ' ( ) * + - . / : < > ? @ [ ] ^ _ `
/// { | } ~` as `%XX` with uppercase hex. The traceparent's parent id and
/// flags are not covered: a tracing proxy between two services (Envoy, an
/// OpenTelemetry sidecar) rightly replaces the parent id with its own span's.
///
/// The key K is the configured propagation secret's UTF-8 bytes, or, when
/// none is set, HMAC-SHA256(write key, `raindrop propagation key v1`), so
/// services of one project agree without sharing anything new.
///
/// ```
/// use raindrop_core::propagation::{CarrierKey, CarrierRefusal, InteractionBaggage, REPLAY_WINDOW};
/// let key = CarrierKey::from_secret(b"shared secret");
/// let trace_id = [7u8; 16];
/// let b = InteractionBaggage { event_id: Some("e-1".into()), ..Default::default() };
/// let header = key.sign(&trace_id, &b, false, 1_700_000_000);
/// assert!(header.starts_with(&format!("v1;kid={};ts=1700000000;fin=0;sig=", key.id())));
/// assert!(key.verify(&header, &trace_id, &b, 1_700_000_100, REPLAY_WINDOW).is_ok());
/// // Another event id, or a replay after the window, is refused.
/// let other = InteractionBaggage { event_id: Some("e-2".into()), ..Default::default() };
/// assert_eq!(key.verify(&header, &trace_id, &other, 1_700_000_100, REPLAY_WINDOW), Err(CarrierRefusal::BadSignature));
/// assert_eq!(key.verify(&header, &trace_id, &b, 1_700_000_301, REPLAY_WINDOW), Err(CarrierRefusal::Stale));
/// ```
#[derive(Clone)]
pub struct CarrierKey {
    key: hmac::Key,
    id: String,
}

impl fmt::Debug for CarrierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarrierKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl CarrierKey {
    /// The key for a shared propagation secret (its bytes are the HMAC key).
    pub fn from_secret(secret: &[u8]) -> CarrierKey {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(&key, KEY_ID_LABEL);
        let mut id = String::with_capacity(8);
        for b in &tag.as_ref()[..4] {
            let _ = write!(id, "{b:02x}");
        }
        CarrierKey { key, id }
    }

    /// The key derived from a write key: HMAC-SHA256(write key, a fixed
    /// label). The write key cannot be recovered from it or from a signature.
    pub fn from_write_key(write_key: &str) -> CarrierKey {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, write_key.as_bytes());
        CarrierKey::from_secret(hmac::sign(&derive, WRITE_KEY_LABEL).as_ref())
    }

    /// The key id: 8 hex digits naming the key without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `x-raindrop-signature` value for a carrier with this trace id and
    /// baggage, signed at `unix_secs`.
    pub fn sign(
        &self,
        trace_id: &[u8; 16],
        baggage: &InteractionBaggage,
        delegate_finish: bool,
        unix_secs: u64,
    ) -> String {
        self.sign_with(unix_secs, delegate_finish, |kid, ts, fin| {
            canonical(kid, ts, fin, trace_id, baggage)
        })
    }

    /// A `v1;kid=..;ts=..;fin=..;sig=..` header over the canonical string
    /// `canonical(kid, ts, fin)` makes: shared by the carriers of this
    /// module and the hand-offs of [`handoff`](crate::handoff).
    pub(crate) fn sign_with(
        &self,
        unix_secs: u64,
        fin: bool,
        canonical: impl FnOnce(&str, u64, u8) -> String,
    ) -> String {
        let fin = u8::from(fin);
        let msg = canonical(&self.id, unix_secs, fin);
        let mut out = format!("v1;kid={};ts={unix_secs};fin={fin};sig=", self.id);
        for b in hmac::sign(&self.key, msg.as_bytes()).as_ref() {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// Checks a signature header against the trace id and baggage it came
    /// with, at `now_unix` (the clock is a parameter so tests can move it):
    /// the MAC is compared in constant time, then the timestamp must be
    /// within `window` of `now_unix`.
    pub fn verify(
        &self,
        header: &str,
        trace_id: &[u8; 16],
        baggage: &InteractionBaggage,
        now_unix: u64,
        window: Duration,
    ) -> Result<CarrierGrant, CarrierRefusal> {
        self.verify_with(header, now_unix, window, |kid, ts, fin| {
            canonical(kid, ts, fin, trace_id, baggage)
        })
    }

    /// Checks a header made by [`sign_with`](Self::sign_with) against the
    /// canonical string `canonical(kid, ts, fin)` makes.
    pub(crate) fn verify_with(
        &self,
        header: &str,
        now_unix: u64,
        window: Duration,
        canonical: impl FnOnce(&str, u64, u8) -> String,
    ) -> Result<CarrierGrant, CarrierRefusal> {
        let parsed = ParsedSignature::parse(header).ok_or(CarrierRefusal::BadSignature)?;
        if parsed.kid != self.id {
            return Err(CarrierRefusal::BadSignature);
        }
        let msg = canonical(parsed.kid, parsed.ts, parsed.fin);
        hmac::verify(&self.key, msg.as_bytes(), &parsed.sig)
            .map_err(|_| CarrierRefusal::BadSignature)?;
        if now_unix.abs_diff(parsed.ts) > window.as_secs() {
            return Err(CarrierRefusal::Stale);
        }
        Ok(CarrierGrant {
            delegate_finish: parsed.fin == 1,
        })
    }

    /// The `fin` flag of a well-formed header, unverified: for a service
    /// told to trust unsigned carriers.
    pub fn delegated_unverified(header: &str) -> bool {
        ParsedSignature::parse(header).is_some_and(|p| p.fin == 1)
    }
}

/// The canonical string a signature covers (see [`CarrierKey`]).
fn canonical(
    kid: &str,
    ts: u64,
    fin: u8,
    trace_id: &[u8; 16],
    baggage: &InteractionBaggage,
) -> String {
    let mut s = format!("raindrop-carrier-v1\nkid={kid}\nts={ts}\nfin={fin}\ntrace-id=");
    for b in trace_id {
        let _ = write!(s, "{b:02x}");
    }
    for (k, v) in baggage.values() {
        if let Some(v) = v {
            let _ = write!(s, "\n{k}={}", percent_encode(v));
        }
    }
    s
}

/// A `v1;kid=..;ts=..;fin=..;sig=..` header, parsed strictly.
struct ParsedSignature<'a> {
    kid: &'a str,
    ts: u64,
    fin: u8,
    sig: [u8; 32],
}

impl<'a> ParsedSignature<'a> {
    fn parse(header: &'a str) -> Option<ParsedSignature<'a>> {
        let h = header.trim();
        if h.len() > MAX_SIGNATURE {
            return None;
        }
        let mut parts = h.split(';');
        if parts.next()? != "v1" {
            return None;
        }
        let kid = parts.next()?.strip_prefix("kid=")?;
        let ts = parts.next()?.strip_prefix("ts=")?;
        let fin = parts.next()?.strip_prefix("fin=")?;
        let sig = parts.next()?.strip_prefix("sig=")?;
        if parts.next().is_some()
            || kid.len() != 8
            || !kid.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            || ts.is_empty()
            || ts.len() > 20
            || !ts.bytes().all(|c| c.is_ascii_digit())
            || sig.len() != 64
        {
            return None;
        }
        let fin = match fin {
            "0" => 0,
            "1" => 1,
            _ => return None,
        };
        let mut bytes = [0u8; 32];
        for (i, out) in bytes.iter_mut().enumerate() {
            *out = hex_digit_pair(&sig.as_bytes()[2 * i..2 * i + 2])?;
        }
        Some(ParsedSignature {
            kid,
            ts: ts.parse().ok()?,
            fin,
            sig: bytes,
        })
    }
}

/// Two lowercase hex digits, quietly (a bad signature is counted, not logged per byte).
fn hex_digit_pair(b: &[u8]) -> Option<u8> {
    let d = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(d(b[0])? << 4 | d(b[1])?)
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

    #[test]
    fn the_python_spelling_is_read_and_a_field_named_twice_differently_is_refused() {
        let b = InteractionBaggage::extract(
            "raindrop-event-id=e-1,raindrop-user-id=ada%40example.com,raindrop-convo-id=c%2F1",
        );
        assert_eq!(b.event_id.as_deref(), Some("e-1"));
        assert_eq!(b.user_id.as_deref(), Some("ada@example.com"));
        assert_eq!(b.convo_id.as_deref(), Some("c/1"));
        // The same value in both spellings is one value.
        let same = InteractionBaggage::extract("raindrop.event_id=e-1,raindrop-event-id=e-1");
        assert_eq!(same.event_id.as_deref(), Some("e-1"));
        for twice in [
            "raindrop.event_id=e-1,raindrop-event-id=e-2",
            "raindrop.user_id=a,raindrop.user_id=b",
        ] {
            assert!(InteractionBaggage::extract(twice).is_empty(), "{twice}");
        }
        // Writing replaces members in either spelling with ours.
        let ours = InteractionBaggage {
            event_id: Some("e-3".into()),
            ..Default::default()
        };
        assert_eq!(
            ours.inject(Some("raindrop-event-id=e-1,team=ai")).unwrap(),
            "team=ai,raindrop.event_id=e-3"
        );
    }

    fn sample() -> (CarrierKey, [u8; 16], InteractionBaggage) {
        let b = InteractionBaggage {
            event_id: Some("e-1".into()),
            user_id: Some("ada, lovelace".into()),
            convo_id: Some("c-1".into()),
            event: Some("chat".into()),
        };
        (CarrierKey::from_secret(b"s3cret"), [0xab; 16], b)
    }

    #[test]
    fn a_signed_carrier_verifies_and_says_whether_finish_is_delegated() {
        let (key, tid, b) = sample();
        for fin in [false, true] {
            let h = key.sign(&tid, &b, fin, 1000);
            assert_eq!(
                key.verify(&h, &tid, &b, 1000, REPLAY_WINDOW),
                Ok(CarrierGrant {
                    delegate_finish: fin
                })
            );
            assert_eq!(CarrierKey::delegated_unverified(&h), fin);
        }
    }

    #[test]
    fn the_window_bounds_both_directions() {
        let (key, tid, b) = sample();
        let h = key.sign(&tid, &b, false, 10_000);
        let w = Duration::from_secs(300);
        assert!(key.verify(&h, &tid, &b, 10_300, w).is_ok());
        assert!(key.verify(&h, &tid, &b, 9_700, w).is_ok());
        assert_eq!(
            key.verify(&h, &tid, &b, 10_301, w),
            Err(CarrierRefusal::Stale)
        );
        assert_eq!(
            key.verify(&h, &tid, &b, 9_699, w),
            Err(CarrierRefusal::Stale)
        );
    }

    #[test]
    fn another_key_or_a_write_key_derived_one_does_not_verify() {
        let (key, tid, b) = sample();
        let h = key.sign(&tid, &b, false, 1);
        let other = CarrierKey::from_secret(b"s3cret!");
        assert_ne!(other.id(), key.id());
        assert_eq!(
            other.verify(&h, &tid, &b, 1, REPLAY_WINDOW),
            Err(CarrierRefusal::BadSignature)
        );
        // The derived key is not the write key used as a secret, and no
        // part of the write key shows in what is sent.
        let derived = CarrierKey::from_write_key("rk_live_abc");
        assert_ne!(derived.id(), CarrierKey::from_secret(b"rk_live_abc").id());
        let sent = derived.sign(&tid, &b, false, 1);
        assert!(!sent.contains("rk_live") && !format!("{derived:?}").contains("rk_live"));
        assert_eq!(derived.id(), CarrierKey::from_write_key("rk_live_abc").id());
    }

    #[test]
    fn malformed_headers_are_bad_signatures() {
        let (key, tid, b) = sample();
        let good = key.sign(&tid, &b, false, 5);
        let bad = [
            String::new(),
            "v1".into(),
            good.replace("v1;", "v2;"),
            good.replace(";fin=0;", ";fin=2;"),
            good.replace(";ts=5;", ";ts=-5;"),
            good.replace(";ts=5;", ";ts=;"),
            format!("{good};extra=1"),
            good.to_uppercase(),
            good[..good.len() - 2].to_owned(),
            format!("{good}{}", "0".repeat(200)),
        ];
        for h in bad {
            assert_eq!(
                key.verify(&h, &tid, &b, 5, REPLAY_WINDOW),
                Err(CarrierRefusal::BadSignature),
                "{h}"
            );
        }
    }

    proptest::proptest! {
        /// Changing any byte of the header, any bit of the trace id, or
        /// any covered baggage value makes verification fail.
        #[test]
        fn tampering_any_covered_byte_fails(
            pos in 0usize..200,
            bit in 0u8..7,
            field in 0usize..4,
            extra in "[a-z0-9 %,;=]{1,8}",
            fin: bool,
        ) {
            let (key, tid, b) = sample();
            let h = key.sign(&tid, &b, fin, 1_700_000_000);
            let now = 1_700_000_000;
            // The header.
            let mut bytes = h.clone().into_bytes();
            let i = pos % bytes.len();
            bytes[i] ^= 1 << bit;
            if let Ok(t) = String::from_utf8(bytes) {
                proptest::prop_assert!(key.verify(&t, &tid, &b, now, REPLAY_WINDOW).is_err(), "{}", t);
            }
            // The trace id.
            let mut t2 = tid;
            t2[pos % 16] ^= 1 << bit;
            proptest::prop_assert!(key.verify(&h, &t2, &b, now, REPLAY_WINDOW).is_err());
            // A baggage value changed, or removed.
            fn slot(b: &mut InteractionBaggage, field: usize) -> &mut Option<String> {
                match field {
                    0 => &mut b.event_id,
                    1 => &mut b.user_id,
                    2 => &mut b.convo_id,
                    _ => &mut b.event,
                }
            }
            let mut changed = b.clone();
            let v = slot(&mut changed, field);
            *v = Some(format!("{}{extra}", v.clone().unwrap_or_default()));
            proptest::prop_assert!(key.verify(&h, &tid, &changed, now, REPLAY_WINDOW).is_err());
            let mut b2 = b.clone();
            *slot(&mut b2, field) = None;
            proptest::prop_assert!(key.verify(&h, &tid, &b2, now, REPLAY_WINDOW).is_err());
        }
    }
}
