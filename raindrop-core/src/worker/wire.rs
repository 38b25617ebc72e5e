//! JSON encoding of each route's items, with the text-field cap applied.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::item::{AiData, EventRecord, IdentifyRecord, InteractionUpdate, SignalRecord};
use crate::model::Attachment;
use crate::span::{AttributeValue, SpanRecord, SpanStatus};

/// Largest JSON an event, or a request body, may have.
pub(crate) const MAX_BYTES: usize = 1024 * 1024;
/// Appended to text cut at the cap; counted inside the cap.
pub(crate) const TRUNCATION_MARKER: &str = "...[truncated by raindrop]";

/// Cuts `s` to at most `max` characters, marker included.
pub(crate) fn cap(s: &str, max: usize) -> Cow<'_, str> {
    // A string has at least as many bytes as characters.
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let marker = TRUNCATION_MARKER.chars().count();
    let Some((cut_at_max, _)) = s.char_indices().nth(max) else {
        return Cow::Borrowed(s);
    };
    if max <= marker {
        return Cow::Owned(s[..cut_at_max].to_owned());
    }
    let (keep, _) = s.char_indices().nth(max - marker).expect("longer than max");
    let mut out = String::with_capacity(keep + TRUNCATION_MARKER.len());
    out.push_str(&s[..keep]);
    out.push_str(TRUNCATION_MARKER);
    Cow::Owned(out)
}

/// The property key of [`CONTEXT`].
const CONTEXT_KEY: &str = "$context";

#[derive(Serialize)]
struct Context {
    library: Library,
    metadata: Metadata,
}

#[derive(Serialize)]
struct Library {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Metadata {
    language: &'static str,
}

/// This SDK's identity, sent in `properties.$context` of `events/track` events:
/// `{"library":{"name":"raindrop-sdk-rust","version":..},"metadata":{"language":"rust"}}`.
/// A static value, serialised in place: building it as a `Value` and
/// inserting it into each event's map cost about 1 µs of worker time per event.
const CONTEXT: Context = Context {
    library: Library {
        name: "raindrop-sdk-rust",
        version: env!("CARGO_PKG_VERSION"),
    },
    metadata: Metadata { language: "rust" },
};

/// `"$context":{..}`: [`CONTEXT`] as the last entry of an event's
/// properties, serialised once (serialising it per event was about a fifth
/// of the worker's serialisation time in the 1M-event profile, issue 26).
fn context_entry() -> &'static [u8] {
    static ENTRY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ENTRY.get_or_init(|| {
        let mut out = Vec::with_capacity(160);
        let _ = serde_json::to_writer(&mut out, CONTEXT_KEY);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, &CONTEXT);
        out
    })
}

/// An event's properties without any caller-given `$context` (the SDK's
/// own replaces it), serialised without copying or changing the map.
struct WithoutContext<'a>(&'a Map<String, Value>);

impl Serialize for WithoutContext<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().filter(|(k, _)| *k != CONTEXT_KEY))
    }
}

#[derive(Serialize)]
struct WireAi<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    convo_id: Option<&'a str>,
}

impl<'a> WireAi<'a> {
    fn new(ai: &'a AiData, max: usize) -> Self {
        WireAi {
            model: ai.model.as_deref(),
            input: ai.input.as_deref().map(|s| cap(s, max)),
            output: ai.output.as_deref().map(|s| cap(s, max)),
            convo_id: ai.convo_id.as_deref(),
        }
    }
}

/// `events/track` attachments carry every key, unset ones as `null`.
#[derive(Serialize)]
struct WireAttachmentFull<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
    name: Option<&'a str>,
    role: Option<&'static str>,
    language: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachment_id: Option<&'a str>,
}

/// Partial attachments omit unset keys.
#[derive(Serialize)]
pub(crate) struct WireAttachmentSparse<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attachment_id: Option<&'a str>,
}

