//! Validation of what tracking calls are given: each check names the field
//! it refuses, and a call either builds the record that is queued or returns
//! [`Error::InvalidField`]. Nothing here does I/O or touches the queue.

use serde_json::Value;

use crate::item::{AiData, EventRecord, SignalRecord};
use crate::model::{AiEvent, Attachment, Begin, Event, Properties, Signal, SignalType, Timestamp};
use crate::Error;

/// Checks an AI event and builds what is queued.
pub(crate) fn ai_event(event: AiEvent) -> Result<EventRecord, Error> {
    let properties = properties_of(event.properties, event.invalid_properties)?;
    let ai = AiData {
        model: event.model,
        input: event.input,
        output: event.output,
        convo_id: event.convo_id.map(Into::into),
    };
    if !ai.has_content() {
        return Err(Error::invalid(
            "ai_data",
            "track_ai needs a non-empty input or output",
        ));
    }
    event_record(
        event.user_id,
        event.event,
        event.event_id,
        Some(ai),
        properties,
        event.timestamp,
        event.attachments,
    )
}

/// Checks a plain event and builds what is queued.
pub(crate) fn event(event: Event) -> Result<EventRecord, Error> {
    let properties = properties_of(event.properties, event.invalid_properties)?;
    event_record(
        event.user_id,
        event.event,
        event.event_id,
        None,
        properties,
        event.timestamp,
        event.attachments,
    )
}

#[allow(clippy::too_many_arguments)]
fn event_record(
    user_id: String,
    event: String,
    event_id: Option<String>,
    ai: Option<AiData>,
    properties: Properties,
    timestamp: Option<Timestamp>,
    attachments: Vec<Attachment>,
) -> Result<EventRecord, Error> {
    require("user_id", &user_id)?;
    require("event", &event)?;
    validate_attachments(&attachments)?;
    let timestamp = match timestamp {
        Some(t) => t.validate("timestamp")?,
        None => Timestamp::now(),
    };
    Ok(EventRecord {
        event_id: new_event_id(event_id)?,
        user_id,
        event,
        ai,
        properties,
        timestamp,
        attachments,
    })
}

/// What `begin` checked: the event id (given or new) and the properties.
pub(crate) struct CheckedBegin {
    pub(crate) event_id: String,
    pub(crate) properties: Properties,
}

/// Checks the start of an interaction.
pub(crate) fn begin(begin: &mut Begin) -> Result<CheckedBegin, Error> {
    let properties = properties_of(
        std::mem::take(&mut begin.properties),
        begin.invalid_properties.take(),
    )?;
    require("event", &begin.event)?;
    validate_attachments(&begin.attachments)?;
    Ok(CheckedBegin {
        event_id: new_event_id(begin.event_id.take())?,
        properties,
    })
}

/// Checks identify's arguments.
pub(crate) fn identify(
    user_id: &str,
    traits: Result<Properties, String>,
) -> Result<Properties, Error> {
    let traits = traits.map_err(|reason| Error::invalid("traits", reason))?;
    let traits = within_depth("traits", traits)?;
    require("user_id", user_id)?;
    Ok(traits)
}

/// Checks a signal and builds what is queued.
pub(crate) fn signal(signal: Signal) -> Result<SignalRecord, Error> {
    let Signal {
        event_id,
        name,
        signal_type,
        sentiment,
        comment,
        after,
        properties,
        timestamp,
        attachment_id,
        invalid_properties,
    } = signal;
    let mut properties = properties_of(properties, invalid_properties)?;
    require("event_id", &event_id)?;
    require("name", &name)?;
    let non_blank = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    match signal_type {
        SignalType::Feedback => {
            if let Some(c) = comment {
                if properties.contains_key("comment") {
                    tracing::warn!(target: "raindrop", "track_signal: comment argument replaces properties.comment");
                }
                properties.insert("comment".to_owned(), Value::String(c));
            }
            if !non_blank(properties.get("comment")) {
                return Err(Error::invalid(
                    "comment",
                    "a feedback signal needs a non-empty comment",
                ));
            }
        }
        SignalType::Edit => {
            if let Some(a) = after {
                properties.insert("after".to_owned(), Value::String(a));
            }
            if !non_blank(properties.get("after")) {
                return Err(Error::invalid(
                    "after",
                    "an edit signal needs the corrected text in `after`",
                ));
            }
        }
        SignalType::Default => {
            if comment.is_some() || after.is_some() {
                tracing::warn!(target: "raindrop", "track_signal: comment/after are ignored on a default signal");
            }
        }
    }
    let timestamp = match timestamp {
        Some(t) => t.validate("timestamp")?,
        None => Timestamp::now(),
    };
    Ok(SignalRecord {
        event_id,
        signal_name: name,
        timestamp,
        properties,
        attachment_id,
        sentiment,
        signal_type,
    })
}

