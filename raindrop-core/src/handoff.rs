//! Detached sub-agents: work an agent launches elsewhere (a queue job,
//! another service) that reports as its **own** event, linked to the
//! launching turn.
//!
//! * The launcher calls [`Interaction::subagent`]: it mints the child's
//!   event id before dispatch, records the dispatch on a span of the
//!   launching interaction (`ai.subagent.dispatch`, with
//!   `raindrop.handoff.mode=detached`, `raindrop.handoff.childEventId`,
//!   `raindrop.handoff.name`) and returns a [`Handoff`], the carrier to send
//!   with the work: as headers ([`Handoff::to_map`]) or in a job payload
//!   (the same map).
//! * The child reads it back ([`Handoff::from_pairs`]) and calls
//!   [`Client::resume_subagent`]: the returned [`Subagent`] is an
//!   interaction with the child's event id (its own event, which it
//!   finishes), and every span it emits carries
//!   `raindrop.handoff.parentEventId`, `raindrop.handoff.parentSpanId`,
//!   `raindrop.handoff.name` and `raindrop.agent.role=subagent`
//!   ([`SubagentLink::attributes`]; the tracing layer adds them itself).
//! * A child dropped without finishing, or [`Subagent::cancel`]led, ends its
//!   event with the property `raindrop.handoff.terminal=cancelled`, and the
//!   spans that end after that carry the same attribute. A run that fails
//!   before it has a span records one with [`Handoff::fail`]
//!   (`ai.subagent.failed`).
//!
//! ## The carrier
//!
//! The Python SDK's format, so a Python launcher and a Rust child (or the
//! reverse) understand each other:
//!
//! ```text
//! traceparent: 00-<raindrop-trace-id>-<raindrop-dispatch-span-id>-01
//! baggage: <members>
//! x-raindrop-handoff: <members>
//! x-raindrop-signature: v1;kid=..;ts=..;fin=1;sig=..   (this SDK only)
//! ```
//!
//! `<members>` are `key=value` joined by `,`, in this order (an absent
//! optional one is left out): `raindrop-event-id` (the launcher's event),
//! `raindrop-child-event-id`, `raindrop-handoff-name`, `raindrop-convo-id`,
//! `raindrop-user-id`, `raindrop-dispatch-span-id` (16 lowercase hex
//! digits), `raindrop-trace-id` (32). Values are percent-encoded as Python's
//! `urllib.parse.quote(value, safe="")` does: every byte outside
//! `A-Z a-z 0-9 - . _ ~` as `%XX` (uppercase hex).
//!
//! Reading: `x-raindrop-handoff` is read first and, when present, alone
//! (tracing instrumentation may rewrite `baggage` and `traceparent`, e.g.
//! with the members of an earlier hop); otherwise the `baggage` members are
//! read. The trace id and dispatch span id come from the members, else from
//! `traceparent`. This SDK's spelling (`raindrop.event_id`,
//! `raindrop.child_event_id`, `raindrop.handoff_name`, `raindrop.convo_id`,
//! `raindrop.user_id`, `raindrop.dispatch_span_id`, `raindrop.trace_id`) is
//! read as the same fields. A header naming a field twice with different
//! values (in either spelling) is refused: which one was meant cannot be
//! known.
//!
//! ## Trust
//!
//! A hand-off names an event id and a user, so it is guarded like the
//! signed carriers of [`propagation`](crate::propagation): this SDK signs
//! what it writes with the same key ([`CarrierKey`](crate::propagation::CarrierKey)) and header format,
//! over this canonical string (lines joined by `\n`, no trailing newline;
//! values encoded as above):
//!
//! ```text
//! raindrop-handoff-v1
//! kid=<kid>
//! ts=<ts>
//! fin=1
//! raindrop-trace-id=<32 hex>
//! raindrop-dispatch-span-id=<16 hex>
//! raindrop-event-id=<value>
//! raindrop-child-event-id=<value>
//! raindrop-handoff-name=<value>
//! raindrop-convo-id=<value>     (only when present)
//! raindrop-user-id=<value>      (only when present)
//! ```
//!
//! (`fin` is always 1: the child finishes its own event.) The child accepts
//! a hand-off only if the signature verifies and is within the replay
//! window, unless it trusts unsigned carriers
//! ([`CarrierTrust::Unsigned`], `RAINDROP_PROPAGATION_TRUST=unsigned`, or
//! `PropagationLayer::trust_unsigned()`); refusals are counted in
//! [`Stats`](crate::Stats) (`carriers_unsigned`, `carriers_bad_signature`,
//! `carriers_stale`, and `carriers_malformed` for a carrier that does not
//! parse) and warned. **The Python SDK does not sign**: a Rust child accepts
//! a Python launcher's hand-off only when it trusts unsigned carriers.
//! A Python child ignores `x-raindrop-signature`. A job that waits in its
//! queue longer than the replay window (`propagation_replay_window`, 5
//! minutes) is refused as stale: give the worker's client a window as long
//! as the queue's longest wait.
//!
//! ```
//! use raindrop_core::{Begin, Client, ClientOptions, propagation::CarrierTrust};
//! use raindrop_core::handoff::Handoff;
//! # let dir = std::env::temp_dir().join(format!("raindrop-doc-handoff-{}", std::process::id()));
//! let client = Client::new(ClientOptions::default()
//!     .local_sink(raindrop_core::LocalSink::File(dir.clone()))
//!     .propagation_secret("shared")).unwrap();
//!
//! // The launcher.
//! let turn = client.begin(Begin::new("user-1", "chat").input("research this")).unwrap();
//! let handoff = turn.subagent("researcher").unwrap();
//! let job_payload = handoff.to_map(); // send it with the job
//!
//! // The child, elsewhere (same secret).
//! let received = Handoff::from_pairs(job_payload.iter().map(|(k, v)| (k.as_str(), v.as_str())))
//!     .unwrap()
//!     .unwrap();
//! let child = client.resume_subagent(&received).unwrap();
//! assert_eq!(child.event_id(), Some(handoff.child_event_id.as_str()));
//! assert_eq!(child.link().parent_event_id(), turn.event_id().unwrap());
//! child.set_input("research this");
//! child.finish("found it");
//! # client.shutdown(std::time::Duration::from_secs(5));
//! # let _ = std::fs::remove_file(dir);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