fn full(a: &Attachment) -> WireAttachmentFull<'_> {
    WireAttachmentFull {
        kind: a.kind.as_str(),
        value: &a.value,
        name: a.name.as_deref(),
        role: a.role.map(|r| r.as_str()),
        language: a.language.as_deref(),
        attachment_id: a.attachment_id.as_deref(),
    }
}

pub(crate) fn sparse(a: &Attachment) -> WireAttachmentSparse<'_> {
    WireAttachmentSparse {
        kind: a.kind.as_str(),
        value: &a.value,
        name: a.name.as_deref(),
        role: a.role.map(|r| r.as_str()),
        language: a.language.as_deref(),
        attachment_id: a.attachment_id.as_deref(),
    }
}

/// The leading fields of an `events/track` event; [`track_event`] writes
/// the rest around it.
#[derive(Serialize)]
struct WireEventHead<'a> {
    event_id: &'a str,
    user_id: &'a str,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ai_data: Option<WireAi<'a>>,
}

/// One `events/track` event, written into `out` (cleared first): the
/// fields in the order of [`WireEventHead`], then `properties` (with
/// `$context` last), `timestamp` and `attachments`, as serde_json's compact
/// form of the whole would have them. The worker passes the same buffer for
/// every item, so an event costs no buffer of its own here.
pub(crate) fn track_event(e: &EventRecord, max_chars: usize, out: &mut Vec<u8>) {
    out.clear();
    if write_track_event(e, max_chars, out).is_err() {
        out.clear();
    }
}

fn write_track_event(
    e: &EventRecord,
    max_chars: usize,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let head = WireEventHead {
        event_id: &e.event_id,
        user_id: &e.user_id,
        event: &e.event,
        ai_data: e.ai.as_ref().map(|ai| WireAi::new(ai, max_chars)),
    };
    serde_json::to_writer(&mut *out, &head)?;
    out.pop(); // the head's closing brace: more fields follow
    out.extend_from_slice(b",\"properties\":");
    serde_json::to_writer(&mut *out, &WithoutContext(&e.properties))?;
    out.pop(); // the map's closing brace: `$context` follows
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.extend_from_slice(context_entry());
    out.extend_from_slice(b"},\"timestamp\":");
    serde_json::to_writer(&mut *out, &e.timestamp.to_wire())?;
    out.extend_from_slice(b",\"attachments\":");
    let attachments: Option<Vec<WireAttachmentFull<'_>>> =
        (!e.attachments.is_empty()).then(|| e.attachments.iter().map(full).collect());
    serde_json::to_writer(&mut *out, &attachments)?;
    out.push(b'}');
    Ok(())
}

/// Serialises `value` into `out`, cleared first; empty on error.
fn write(out: &mut Vec<u8>, value: &impl Serialize) {
    out.clear();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.clear();
    }
}

#[derive(Serialize)]
struct WireSignal<'a> {
    event_id: &'a str,
    signal_name: &'a str,
    timestamp: String,
    properties: &'a Map<String, Value>,
    attachment_id: Option<&'a str>,
    sentiment: Option<&'static str>,
    signal_type: &'static str,
}

pub(crate) fn signal(s: &SignalRecord, out: &mut Vec<u8>) {
    let w = WireSignal {
        event_id: &s.event_id,
        signal_name: &s.signal_name,
        timestamp: s.timestamp.to_wire(),
        properties: &s.properties,
        attachment_id: s.attachment_id.as_deref(),
        sentiment: s.sentiment.map(|x| x.as_str()),
        signal_type: s.signal_type.as_str(),
    };
    write(out, &w);
}

#[derive(Serialize)]
struct WireIdentify<'a> {
    user_id: &'a str,
    traits: &'a Map<String, Value>,
}

pub(crate) fn identify(i: &IdentifyRecord, out: &mut Vec<u8>) {
    let w = WireIdentify {
        user_id: &i.user_id,
        traits: &i.traits,
    };
    write(out, &w);
}

#[derive(Serialize)]
struct WirePartial<'a> {
    event_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ai_data: Option<WireAi<'a>>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    properties: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<WireAttachmentSparse<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<String>,
    is_pending: bool,
}