/// Properties given to a builder: refused if `properties(..)` got something
/// that is not a JSON object, or if they nest too deep.
pub(crate) fn properties_of(
    properties: Properties,
    invalid: Option<String>,
) -> Result<Properties, Error> {
    if let Some(reason) = invalid {
        dismantle(properties);
        return Err(Error::invalid("properties", reason));
    }
    within_depth("properties", properties)
}

pub(crate) fn require(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        Err(Error::invalid(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// Deepest nesting of objects and arrays accepted in properties and traits
/// (the map itself is level 1). Deeper JSON would overflow the worker's stack
/// when serialised, so it is refused with an error naming the field.
pub(crate) const MAX_DEPTH: usize = 512;

/// Passes `map` through if its nesting is within [`MAX_DEPTH`]; otherwise
/// drops it without recursion and returns an error naming `field`. Callers
/// run it before any other check, so no early return drops a deep map
/// recursively.
pub(crate) fn within_depth(field: &str, map: Properties) -> Result<Properties, Error> {
    match check_depth(field, &map) {
        Ok(()) => Ok(map),
        Err(e) => {
            dismantle(map);
            Err(e)
        }
    }
}

/// Checks nesting without recursion, so the check itself cannot overflow.
fn check_depth(field: &str, map: &Properties) -> Result<(), Error> {
    let mut stack: Vec<(&Value, usize)> = map.values().map(|v| (v, 2)).collect();
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Object(_) | Value::Array(_) if depth > MAX_DEPTH => {
                return Err(Error::invalid(
                    field,
                    format!("nested deeper than {MAX_DEPTH} levels of objects and arrays"),
                ));
            }
            Value::Object(m) => stack.extend(m.values().map(|c| (c, depth + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Drops a refused value without recursion: serde_json drops nested values
/// recursively, which would overflow the caller's stack on very deep JSON.
fn dismantle(map: Properties) {
    let mut stack: Vec<Value> = map.into_iter().map(|(_, v)| v).collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
}

pub(crate) fn validate_attachments(attachments: &[Attachment]) -> Result<(), Error> {
    for (i, a) in attachments.iter().enumerate() {
        if a.value.is_empty() {
            return Err(Error::invalid(
                format!("attachments[{i}].value"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

pub(crate) fn new_event_id(given: Option<String>) -> Result<String, Error> {
    match given {
        Some(id) if id.trim().is_empty() => {
            Err(Error::invalid("event_id", "must not be empty when given"))
        }
        Some(id) => Ok(id),
        None => Ok(crate::ids::uuid_v4()),
    }
}

pub(crate) fn normalise_endpoint(endpoint: &str) -> Result<reqwest::Url, Error> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{trimmed}/")).map_err(|e| Error::Config {
        field: "endpoint",
        reason: format!("`{endpoint}` is not a URL: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config {
            field: "endpoint",
            reason: format!("scheme `{}` is not http or https", url.scheme()),
        });
    }
    Ok(url)
}

pub(crate) fn warn_if_plain_http(url: &reqwest::Url) {
    if url.scheme() != "http" {
        return;
    }
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if !loopback {
        tracing::warn!(target: "raindrop", "the endpoint uses plain http to a non-loopback host: the write key would travel unencrypted");
    }
}

/// The TLS trust the worker's HTTP client is built with, checked up front so
/// a bad certificate is an error from `Client::new`, not a silent failure.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    pub(crate) roots: crate::TlsRoots,
    pub(crate) extra: Vec<rustls::pki_types::CertificateDer<'static>>,
}

pub(crate) fn tls(options: &crate::ClientOptions) -> Result<Tls, Error> {
    if matches!(
        options.tls_roots,
        crate::TlsRoots::Native | crate::TlsRoots::BundledAndNative
    ) && !cfg!(feature = "native-roots")
    {
        return Err(Error::Config {
            field: "tls_roots",
            reason: "the platform's certificate store needs the `native-roots` feature".into(),
        });
    }
    let mut extra = Vec::new();
    for (i, pem) in options.ca_certificates.iter().enumerate() {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config {
                field: "ca_certificates",
                reason: format!("entry {i} is not a PEM certificate: {e}"),
            })?;
        if certs.is_empty() {
            return Err(Error::Config {
                field: "ca_certificates",
                reason: format!("entry {i} holds no PEM certificate"),
            });
        }
        extra.extend(certs);
    }
    Ok(Tls {
        roots: options.tls_roots,
        extra,
    })
}

/// Serializes `value` into properties (or traits, named by `field`): it must
/// be a JSON object (a map or a struct); `null` (`()`, `None`) is none.
///
/// Nesting is measured first, with a serializer that stops at
/// [`MAX_DEPTH`]: building (or dropping) a deeper `serde_json::Value`
/// recurses once per level and would overflow the caller's stack. A refused
/// value is dropped as usual when its drop is safe for the stack (at most
/// [`SAFE_DROP_DEPTH`] levels, measured by the same probe); only a deeper
/// one, which the caller could not have dropped safely either, is left
/// undropped.
/// Any `Serialize` value as JSON, refused (without overflowing the stack)
/// when deeper than [`MAX_DEPTH`].
pub(crate) fn to_value<T: serde::Serialize>(value: T) -> Result<Value, String> {
    if let Err(e) = value.serialize(DepthProbe::new(MAX_DEPTH)) {
        let droppable = !e.too_deep || value.serialize(DepthProbe::new(SAFE_DROP_DEPTH)).is_ok();
        if droppable {
            drop(value);
        } else {
            std::mem::forget(value);
        }
        return Err(e.message);
    }
    serde_json::to_value(&value).map_err(|e| format!("cannot be serialized: {e}"))
}

pub(crate) fn to_properties<T: serde::Serialize>(value: T) -> Result<Properties, String> {
    match to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Properties::new()),
        Ok(other) => Err(format!(
            "must serialize to a JSON object (a map or a struct), not {}",
            match other {
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                _ => "an array",
            }
        )),
        Err(e) => Err(e),
    }
}

/// Why [`DepthProbe`] stopped.
#[derive(Debug)]
struct ProbeError {
    message: String,
    too_deep: bool,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProbeError {}

impl serde::ser::Error for ProbeError {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        ProbeError {
            message: format!("cannot be serialized: {msg}"),
            too_deep: false,
        }
    }
}

/// Deepest refused value dropped the usual (recursive) way: a few hundred
/// bytes of stack a level stays well inside a 2 MiB thread stack.
const SAFE_DROP_DEPTH: usize = 1024;

/// A serializer that writes nothing and fails past `limit` levels of
/// maps, sequences and structs, so its own recursion is bounded.
#[derive(Clone, Copy)]
struct DepthProbe {
    depth: usize,
    limit: usize,
}

impl DepthProbe {
    fn new(limit: usize) -> Self {
        DepthProbe { depth: 1, limit }
    }

    fn enter(self) -> Result<DepthProbe, ProbeError> {
        if self.depth > self.limit {
            return Err(ProbeError {
                message: format!("nested deeper than {MAX_DEPTH} levels of objects and arrays"),
                too_deep: true,
            });
        }
        Ok(DepthProbe {
            depth: self.depth + 1,
            limit: self.limit,
        })
    }
}

macro_rules! probe_leaves {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), ProbeError> { Ok(()) })*
    };
}

impl serde::Serializer for DepthProbe {
    type Ok = ();
    type Error = ProbeError;
    type SerializeSeq = DepthProbe;
    type SerializeTuple = DepthProbe;
    type SerializeTupleStruct = DepthProbe;
    type SerializeTupleVariant = DepthProbe;
    type SerializeMap = DepthProbe;
    type SerializeStruct = DepthProbe;
    type SerializeStructVariant = DepthProbe;

    probe_leaves!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_some<T: serde::Serialize + ?Sized>(self, v: &T) -> Result<(), ProbeError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), ProbeError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), ProbeError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> Result<(), ProbeError> {
        // serde_json writes `{"Variant": value}`: one level more.
        v.serialize(self.enter()?)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_tuple(self, _: usize) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<DepthProbe, ProbeError> {
        self.enter()?.enter()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<DepthProbe, ProbeError> {
        self.enter()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<DepthProbe, ProbeError> {
        self.enter()?.enter()
    }
}

macro_rules! probe_compound {
    ($($trait:ident { $($method:ident),* })*) => {
        $(impl serde::ser::$trait for DepthProbe {
            type Ok = ();
            type Error = ProbeError;
            $(fn $method<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ProbeError> {
                v.serialize(*self)
            })*
            fn end(self) -> Result<(), ProbeError> {
                Ok(())
            }
        })*
    };
}

probe_compound! {
    SerializeSeq { serialize_element }
    SerializeTuple { serialize_element }
    SerializeTupleStruct { serialize_field }
    SerializeTupleVariant { serialize_field }
}

impl serde::ser::SerializeMap for DepthProbe {
    type Ok = ();
    type Error = ProbeError;
    fn serialize_key<T: serde::Serialize + ?Sized>(&mut self, k: &T) -> Result<(), ProbeError> {
        k.serialize(*self)
    }
    fn serialize_value<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ProbeError> {
        v.serialize(*self)
    }
    fn end(self) -> Result<(), ProbeError> {
        Ok(())
    }
}

macro_rules! probe_fields {
    ($($trait:ident)*) => {
        $(impl serde::ser::$trait for DepthProbe {
            type Ok = ();
            type Error = ProbeError;
            fn serialize_field<T: serde::Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                v: &T,
            ) -> Result<(), ProbeError> {
                v.serialize(*self)
            }
            fn end(self) -> Result<(), ProbeError> {
                Ok(())
            }
        })*
    };
}

probe_fields! { SerializeStruct SerializeStructVariant }