use crate::interaction::Interaction;
use crate::model::Finish;
use crate::pipeline::CarrierKind;
use crate::propagation::{
    percent_decode, CarrierRefusal, CarrierTrust, TraceParent, BAGGAGE, SIGNATURE, TRACEPARENT,
};
use crate::span::{AttributeValue, SpanRecord, SpanStatus};
use crate::stats::Refusal;
pub use crate::subagent_link::{SubagentLink, TERMINAL};
use crate::Client;

/// The header (and job-payload key) holding the hand-off's members; read
/// before `baggage`.
pub const HANDOFF: &str = "x-raindrop-handoff";

/// The name of the span recording a dispatch on the launcher's side.
pub const DISPATCH_SPAN: &str = "ai.subagent.dispatch";

/// The name (and `ai.operationId`) of the span a child records when it
/// fails before it has a span of its own ([`Handoff::fail`]).
pub const FAILED_SPAN: &str = "ai.subagent.failed";

/// Longest decoded member value read.
const MAX_VALUE_CHARS: usize = 1024;
/// Longest header read (the W3C baggage limit), all its lines together.
const MAX_HEADER: usize = 8192;

/// The fields, by index: Python's member names, this SDK's spelling.
const FIELDS: [(&str, &str); 7] = [
    ("raindrop-event-id", "raindrop.event_id"),
    ("raindrop-child-event-id", "raindrop.child_event_id"),
    ("raindrop-handoff-name", "raindrop.handoff_name"),
    ("raindrop-convo-id", "raindrop.convo_id"),
    ("raindrop-user-id", "raindrop.user_id"),
    ("raindrop-dispatch-span-id", "raindrop.dispatch_span_id"),
    ("raindrop-trace-id", "raindrop.trace_id"),
];
const EVENT: usize = 0;
const CHILD: usize = 1;
const NAME: usize = 2;
const CONVO: usize = 3;
const USER: usize = 4;
const SPAN: usize = 5;
const TRACE: usize = 6;

/// A sub-agent hand-off: what the launcher sends with the work so the
/// child reports as its own event, linked to the launching turn. Made by
/// [`Interaction::subagent`], read back by [`Handoff::from_pairs`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handoff {
    /// The launcher's trace.
    pub trace_id: [u8; 16],
    /// The launcher's dispatch span (the child's spans' parent).
    pub dispatch_span_id: [u8; 8],
    /// The launching interaction's event id.
    pub parent_event_id: String,
    /// The child's event id, minted by the launcher.
    pub child_event_id: String,
    /// The sub-agent's name.
    pub name: String,
    /// The launcher's conversation id.
    pub convo_id: Option<String>,
    /// The launcher's user id (the child's event is that user's too).
    pub user_id: Option<String>,
    /// The `x-raindrop-signature` that came with it (or that this SDK made).
    pub signature: Option<String>,
}