/// One `events/track_partial` body: only the fields that changed.
pub(crate) fn partial(p: &InteractionUpdate, max_chars: usize) -> Vec<u8> {
    let w = WirePartial {
        event_id: &p.event_id,
        user_id: p.user_id.as_deref(),
        event: p.event.as_deref(),
        ai_data: (!p.ai.is_empty()).then(|| WireAi::new(&p.ai, max_chars)),
        properties: &p.properties,
        attachments: p.attachments.iter().map(sparse).collect(),
        timestamp: p.timestamp.as_ref().map(|t| t.to_wire()),
        is_pending: !p.is_final,
    };
    serde_json::to_vec(&w).unwrap_or_default()
}

/// The OTLP/JSON envelope around a batch of spans.
pub(crate) fn traces_prefix() -> Vec<u8> {
    let v = env!("CARGO_PKG_VERSION");
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"raindrop-sdk-rust"}}}},{{"key":"service.version","value":{{"stringValue":"{v}"}}}}]}},"scopeSpans":[{{"scope":{{"name":"raindrop-sdk-rust","version":"{v}"}},"spans":["#
    )
    .into_bytes()
}

/// Closes [`traces_prefix`].
pub(crate) const TRACES_SUFFIX: &[u8] = b"]}]}]}";

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Standard base64 with padding: what Raindrop's OTLP/JSON ids use.
#[cfg(test)]
pub(crate) fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut buf = [0u8; 4];
        let n = base64_into(chunk, &mut buf);
        out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
    }
    out
}

/// Writes the standard padded base64 of `bytes` into `out`; returns the
/// length written. Stops early when `out` is too short (ids never are).
fn base64_into(bytes: &[u8], out: &mut [u8]) -> usize {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut n = 0;
    for chunk in bytes.chunks(3) {
        if n + 4 > out.len() {
            break;
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out[n] = T[(v >> 18) as usize & 63];
        out[n + 1] = T[(v >> 12) as usize & 63];
        out[n + 2] = if chunk.len() > 1 {
            T[(v >> 6) as usize & 63]
        } else {
            b'='
        };
        out[n + 3] = if chunk.len() > 2 {
            T[v as usize & 63]
        } else {
            b'='
        };
        n += 4;
    }
    n
}

/// Serialises a `Display` value as a JSON string, without an intermediate `String`.
struct DisplayStr<T>(T);

impl<T: std::fmt::Display> Serialize for DisplayStr<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// An OTLP trace or span id: standard base64 of its bytes (at most 16).
struct Id<'a>(&'a [u8]);

impl Serialize for Id<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 24];
        let n = base64_into(self.0, &mut buf);
        s.serialize_str(std::str::from_utf8(&buf[..n]).unwrap_or_default())
    }
}

/// One OTLP `AnyValue`: `{"stringValue": ..}`, `{"intValue": ".."}`, ...
struct WireAttrValue<'a> {
    value: &'a AttributeValue,
    max_chars: usize,
}

impl Serialize for WireAttrValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let max = self.max_chars;
        let mut m = s.serialize_map(Some(1))?;
        match self.value {
            AttributeValue::String(v) => m.serialize_entry("stringValue", &cap(v, max))?,
            AttributeValue::Int(i) => m.serialize_entry("intValue", &DisplayStr(i))?,
            AttributeValue::Double(d) if d.is_finite() => m.serialize_entry("doubleValue", d)?,
            AttributeValue::Double(d) => m.serialize_entry("stringValue", &DisplayStr(d))?,
            AttributeValue::Bool(b) => m.serialize_entry("boolValue", b)?,
            AttributeValue::StringArray(a) => m.serialize_entry(
                "arrayValue",
                &WireArray {
                    values: a,
                    max_chars: max,
                },
            )?,
        }
        m.end()
    }
}

/// `{"values": [{"stringValue": ..}, ..]}`.
struct WireArray<'a> {
    values: &'a [String],
    max_chars: usize,
}

#[derive(Serialize)]
struct StringValue<'a> {
    #[serde(rename = "stringValue")]
    string_value: Cow<'a, str>,
}

