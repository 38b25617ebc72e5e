//! Trace spans exported on the `traces` channel as OTLP/JSON.

use std::borrow::Cow;
use std::time::SystemTime;

/// A span attribute value (OTLP `AnyValue`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AttributeValue {
    /// `stringValue`
    String(String),
    /// `intValue` (sent as a decimal string, as OTLP/JSON requires)
    Int(i64),
    /// `doubleValue`
    Double(f64),
    /// `boolValue`
    Bool(bool),
    /// `arrayValue` of strings
    StringArray(Vec<String>),
}

impl From<String> for AttributeValue {
    fn from(v: String) -> Self {
        AttributeValue::String(v)
    }
}
impl From<&str> for AttributeValue {
    fn from(v: &str) -> Self {
        AttributeValue::String(v.to_owned())
    }
}
impl From<i64> for AttributeValue {
    fn from(v: i64) -> Self {
        AttributeValue::Int(v)
    }
}
impl From<f64> for AttributeValue {
    fn from(v: f64) -> Self {
        AttributeValue::Double(v)
    }
}
impl From<bool> for AttributeValue {
    fn from(v: bool) -> Self {
        AttributeValue::Bool(v)
    }
}

/// Whether a span succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SpanStatus {
    /// Status code 1.
    #[default]
    Ok,
    /// Status code 2 with a message.
    Error(String),
}

/// One finished span, already in Raindrop's shape. The tracing layer builds
/// these; [`Client::export_span`](crate::Client::export_span) queues them.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// 16-byte trace id.
    pub trace_id: [u8; 16],
    /// 8-byte span id.
    pub span_id: [u8; 8],
    /// Parent span id; `None` for a root.
    pub parent_span_id: Option<[u8; 8]>,
    /// Span name.
    pub name: String,
    /// Start time.
    pub start: SystemTime,
    /// End time (clamped to be no earlier than `start` on export).
    pub end: SystemTime,
    /// Status.
    pub status: SpanStatus,
    /// Attributes, in order.
    pub attributes: Vec<(Cow<'static, str>, AttributeValue)>,
}

impl SpanRecord {
    /// Random ids for a new trace.
    pub fn new_trace_id() -> [u8; 16] {
        crate::ids::random_u128().to_be_bytes()
    }
    /// A random span id.
    pub fn new_span_id() -> [u8; 8] {
        // An all-zero span id is invalid in OTLP.
        let id = (crate::ids::random_u128() as u64).max(1);
        id.to_be_bytes()
    }
}