/// Why a carrier was not read as a hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandoffError {
    /// A required field is missing (the member name).
    Missing(&'static str),
    /// A header names this field twice with different values.
    Conflict(&'static str),
    /// This field's value is empty, too long, badly encoded or not an id.
    Malformed(&'static str),
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoffError::Missing(k) => write!(f, "sub-agent hand-off without `{k}`"),
            HandoffError::Conflict(k) => write!(
                f,
                "sub-agent hand-off naming `{k}` twice with different values"
            ),
            HandoffError::Malformed(k) => write!(f, "sub-agent hand-off with a bad `{k}`"),
        }
    }
}

impl std::error::Error for HandoffError {}

/// Percent-encodes as Python's `urllib.parse.quote(v, safe="")`.
fn quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Hex digits (either case) into exactly `N` bytes, not all zero.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let pair = std::str::from_utf8(&b[2 * i..2 * i + 2]).ok()?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    (out != [0; N]).then_some(out)
}

/// The hand-off's members: from `x-raindrop-handoff` when given, else from
/// a `baggage` that names a child event (`None`: no hand-off there).
fn carrier_members(
    handoff: &str,
    baggage: &str,
) -> Result<Option<[Option<String>; 7]>, HandoffError> {
    let mut fields: [Option<String>; 7] = Default::default();
    if !handoff.is_empty() {
        if handoff.len() > MAX_HEADER {
            return Err(HandoffError::Malformed(HANDOFF));
        }
        read_members(handoff, &mut fields)?;
        return Ok(Some(fields));
    }
    if baggage.len() > MAX_HEADER {
        return Ok(None);
    }
    let mut from_baggage: [Option<String>; 7] = Default::default();
    if read_members(baggage, &mut from_baggage).is_err()
        && !baggage.contains(FIELDS[CHILD].0)
        && !baggage.contains(FIELDS[CHILD].1)
    {
        // A bad continuation baggage, not a hand-off.
        return Ok(None);
    }
    read_members(baggage, &mut fields)?;
    Ok(fields[CHILD].is_some().then_some(fields))
}

/// Reads the hand-off members of one header into `fields`.
fn read_members(text: &str, fields: &mut [Option<String>; 7]) -> Result<(), HandoffError> {
    for member in text.split(',').take(180) {
        let kv = member.split(';').next().unwrap_or("");
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let Some(i) = FIELDS.iter().position(|(py, rs)| k == *py || k == *rs) else {
            continue;
        };
        let name = FIELDS[i].0;
        let v = percent_decode(v.trim())
            .filter(|v| !v.is_empty() && v.chars().count() <= MAX_VALUE_CHARS)
            .ok_or(HandoffError::Malformed(name))?;
        match &fields[i] {
            Some(old) if *old != v => return Err(HandoffError::Conflict(name)),
            _ => fields[i] = Some(v),
        }
    }
    Ok(())
}

impl Handoff {
    /// The members in the carrier's order, values encoded.
    fn members(&self) -> Vec<(&'static str, String)> {
        let mut m = vec![
            (FIELDS[EVENT].0, quote(&self.parent_event_id)),
            (FIELDS[CHILD].0, quote(&self.child_event_id)),
            (FIELDS[NAME].0, quote(&self.name)),
        ];
        if let Some(c) = &self.convo_id {
            m.push((FIELDS[CONVO].0, quote(c)));
        }
        if let Some(u) = &self.user_id {
            m.push((FIELDS[USER].0, quote(u)));
        }
        m.push((FIELDS[SPAN].0, hex(&self.dispatch_span_id)));
        m.push((FIELDS[TRACE].0, hex(&self.trace_id)));
        m
    }