impl Serialize for WireArray<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("values", &StringValues(self))?;
        m.end()
    }
}

/// The `values` array of a [`WireArray`].
struct StringValues<'a, 'b>(&'b WireArray<'a>);

impl Serialize for StringValues<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.values.iter().map(|v| StringValue {
            string_value: cap(v, self.0.max_chars),
        }))
    }
}

#[derive(Serialize)]
struct WireAttr<'a> {
    key: &'a str,
    value: WireAttrValue<'a>,
}

#[derive(Serialize)]
struct WireStatus<'a> {
    code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct WireSpan<'a> {
    #[serde(rename = "traceId")]
    trace_id: Id<'a>,
    #[serde(rename = "spanId")]
    span_id: Id<'a>,
    #[serde(rename = "parentSpanId", skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<Id<'a>>,
    name: &'a str,
    #[serde(rename = "startTimeUnixNano")]
    start: DisplayStr<u128>,
    #[serde(rename = "endTimeUnixNano")]
    end: DisplayStr<u128>,
    status: WireStatus<'a>,
    attributes: WireAttrs<'a>,
}

/// `[{"key": .., "value": {..}}, ..]`.
struct WireAttrs<'a> {
    attrs: &'a [(Cow<'static, str>, AttributeValue)],
    max_chars: usize,
}

impl Serialize for WireAttrs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.attrs.iter().map(|(k, v)| WireAttr {
            key: k,
            value: WireAttrValue {
                value: v,
                max_chars: self.max_chars,
            },
        }))
    }
}