    /// The `x-raindrop-handoff` (and `baggage`) value.
    pub fn members_header(&self) -> String {
        self.members()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `traceparent` value: the launcher's trace, the dispatch span as
    /// the parent.
    pub fn trace_parent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_span_id: self.dispatch_span_id,
            sampled: true,
        }
    }

    /// The carrier as header names and values (`traceparent`, `baggage`,
    /// `x-raindrop-handoff`, and `x-raindrop-signature` when signed): set
    /// them on a request, or put the map in a job payload.
    ///
    /// ```
    /// # use raindrop_core::{Begin, Client, ClientOptions};
    /// # let client = Client::new(ClientOptions::default().write_key("k").endpoint("http://127.0.0.1:9")).unwrap();
    /// let turn = client.begin(Begin::new("u 1", "chat")).unwrap();
    /// let map = turn.subagent("writer").unwrap().to_map();
    /// assert!(map["x-raindrop-handoff"].contains("raindrop-user-id=u%201"));
    /// assert_eq!(map["baggage"], map["x-raindrop-handoff"]);
    /// assert!(map.contains_key("traceparent") && map.contains_key("x-raindrop-signature"));
    /// ```
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let members = self.members_header();
        let mut m = BTreeMap::new();
        m.insert(TRACEPARENT.to_owned(), self.trace_parent().to_header());
        m.insert(BAGGAGE.to_owned(), members.clone());
        m.insert(HANDOFF.to_owned(), members);
        if let Some(s) = &self.signature {
            m.insert(SIGNATURE.to_owned(), s.clone());
        }
        m
    }

    /// Reads a hand-off from header names and values (any case; a header
    /// may come as several pairs, e.g. `baggage` lines) or a job payload's
    /// map. `Ok(None)` when they carry no hand-off (no `x-raindrop-handoff`
    /// and no child event id in `baggage`); an error when they carry a
    /// malformed one (see the module docs). The signature is not checked
    /// here: [`Client::resume_subagent`] does.
    ///
    /// ```
    /// use raindrop_core::handoff::{Handoff, HandoffError};
    /// let tp = ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// let h = Handoff::from_pairs([tp, ("x-raindrop-handoff",
    ///     "raindrop-event-id=e-1,raindrop-child-event-id=c-1,raindrop-handoff-name=re%20search")])
    ///     .unwrap().unwrap();
    /// assert_eq!((h.child_event_id.as_str(), h.name.as_str()), ("c-1", "re search"));
    /// assert_eq!(h.trace_id[0], 0x4b);
    /// let twice = Handoff::from_pairs([tp, ("x-raindrop-handoff",
    ///     "raindrop-event-id=e-1,raindrop-child-event-id=c-1,raindrop-child-event-id=c-2")]);
    /// assert_eq!(twice, Err(HandoffError::Conflict("raindrop-child-event-id")));
    /// assert_eq!(Handoff::from_pairs([tp]), Ok(None));
    /// ```
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Option<Handoff>, HandoffError> {
        let mut handoff = String::new();
        let mut baggage = String::new();
        let mut traceparents = Vec::new();
        let mut signatures = Vec::new();
        for (k, v) in pairs {
            let k = k.trim();
            let into = if k.eq_ignore_ascii_case(HANDOFF) {
                &mut handoff
            } else if k.eq_ignore_ascii_case(BAGGAGE) {
                &mut baggage
            } else {
                if k.eq_ignore_ascii_case(TRACEPARENT) {
                    traceparents.push(v);
                } else if k.eq_ignore_ascii_case(SIGNATURE) {
                    signatures.push(v);
                }
                continue;
            };
            if !into.is_empty() {
                into.push(',');
            }
            into.push_str(v);
        }
        let Some(mut fields) = carrier_members(&handoff, &baggage)? else {
            return Ok(None);
        };
        let take = |i: usize, f: &mut [Option<String>; 7]| {
            f[i].take().ok_or(HandoffError::Missing(FIELDS[i].0))
        };
        let parent = match traceparents.as_slice() {
            [one] => TraceParent::parse(one),
            _ => None,
        };
        let trace_id = match fields[TRACE].take() {
            Some(t) => unhex::<16>(&t).ok_or(HandoffError::Malformed(FIELDS[TRACE].0))?,
            None => parent
                .map(|p| p.trace_id)
                .ok_or(HandoffError::Missing(FIELDS[TRACE].0))?,
        };
        let dispatch_span_id = match fields[SPAN].take() {
            Some(t) => unhex::<8>(&t).ok_or(HandoffError::Malformed(FIELDS[SPAN].0))?,
            None => parent
                .map(|p| p.parent_span_id)
                .ok_or(HandoffError::Missing(FIELDS[SPAN].0))?,
        };
        Ok(Some(Handoff {
            trace_id,
            dispatch_span_id,
            parent_event_id: take(EVENT, &mut fields)?,
            child_event_id: take(CHILD, &mut fields)?,
            // Python always names it; a nameless one is still a sub-agent.
            name: fields[NAME].take().unwrap_or_else(|| "subagent".to_owned()),
            convo_id: fields[CONVO].take(),
            user_id: fields[USER].take(),
            signature: match signatures.as_slice() {
                [one] => Some((*one).to_owned()),
                _ => None,
            },
        }))
    }

    /// The canonical string a hand-off's signature covers (module docs).
    fn canonical(&self, kid: &str, ts: u64, fin: u8) -> String {
        let mut s = format!(
            "raindrop-handoff-v1\nkid={kid}\nts={ts}\nfin={fin}\nraindrop-trace-id={}\nraindrop-dispatch-span-id={}",
            hex(&self.trace_id),
            hex(&self.dispatch_span_id)
        );
        for (k, v) in self.members() {
            if k != FIELDS[SPAN].0 && k != FIELDS[TRACE].0 {
                let _ = write!(s, "\n{k}={v}");
            }
        }
        s
    }

    /// Records that the child failed before it had a span of its own: an
    /// `ai.subagent.failed` span (`ai.operationId=ai.subagent.failed`,
    /// error status with `error`) under the dispatch span, carrying the
    /// link attributes and the child's event id. Checked like
    /// [`Client::resume_subagent`] (a refused hand-off records nothing).
    ///
    /// ```
    /// # use raindrop_core::{Begin, Client, ClientOptions};
    /// # let client = Client::new(ClientOptions::default().write_key("k").endpoint("http://127.0.0.1:9")).unwrap();
    /// # let handoff = client.begin(Begin::new("u", "chat")).unwrap().subagent("writer").unwrap();
    /// handoff.fail(&client, "the job's input could not be decoded").unwrap();
    /// ```
    pub fn fail(&self, client: &Client, error: impl fmt::Display) -> Result<(), CarrierRefusal> {
        self.fail_with(client, error, CarrierTrust::Signed)
    }

    /// [`fail`](Self::fail), trusting unsigned hand-offs when `trust` is
    /// [`CarrierTrust::Unsigned`] (a Python launcher's).
    pub fn fail_with(
        &self,
        client: &Client,
        error: impl fmt::Display,
        trust: CarrierTrust,
    ) -> Result<(), CarrierRefusal> {
        client.resume_subagent_check(self, trust)?;
        let link = link_of(self);
        let now = SystemTime::now();
        let mut attributes: Vec<(Cow<'static, str>, AttributeValue)> = vec![
            ("ai.operationId".into(), FAILED_SPAN.into()),
            (
                "ai.telemetry.metadata.raindrop.eventId".into(),
                self.child_event_id.as_str().into(),
            ),
            (
                "traceloop.association.properties.event_id".into(),
                self.child_event_id.as_str().into(),
            ),
        ];
        if let Some(u) = &self.user_id {
            attributes.push((
                "traceloop.association.properties.user_id".into(),
                u.as_str().into(),
            ));
        }
        attributes.extend(link.attributes());
        client.pipeline().export_span(SpanRecord {
            trace_id: self.trace_id,
            span_id: SpanRecord::new_span_id(),
            parent_span_id: Some(self.dispatch_span_id),
            name: FAILED_SPAN.to_owned(),
            start: now,
            end: now,
            status: SpanStatus::Error(error.to_string()),
            attributes,
        });
        Ok(())
    }
}

/// A sub-agent's run: its own interaction (the child event id the launcher
/// minted), linked to the launcher. Dereferences to [`Interaction`]: set
/// input, properties, and [`finish`](Interaction::finish) it. Clones share
/// one run; when the last one is dropped without a finish, the run is
/// [cancelled](Self::cancel).
#[derive(Clone)]
pub struct Subagent {
    run: Arc<Run>,
}

struct Run {
    interaction: Interaction,
    link: Arc<SubagentLink>,
}

impl Drop for Run {
    fn drop(&mut self) {
        cancel(&self.interaction, &self.link);
    }
}

/// The link the hand-off `h` describes.
fn link_of(h: &Handoff) -> SubagentLink {
    SubagentLink::new(
        h.parent_event_id.clone(),
        hex(&h.dispatch_span_id),
        h.name.clone(),
        h.trace_id,
        h.dispatch_span_id,
    )
}

fn cancel(i: &Interaction, link: &SubagentLink) {
    if i.is_noop() || i.is_finished() {
        return;
    }
    link.mark_cancelled();
    i.finish_with(Finish::new().property(TERMINAL, "cancelled"));
}

impl fmt::Debug for Subagent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subagent")
            .field("interaction", &self.run.interaction)
            .field("name", &self.run.link.name())
            .finish_non_exhaustive()
    }
}