/// One OTLP/JSON span object, serialised straight from the record (building
/// a `serde_json::Value` tree first cost several µs of worker time per span).
pub(crate) fn span(s: &SpanRecord, max_chars: usize, out: &mut Vec<u8>) {
    let start = nanos(s.start);
    let end = nanos(s.end).max(start);
    let w = WireSpan {
        trace_id: Id(&s.trace_id),
        span_id: Id(&s.span_id),
        parent_span_id: s.parent_span_id.as_ref().map(|p| Id(p)),
        name: &s.name,
        start: DisplayStr(start),
        end: DisplayStr(end),
        status: match &s.status {
            SpanStatus::Ok => WireStatus {
                code: 1,
                message: None,
            },
            SpanStatus::Error(m) => WireStatus {
                code: 2,
                message: Some(cap(m, max_chars)),
            },
        },
        attributes: WireAttrs {
            attrs: &s.attributes,
            max_chars,
        },
    };
    write(out, &w);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The previous `span` encoding (a `serde_json::Value` tree): the reference
    /// the direct serialisation must match value for value.
    fn span_reference(s: &SpanRecord, max_chars: usize) -> Vec<u8> {
        fn attr_value(v: &AttributeValue, max_chars: usize) -> Value {
            match v {
                AttributeValue::String(s) => serde_json::json!({"stringValue": cap(s, max_chars)}),
                AttributeValue::Int(i) => serde_json::json!({"intValue": i.to_string()}),
                AttributeValue::Double(d) if d.is_finite() => serde_json::json!({"doubleValue": d}),
                AttributeValue::Double(d) => serde_json::json!({"stringValue": d.to_string()}),
                AttributeValue::Bool(b) => serde_json::json!({"boolValue": b}),
                AttributeValue::StringArray(a) => serde_json::json!({"arrayValue": {"values":
                    a.iter().map(|s| serde_json::json!({"stringValue": cap(s, max_chars)})).collect::<Vec<_>>()}}),
            }
        }
        let start = nanos(s.start);
        let end = nanos(s.end).max(start);
        let mut obj = Map::new();
        obj.insert("traceId".into(), base64(&s.trace_id).into());
        obj.insert("spanId".into(), base64(&s.span_id).into());
        if let Some(p) = s.parent_span_id {
            obj.insert("parentSpanId".into(), base64(&p).into());
        }
        obj.insert("name".into(), s.name.clone().into());
        obj.insert("startTimeUnixNano".into(), start.to_string().into());
        obj.insert("endTimeUnixNano".into(), end.to_string().into());
        obj.insert(
            "status".into(),
            match &s.status {
                SpanStatus::Ok => serde_json::json!({"code": 1}),
                SpanStatus::Error(m) => {
                    serde_json::json!({"code": 2, "message": cap(m, max_chars)})
                }
            },
        );
        let attrs: Vec<Value> = s
            .attributes
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": attr_value(v, max_chars)}))
            .collect();
        obj.insert("attributes".into(), Value::Array(attrs));
        serde_json::to_vec(&obj).unwrap_or_default()
    }

    #[test]
    fn span_encoding_matches_the_value_tree_encoding() {
        let t0 = UNIX_EPOCH + std::time::Duration::from_nanos(1_732_000_000_123_456_789);
        let long = "é".repeat(300);
        let attrs: Vec<(Cow<'static, str>, AttributeValue)> = vec![
            ("s".into(), "plain \"quoted\" \n text \u{7f}".into()),
            ("long".into(), long.clone().into()),
            ("empty".into(), "".into()),
            ("i".into(), AttributeValue::Int(i64::MIN)),
            ("i2".into(), AttributeValue::Int(42)),
            ("d".into(), AttributeValue::Double(1.5)),
            ("d_int".into(), AttributeValue::Double(3.0)),
            ("d_tiny".into(), AttributeValue::Double(-1e-300)),
            ("nan".into(), AttributeValue::Double(f64::NAN)),
            ("inf".into(), AttributeValue::Double(f64::NEG_INFINITY)),
            ("b".into(), AttributeValue::Bool(false)),
            (
                "arr".into(),
                AttributeValue::StringArray(vec!["a".into(), long.clone()]),
            ),
            ("arr_empty".into(), AttributeValue::StringArray(vec![])),
            (Cow::Owned("ключ \u{1F600}".into()), "✓".into()),
        ];
        let records = [
            SpanRecord {
                trace_id: [0xab; 16],
                span_id: [1, 2, 3, 4, 5, 6, 7, 8],
                parent_span_id: Some([0xff; 8]),
                name: "search.tool".into(),
                start: t0,
                end: t0 + std::time::Duration::from_micros(1500),
                status: SpanStatus::Ok,
                attributes: attrs,
            },
            SpanRecord {
                trace_id: [0; 16],
                span_id: [9; 8],
                parent_span_id: None,
                name: "chat.workflow \"q\"".into(),
                start: t0,
                end: UNIX_EPOCH, // before start: clamped to start
                status: SpanStatus::Error(long.clone()),
                attributes: Vec::new(),
            },
        ];
        for r in &records {
            for max in [10, 100, 1_000_000] {
                let mut ours = Vec::new();
                span(r, max, &mut ours);
                let reference = span_reference(r, max);
                assert_eq!(ours.len(), reference.len());
                let a: Value = serde_json::from_slice(&ours).unwrap();
                let b: Value = serde_json::from_slice(&reference).unwrap();
                assert_eq!(a, b);
            }
        }
    }

    /// The encoding `track_event` had before it was written piece by piece
    /// (issue 26): one derived struct, `$context` appended to the map.
    fn track_event_reference(e: &EventRecord, max_chars: usize) -> Vec<u8> {
        struct WithContext<'a>(&'a Map<String, Value>);
        impl Serialize for WithContext<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let given = self.0.contains_key(CONTEXT_KEY);
                let mut m = s.serialize_map(Some(self.0.len() + usize::from(!given)))?;
                for (k, v) in self.0 {
                    if k != CONTEXT_KEY {
                        m.serialize_entry(k, v)?;
                    }
                }
                m.serialize_entry(CONTEXT_KEY, &CONTEXT)?;
                m.end()
            }
        }
        #[derive(Serialize)]
        struct WireEvent<'a> {
            event_id: &'a str,
            user_id: &'a str,
            event: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            ai_data: Option<WireAi<'a>>,
            properties: WithContext<'a>,
            timestamp: String,
            attachments: Option<Vec<WireAttachmentFull<'a>>>,
        }
        serde_json::to_vec(&WireEvent {
            event_id: &e.event_id,
            user_id: &e.user_id,
            event: &e.event,
            ai_data: e.ai.as_ref().map(|ai| WireAi::new(ai, max_chars)),
            properties: WithContext(&e.properties),
            timestamp: e.timestamp.to_wire(),
            attachments: (!e.attachments.is_empty())
                .then(|| e.attachments.iter().map(full).collect()),
        })
        .unwrap()
    }

    #[test]
    fn track_event_bytes_match_the_derived_encoding() {
        let long = "é\"\n".repeat(200);
        let mut with_ai = event(
            serde_json::json!({"a": 1, "$context": "caller's", "z": {"k": [1, "x\u{1}"]}, "": null})
                .as_object()
                .unwrap()
                .clone(),
        );
        with_ai.ai = Some(AiData {
            model: Some("gpt-4o-mini".into()),
            input: Some(long.clone()),
            output: None,
            convo_id: Some("c-1".into()),
        });
        with_ai.attachments = vec![
            Attachment::text("hi \"there\""),
            Attachment::code("fn main() {}", "rust").name("main.rs"),
        ];
        with_ai.timestamp = crate::model::Timestamp::from("2024-01-01T00:00:00\"odd\"");
        let only_context = event(
            serde_json::json!({"$context": 1})
                .as_object()
                .unwrap()
                .clone(),
        );
        let mut buf = b"left over from the item before".to_vec();
        for e in [event(Map::new()), only_context, with_ai] {
            for max in [5, 100, 1_000_000] {
                track_event(&e, max, &mut buf);
                assert_eq!(
                    String::from_utf8(buf.clone()).unwrap(),
                    String::from_utf8(track_event_reference(&e, max)).unwrap()
                );
            }
        }
    }

    #[test]
    fn base64_into_stops_at_the_buffer() {
        let mut buf = [0u8; 8];
        assert_eq!(base64_into(b"foobar!", &mut buf), 8);
        assert_eq!(&buf, b"Zm9vYmFy");
    }

    fn event(properties: Map<String, Value>) -> EventRecord {
        EventRecord {
            event_id: "e1".into(),
            user_id: "u1".into(),
            event: "chat".into(),
            ai: None,
            properties,
            timestamp: crate::model::Timestamp::now(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn context_is_added_and_replaces_a_given_one() {
        let expected = serde_json::json!({
            "library": {"name": "raindrop-sdk-rust", "version": env!("CARGO_PKG_VERSION")},
            "metadata": {"language": "rust"}
        });
        let mut props = Map::new();
        props.insert("a".into(), 1.into());
        props.insert("$context".into(), "caller's".into());
        props.insert("z".into(), serde_json::json!({"k": [1, 2]}));
        for props in [Map::new(), props] {
            let keys = props.len() + usize::from(!props.contains_key("$context"));
            let mut bytes = Vec::new();
            track_event(&event(props.clone()), 100, &mut bytes);
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let got = v["properties"].as_object().unwrap();
            assert_eq!(got["$context"], expected);
            assert_eq!(got.len(), keys);
            for (k, val) in &props {
                if k != "$context" {
                    assert_eq!(&got[k], val);
                }
            }
        }
    }

    #[test]
    fn cap_counts_characters_and_includes_marker() {
        let s = "é".repeat(100);
        let c = cap(&s, 50);
        assert_eq!(c.chars().count(), 50);
        assert!(c.ends_with(TRUNCATION_MARKER));
        assert_eq!(cap("short", 50), "short");
        assert_eq!(cap("abcdefghij", 5), "abcde");
        let exact = "x".repeat(50);
        assert_eq!(cap(&exact, 50), exact);
    }

    #[test]
    fn base64_matches_reference() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            base64(&[0xab, 0xcd, 0xef, 0x12, 0x34, 0x56, 0x78, 0x9a]),
            "q83vEjRWeJo="
        );
    }
}