impl Deref for Subagent {
    type Target = Interaction;
    fn deref(&self) -> &Interaction {
        &self.run.interaction
    }
}

impl Subagent {
    /// The child's interaction.
    pub fn interaction(&self) -> &Interaction {
        &self.run.interaction
    }

    /// The link to the launcher (for spans made outside the tracing layer:
    /// add [`SubagentLink::attributes`]).
    pub fn link(&self) -> &Arc<SubagentLink> {
        &self.run.link
    }

    /// Ends the run as cancelled, unless it is finished already: the event
    /// is finished with the property `raindrop.handoff.terminal=cancelled`
    /// (an event with no input or output is still not sent, like any
    /// other), and spans ending from now on carry the same attribute.
    pub fn cancel(&self) {
        cancel(&self.run.interaction, &self.run.link);
    }
}

impl Interaction {
    /// Launches a detached sub-agent from this interaction (see the
    /// [module docs](crate::handoff)): mints the child's event id, records
    /// the dispatch on an `ai.subagent.dispatch` span (a root span of a new
    /// trace; `raindrop_tracing::propagate::subagent` makes it a child of
    /// the current span instead) and returns the signed carrier to send
    /// with the work. `None` for a no-op handle.
    pub fn subagent(&self, name: impl Into<String>) -> Option<Handoff> {
        self.subagent_in(None, name)
    }

    /// [`subagent`](Self::subagent) with the dispatch span under
    /// `parent` (trace id, span id): what the tracing integration uses.
    #[doc(hidden)]
    pub fn subagent_in(
        &self,
        parent: Option<([u8; 16], [u8; 8])>,
        name: impl Into<String>,
    ) -> Option<Handoff> {
        let pipeline = self.pipeline()?;
        let parent_event_id = self.event_id()?.to_owned();
        let (trace_id, parent_span_id) = match parent {
            Some((t, s)) => (t, Some(s)),
            None => (SpanRecord::new_trace_id(), None),
        };
        let mut name: String = name.into();
        if name.trim().is_empty() {
            name = "subagent".to_owned();
        }
        let mut h = Handoff {
            trace_id,
            dispatch_span_id: SpanRecord::new_span_id(),
            parent_event_id,
            child_event_id: crate::ids::uuid_v4(),
            name,
            convo_id: self.convo_id(),
            user_id: self.user_id(),
            signature: None,
        };
        if let Some(key) = pipeline.carrier_key.as_ref() {
            pipeline.warn_if_local_key();
            let now = crate::time::unix_now();
            h.signature = Some(key.sign_with(now, true, |kid, ts, fin| h.canonical(kid, ts, fin)));
        }
        let now = SystemTime::now();
        let mut attributes: Vec<(Cow<'static, str>, AttributeValue)> = vec![
            ("ai.operationId".into(), DISPATCH_SPAN.into()),
            ("traceloop.span.kind".into(), "task".into()),
            ("traceloop.entity.name".into(), h.name.as_str().into()),
            (
                "ai.telemetry.metadata.raindrop.eventId".into(),
                h.parent_event_id.as_str().into(),
            ),
            (
                "traceloop.association.properties.event_id".into(),
                h.parent_event_id.as_str().into(),
            ),
        ];
        if let Some(u) = &h.user_id {
            attributes.push((
                "traceloop.association.properties.user_id".into(),
                u.as_str().into(),
            ));
        }
        if let Some(c) = &h.convo_id {
            attributes.push((
                "traceloop.association.properties.convo_id".into(),
                c.as_str().into(),
            ));
        }
        attributes.push(("raindrop.handoff.mode".into(), "detached".into()));
        attributes.push((
            "raindrop.handoff.childEventId".into(),
            h.child_event_id.as_str().into(),
        ));
        attributes.push(("raindrop.handoff.name".into(), h.name.as_str().into()));
        pipeline.export_span(SpanRecord {
            trace_id,
            span_id: h.dispatch_span_id,
            parent_span_id,
            name: DISPATCH_SPAN.to_owned(),
            start: now,
            end: now,
            status: SpanStatus::Ok,
            attributes,
        });
        Some(h)
    }
}

impl Client {
    /// Starts a sub-agent's run from the hand-off its launcher sent (see
    /// the [module docs](crate::handoff)): checks the signature (as the
    /// client's `propagation_trust` says), then returns a [`Subagent`]
    /// whose interaction is the child's own event (the launcher's user and
    /// conversation, the hand-off's name as the event name). A refusal is
    /// counted in [`Stats`](crate::Stats) and warned.
    pub fn resume_subagent(&self, handoff: &Handoff) -> Result<Subagent, CarrierRefusal> {
        self.resume_subagent_with(handoff, CarrierTrust::Signed)
    }

    /// [`resume_subagent`](Self::resume_subagent), trusting unsigned
    /// hand-offs when `trust` is [`CarrierTrust::Unsigned`] (needed for a
    /// Python launcher's, which are never signed).
    ///
    /// ```
    /// use raindrop_core::{handoff::Handoff, propagation::CarrierTrust, Client, ClientOptions};
    /// # let client = Client::new(ClientOptions::default().write_key("k").endpoint("http://127.0.0.1:9")).unwrap();
    /// let h = Handoff::from_pairs([("baggage",
    ///     "raindrop-event-id=e-1,raindrop-child-event-id=c-1,raindrop-handoff-name=w,\
    ///      raindrop-dispatch-span-id=00f067aa0ba902b7,raindrop-trace-id=4bf92f3577b34da6a3ce929d0e0e4736")])
    ///     .unwrap().unwrap();
    /// assert!(client.resume_subagent(&h).is_err()); // unsigned
    /// let child = client.resume_subagent_with(&h, CarrierTrust::Unsigned).unwrap();
    /// assert_eq!(child.event_id(), Some("c-1"));
    /// assert_eq!(client.stats().carriers_unsigned, 1);
    /// ```
    pub fn resume_subagent_with(
        &self,
        handoff: &Handoff,
        trust: CarrierTrust,
    ) -> Result<Subagent, CarrierRefusal> {
        self.resume_subagent_check(handoff, trust)?;
        let core = Interaction::new_core(
            self.pipeline().clone(),
            handoff.child_event_id.as_str().into(),
            handoff.user_id.clone().filter(|u| !u.trim().is_empty()),
            handoff.convo_id.clone(),
            Some(handoff.name.clone()),
            None,
        );
        if !core.sampled {
            self.pipeline().sampled_out(crate::ItemKind::Interaction);
        }
        self.remember_interaction(&core);
        let link = Arc::new(link_of(handoff));
        let _ = core.subagent.set(link.clone());
        Ok(Subagent {
            run: Arc::new(Run {
                interaction: Interaction::from_core(core),
                link,
            }),
        })
    }

    fn resume_subagent_check(
        &self,
        handoff: &Handoff,
        trust: CarrierTrust,
    ) -> Result<(), CarrierRefusal> {
        self.pipeline()
            .accept_signed(
                handoff.signature.as_deref(),
                trust,
                CarrierKind::Handoff,
                |key, header, now, window| {
                    key.verify_with(header, now, window, |kid, ts, fin| {
                        handoff.canonical(kid, ts, fin)
                    })
                },
            )
            .map(|_| ())
    }

    /// Counts and warns a hand-off that did not parse (see
    /// [`Handoff::from_pairs`]). Used by the tower layer; not part of the
    /// stable API.
    #[doc(hidden)]
    pub fn refuse_malformed_handoff(&self, error: &HandoffError) {
        tracing::debug!(target: "raindrop", "{error}");
        self.pipeline().counters.refuse(
            Refusal::CarrierMalformed,
            "an incoming sub-agent hand-off was malformed (a field named twice with different values, or a missing or bad id): it was refused",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handoff {
        Handoff {
            trace_id: [0x4b; 16],
            dispatch_span_id: [0x0f; 8],
            parent_event_id: "e 1".into(),
            child_event_id: "c-1".into(),
            name: "re,search".into(),
            convo_id: Some("c+1".into()),
            user_id: Some("ada@example.com".into()),
            signature: Some("v1;x".into()),
        }
    }

    #[test]
    fn the_map_round_trips_and_quotes_like_python() {
        let h = sample();
        let map = h.to_map();
        assert_eq!(
            map[HANDOFF],
            "raindrop-event-id=e%201,raindrop-child-event-id=c-1,raindrop-handoff-name=re%2Csearch,raindrop-convo-id=c%2B1,raindrop-user-id=ada%40example.com,raindrop-dispatch-span-id=0f0f0f0f0f0f0f0f,raindrop-trace-id=4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b"
        );
        let back = Handoff::from_pairs(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .unwrap()
            .unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn the_handoff_header_is_read_first_and_alone() {
        let h = sample();
        let stale = "raindrop-event-id=old,raindrop-child-event-id=old-child";
        let back = Handoff::from_pairs([
            ("Baggage", stale),
            ("X-Raindrop-Handoff", h.members_header().as_str()),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(back.child_event_id, "c-1");
    }

    #[test]
    fn conflicts_and_bad_values_are_refused_in_either_spelling() {
        let tp = (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        for (text, err) in [
            (
                "raindrop-event-id=e,raindrop.event_id=f,raindrop-child-event-id=c",
                HandoffError::Conflict("raindrop-event-id"),
            ),
            (
                "raindrop-event-id=e,raindrop-child-event-id=%zz",
                HandoffError::Malformed("raindrop-child-event-id"),
            ),
            (
                "raindrop-child-event-id=c",
                HandoffError::Missing("raindrop-event-id"),
            ),
            (
                "raindrop-event-id=e,raindrop-child-event-id=c,raindrop-trace-id=xyz",
                HandoffError::Malformed("raindrop-trace-id"),
            ),
        ] {
            assert_eq!(
                Handoff::from_pairs([tp, (HANDOFF, text)]),
                Err(err),
                "{text}"
            );
        }
        // The same value twice is one value.
        assert!(Handoff::from_pairs([
            tp,
            (
                HANDOFF,
                "raindrop-event-id=e,raindrop.event_id=e,raindrop-child-event-id=c"
            )
        ])
        .unwrap()
        .is_some());
        // A continuation's baggage is not a hand-off.
        assert_eq!(
            Handoff::from_pairs([tp, (BAGGAGE, "raindrop.event_id=e,raindrop.event_id=f")]),
            Ok(None)
        );
    }

    #[test]
    fn a_client_accepts_fresh_signed_handoffs_only() {
        let client = Client::new(
            crate::ClientOptions::default()
                .write_key("k")
                .endpoint("http://127.0.0.1:9")
                .propagation_secret("s"),
        )
        .unwrap();
        let now = crate::time::unix_now();
        let sign = |h: &Handoff, secret: &[u8], ts: u64| {
            let mut h = h.clone();
            let key = crate::propagation::CarrierKey::from_secret(secret);
            h.signature = Some(key.sign_with(ts, true, |k, t, f| h.canonical(k, t, f)));
            h
        };
        let h = sample();
        let run = client.resume_subagent(&sign(&h, b"s", now)).unwrap();
        assert_eq!(run.event_id(), Some("c-1"));
        assert_eq!(run.event_name().as_deref(), Some("re,search"));
        assert!(!run.link().is_cancelled());
        run.cancel();
        assert!(run.link().is_cancelled() && run.is_finished());
        let refused = [
            (sign(&h, b"s", now - 1000), CarrierRefusal::Stale),
            (sign(&h, b"other", now), CarrierRefusal::BadSignature),
            (h.clone(), CarrierRefusal::BadSignature), // "v1;x"
        ];
        for (h, why) in refused {
            assert_eq!(client.resume_subagent(&h).unwrap_err(), why);
        }
        let mut unsigned = h.clone();
        unsigned.signature = None;
        assert_eq!(
            client.resume_subagent(&unsigned).unwrap_err(),
            CarrierRefusal::Unsigned
        );
        assert!(client
            .resume_subagent_with(&unsigned, CarrierTrust::Unsigned)
            .is_ok());
        let s = client.stats();
        assert_eq!(
            (
                s.carriers_stale,
                s.carriers_bad_signature,
                s.carriers_unsigned
            ),
            (1, 2, 1)
        );
    }

    #[test]
    fn a_signature_covers_every_field() {
        let key = crate::propagation::CarrierKey::from_secret(b"s");
        let mut h = sample();
        let sig = key.sign_with(100, true, |k, t, f| h.canonical(k, t, f));
        let w = std::time::Duration::from_secs(300);
        assert!(key
            .verify_with(&sig, 100, w, |k, t, f| h.canonical(k, t, f))
            .is_ok());
        let changes: [fn(&mut Handoff); 7] = [
            |h| h.trace_id[3] ^= 1,
            |h| h.dispatch_span_id[0] ^= 1,
            |h| h.parent_event_id.push('x'),
            |h| h.child_event_id.push('x'),
            |h| h.name.push('x'),
            |h| h.convo_id = None,
            |h| h.user_id = Some("mallory".into()),
        ];
        for change in changes {
            let mut t = h.clone();
            change(&mut t);
            assert!(key
                .verify_with(&sig, 100, w, |k, ts, f| t.canonical(k, ts, f))
                .is_err());
        }
        h.signature = None;
    }
}
