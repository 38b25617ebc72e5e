//! The data model: what callers hand to the client.
//!
//! Every type is a plain builder. Validation happens in the client when the
//! value is tracked, so errors can name the offending field.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::Error;

use crate::properties::Properties;

/// The kind of an [`Attachment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttachmentType {
    /// Source code; pair it with a language.
    Code,
    /// Plain text.
    Text,
    /// An image URL or inline data.
    Image,
    /// An embeddable page URL.
    Iframe,
}

impl AttachmentType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentType::Code => "code",
            AttachmentType::Text => "text",
            AttachmentType::Image => "image",
            AttachmentType::Iframe => "iframe",
        }
    }
}

impl FromStr for AttachmentType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "code" => Ok(Self::Code),
            "text" => Ok(Self::Text),
            "image" => Ok(Self::Image),
            "iframe" => Ok(Self::Iframe),
            other => Err(Error::invalid(
                "attachment.type",
                format!("`{other}` is not one of code, text, image, iframe"),
            )),
        }
    }
}

/// Whether an attachment belongs to the question or the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Part of what the user sent.
    Input,
    /// Part of what the model answered.
    Output,
    /// Supporting context (shown as output by the dashboard).
    Context,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Input => "input",
            Role::Output => "output",
            Role::Context => "context",
        }
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "input" => Ok(Self::Input),
            "output" => Ok(Self::Output),
            "context" => Ok(Self::Context),
            other => Err(Error::invalid(
                "attachment.role",
                format!("`{other}` is not one of input, output, context"),
            )),
        }
    }
}

/// A piece of content shown next to an event: code, text, an image or a page.
///
/// ```
/// use raindrop_core::{Attachment, Role};
/// let a = Attachment::code("SELECT 1", "sql").name("query.sql").role(Role::Input);
/// assert_eq!(a.value(), "SELECT 1");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub(crate) kind: AttachmentType,
    pub(crate) value: String,
    pub(crate) name: Option<String>,
    pub(crate) role: Option<Role>,
    pub(crate) language: Option<String>,
    pub(crate) attachment_id: Option<String>,
}

impl Attachment {
    /// An attachment of any type.
    pub fn new(kind: AttachmentType, value: impl Into<String>) -> Self {
        Attachment {
            kind,
            value: value.into(),
            name: None,
            role: None,
            language: None,
            attachment_id: None,
        }
    }
    /// A text attachment.
    pub fn text(value: impl Into<String>) -> Self {
        Self::new(AttachmentType::Text, value)
    }
    /// A code attachment in `language` (e.g. `"python"`).
    pub fn code(value: impl Into<String>, language: impl Into<String>) -> Self {
        Self::new(AttachmentType::Code, value).language(language)
    }
    /// An image, by URL or inline data.
    pub fn image(url: impl Into<String>) -> Self {
        Self::new(AttachmentType::Image, url)
    }
    /// An embeddable page, by URL.
    pub fn iframe(url: impl Into<String>) -> Self {
        Self::new(AttachmentType::Iframe, url)
    }
    /// Sets the display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the role.
    pub fn role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }
    /// Sets the language of a code attachment.
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }
    /// Pre-assigns an id that signals can later point at.
    pub fn attachment_id(mut self, id: impl Into<String>) -> Self {
        self.attachment_id = Some(id.into());
        self
    }
    /// The attachment's content.
    pub fn value(&self) -> &str {
        &self.value
    }
    /// The attachment's type.
    pub fn kind(&self) -> AttachmentType {
        self.kind
    }
}

/// When something happened. Built from a chrono date-time or parsed from an
/// RFC 3339 string when tracked (an unparseable string is an error naming
/// `timestamp`).
#[derive(Debug, Clone, PartialEq)]
pub struct Timestamp(TimestampRepr);

#[derive(Debug, Clone, PartialEq)]
enum TimestampRepr {
    Parsed(DateTime<FixedOffset>),
    Naive(NaiveDateTime),
    Unparsed(String),
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Utc::now().into()
    }

    /// Checks a string timestamp; keeps its offset (none if it had none).
    pub(crate) fn validate(self, field: &str) -> Result<Self, Error> {
        match self.0 {
            TimestampRepr::Unparsed(s) => {
                let t = s.trim();
                if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
                    return Ok(Timestamp(TimestampRepr::Parsed(dt)));
                }
                for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                    if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
                        return Ok(Timestamp(TimestampRepr::Naive(n)));
                    }
                }
                Err(Error::invalid(
                    field,
                    format!("`{s}` is not an RFC 3339 timestamp"),
                ))
            }
            other => Ok(Timestamp(other)),
        }
    }

    /// The wire form: RFC 3339, `Z` for UTC, fractional seconds only when present.
    pub(crate) fn to_wire(&self) -> String {
        match &self.0 {
            TimestampRepr::Parsed(dt) if dt.offset().local_minus_utc() == 0 => dt
                .with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            TimestampRepr::Parsed(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, false),
            TimestampRepr::Naive(n) => n.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
            TimestampRepr::Unparsed(s) => s.clone(),
        }
    }
}

impl<Tz: TimeZone> From<DateTime<Tz>> for Timestamp {
    fn from(dt: DateTime<Tz>) -> Self {
        Timestamp(TimestampRepr::Parsed(dt.fixed_offset()))
    }
}
impl From<&str> for Timestamp {
    fn from(s: &str) -> Self {
        Timestamp(TimestampRepr::Unparsed(s.to_owned()))
    }
}
impl From<String> for Timestamp {
    fn from(s: String) -> Self {
        Timestamp(TimestampRepr::Unparsed(s))
    }
}
impl From<std::time::SystemTime> for Timestamp {
    /// Any `SystemTime` converts: one outside the range of calendar dates
    /// (around ±262,000 years) is clamped to the nearest representable one
    /// instead of panicking.
    fn from(t: std::time::SystemTime) -> Self {
        let (negative, d) = match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => (false, d),
            Err(e) => (true, e.duration()),
        };
        let secs = i64::try_from(d.as_secs()).ok();
        let dt = match (negative, secs) {
            (false, Some(s)) => DateTime::<Utc>::from_timestamp(s, d.subsec_nanos()),
            (true, Some(s)) => {
                // -(s + frac) = -(s + 1) + (1 - frac)
                let (s, n) = match d.subsec_nanos() {
                    0 => (-s, 0),
                    n => (-s - 1, 1_000_000_000 - n),
                };
                DateTime::<Utc>::from_timestamp(s, n)
            }
            _ => None,
        }
        .unwrap_or(if negative {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        });
        dt.into()
    }
}

/// The builders' setters, one line per field, so that a field is added to
/// a builder in one place (the struct keeps the field, the list its setter):
///
/// * `text name: "doc"` sets an `Option<String>` field from `impl Into<String>`;
/// * `timestamp: "doc"` sets `timestamp` from `impl Into<Timestamp>`;
/// * `properties` adds `property` and `properties` (a refused value is kept
///   in `invalid_properties` and reported by the call that takes the builder);
/// * `attachments` adds `attachment` and `attachments`.
macro_rules! setters {
    ($($kind:ident $($name:ident)? $(: $doc:literal)?;)*) => {
        $($crate::model::setters!(@$kind $($name)? $(: $doc)?);)*
    };
    (@text $name:ident: $doc:literal) => {
        #[doc = $doc]
        pub fn $name(mut self, $name: impl Into<String>) -> Self {
            self.$name = Some($name.into());
            self
        }
    };
    (@timestamp: $doc:literal) => {
        #[doc = $doc]
        pub fn timestamp(mut self, timestamp: impl Into<Timestamp>) -> Self {
            self.timestamp = Some(timestamp.into());
            self
        }
    };
    (@properties) => {
        /// Adds one property.
        pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
            self.properties.insert(key.into(), value.into());
            self
        }
        /// Adds every property of `properties` (later keys win): a
        /// `serde_json` map or `json!({..})` object, or any `Serialize`
        /// struct or map. Anything that does not serialize to a JSON object
        /// is reported as [`Error::InvalidField`](crate::Error::InvalidField)
        /// by the call that takes this value.
        pub fn properties(mut self, properties: impl Serialize) -> Self {
            match crate::properties::to_properties(properties) {
                Ok(p) => self.properties.extend(p),
                Err(reason) => self.invalid_properties = Some(reason),
            }
            self
        }
    };
    (@attachments) => {
        /// Adds one attachment.
        pub fn attachment(mut self, attachment: Attachment) -> Self {
            self.attachments.push(attachment);
            self
        }
        /// Adds attachments.
        pub fn attachments(mut self, attachments: impl IntoIterator<Item = Attachment>) -> Self {
            self.attachments.extend(attachments);
            self
        }
    };
}

pub(crate) use setters;

/// An AI event: one question and answer, sent to `events/track`.
///
/// ```
/// use raindrop_core::AiEvent;
/// let e = AiEvent::new("user-1", "chat_message")
///     .input("What is the capital of France?")
///     .output("Paris.")
///     .model("gpt-4o")
///     .property("plan", "pro");
/// # let _ = e;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AiEvent {
    pub(crate) user_id: String,
    pub(crate) event: String,
    pub(crate) event_id: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) input: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) convo_id: Option<String>,
    pub(crate) properties: Properties,
    /// Why a `properties(..)` value was refused, reported by the tracking call.
    pub(crate) invalid_properties: Option<String>,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) attachments: Vec<Attachment>,
}

impl AiEvent {
    /// An AI event for `user_id` named `event` (e.g. `"chat_message"`).
    pub fn new(user_id: impl Into<String>, event: impl Into<String>) -> Self {
        AiEvent {
            user_id: user_id.into(),
            event: event.into(),
            ..Default::default()
        }
    }
    setters! {
        text model: "Sets the model name.";
        text input: "Sets what the user asked.";
        text output: "Sets what the model answered.";
        text convo_id: "Sets the conversation id.";
        text event_id: "Sets the event id (a UUID v4 is generated when unset).";
        properties;
        timestamp: "Sets when the event happened (defaults to now).";
        attachments;
    }
}

/// A plain (non-AI) event, sent to `events/track`.
///
/// ```
/// let e = raindrop_core::Event::new("user-1", "cache_hit").property("region", "eu");
/// # let _ = e;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub(crate) user_id: String,
    pub(crate) event: String,
    pub(crate) event_id: Option<String>,
    pub(crate) properties: Properties,
    /// Why a `properties(..)` value was refused, reported by the tracking call.
    pub(crate) invalid_properties: Option<String>,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) attachments: Vec<Attachment>,
}

impl Event {
    /// A plain event for `user_id` named `event`.
    pub fn new(user_id: impl Into<String>, event: impl Into<String>) -> Self {
        Event {
            user_id: user_id.into(),
            event: event.into(),
            ..Default::default()
        }
    }
    setters! {
        text event_id: "Sets the event id (a UUID v4 is generated when unset).";
        properties;
        timestamp: "Sets when the event happened (defaults to now).";
        attachments;
    }
}

/// The kind of a [`Signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignalType {
    /// A generic signal (thumbs up, copy, regenerate...).
    #[default]
    Default,
    /// Written feedback; needs a comment.
    Feedback,
    /// The user corrected the answer; needs the corrected text (`after`).
    Edit,
}

impl SignalType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalType::Default => "default",
            SignalType::Feedback => "feedback",
            SignalType::Edit => "edit",
        }
    }
}

impl FromStr for SignalType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "default" => Ok(Self::Default),
            "feedback" => Ok(Self::Feedback),
            "edit" => Ok(Self::Edit),
            other => Err(Error::invalid(
                "signal_type",
                format!("`{other}` is not one of default, feedback, edit"),
            )),
        }
    }
}

/// How the user felt about an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sentiment {
    /// Good.
    Positive,
    /// Bad.
    Negative,
}

impl Sentiment {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Positive => "POSITIVE",
            Sentiment::Negative => "NEGATIVE",
        }
    }
}

impl FromStr for Sentiment {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_uppercase().as_str() {
            "POSITIVE" => Ok(Self::Positive),
            "NEGATIVE" => Ok(Self::Negative),
            _ => Err(Error::invalid(
                "sentiment",
                format!("`{s}` is not POSITIVE or NEGATIVE"),
            )),
        }
    }
}

/// A user's reaction to an event (thumbs up, feedback, an edit), sent to `signals/track`.
///
/// ```
/// use raindrop_core::{Sentiment, Signal, SignalType};
/// let s = Signal::new("evt-1", "user_feedback")
///     .signal_type(SignalType::Feedback)
///     .comment("Great answer")
///     .sentiment(Sentiment::Positive);
/// # let _ = s;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signal {
    pub(crate) event_id: String,
    pub(crate) name: String,
    pub(crate) signal_type: SignalType,
    pub(crate) sentiment: Option<Sentiment>,
    pub(crate) comment: Option<String>,
    pub(crate) after: Option<String>,
    pub(crate) properties: Properties,
    /// Why a `properties(..)` value was refused, reported by the tracking call.
    pub(crate) invalid_properties: Option<String>,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) attachment_id: Option<String>,
}

impl Signal {
    /// A signal named `name` about the event `event_id`.
    pub fn new(event_id: impl Into<String>, name: impl Into<String>) -> Self {
        Signal {
            event_id: event_id.into(),
            name: name.into(),
            ..Default::default()
        }
    }
    /// Sets the signal type (default: [`SignalType::Default`]).
    pub fn signal_type(mut self, signal_type: SignalType) -> Self {
        self.signal_type = signal_type;
        self
    }
    /// Sets the sentiment.
    pub fn sentiment(mut self, sentiment: Sentiment) -> Self {
        self.sentiment = Some(sentiment);
        self
    }
    setters! {
        text comment: "The feedback comment (required for [`SignalType::Feedback`]); sent as `properties.comment`.";
        text after: "The corrected text (required for [`SignalType::Edit`]); sent as `properties.after`.";
        properties;
        timestamp: "Sets when the signal happened (defaults to now).";
        text attachment_id: "Points the signal at one attachment of the event.";
    }
}

/// Options for [`Client::begin`](crate::Client::begin): the start of an interaction.
///
/// ```
/// let b = raindrop_core::Begin::new("user-1", "agent_run").input("question?").convo_id("c-1");
/// # let _ = b;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Begin {
    pub(crate) user_id: Option<String>,
    pub(crate) event: String,
    pub(crate) event_id: Option<String>,
    pub(crate) input: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) convo_id: Option<String>,
    pub(crate) properties: Properties,
    /// Why a `properties(..)` value was refused, reported by the tracking call.
    pub(crate) invalid_properties: Option<String>,
    pub(crate) attachments: Vec<Attachment>,
    /// The tools the interaction's model calls are offered (normalised).
    pub(crate) tools: Option<Vec<String>>,
}

impl Begin {
    /// The tools the interaction's model calls are offered: the Python
    /// SDK's `begin(tools=...)`. Each is a JSON tool definition in the
    /// OpenAI (`{"type":"function","function":{..}}` or Responses), Anthropic
    /// (`{"name","description","input_schema"}`) or Raindrop shape; every
    /// LLM span of the interaction carries them as `ai.prompt.tools`. See
    /// [`Interaction::set_tools`](crate::Interaction::set_tools).
    ///
    /// ```
    /// use raindrop_core::Begin;
    /// let b = Begin::new("u", "chat").tools([serde_json::json!({
    ///     "type": "function",
    ///     "function": {"name": "search", "description": "Web search", "parameters": {"type": "object"}}
    /// })]);
    /// # let _ = b;
    /// ```
    pub fn tools(mut self, tools: impl IntoIterator<Item = Value>) -> Self {
        self.tools = Some(crate::tools::catalog(tools));
        self
    }
    /// An interaction named `event` for `user_id`. An empty `user_id` means
    /// "not known yet": set it later with [`Interaction::set_user_id`](crate::Interaction::set_user_id).
    pub fn new(user_id: impl Into<String>, event: impl Into<String>) -> Self {
        let user_id: String = user_id.into();
        Begin {
            user_id: (!user_id.trim().is_empty()).then_some(user_id),
            event: event.into(),
            ..Default::default()
        }
    }
    setters! {
        text event_id: "Sets the event id (a UUID v4 is generated when unset).";
        text input: "Sets what the user asked.";
        text model: "Sets the model name.";
        text convo_id: "Sets the conversation id.";
        properties;
        attachments;
    }
}

/// Options for [`Interaction::finish_with`](crate::Interaction::finish_with): the
/// final update of an interaction, which can set any other top-level field too.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finish {
    pub(crate) output: Option<String>,
    pub(crate) input: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) convo_id: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) properties: Properties,
    /// Why a `properties(..)` value was refused, reported by the tracking call.
    pub(crate) invalid_properties: Option<String>,
    pub(crate) attachments: Vec<Attachment>,
    pub(crate) error: Option<String>,
}

impl Finish {
    /// An empty final update.
    pub fn new() -> Self {
        Self::default()
    }
    setters! {
        text output: "Sets what the model answered.";
        text input: "Replaces the input.";
        text model: "Sets the model name.";
        text convo_id: "Sets the conversation id.";
        text user_id: "Sets the user id.";
        text event: "Renames the event.";
        timestamp: "Sets the event's timestamp.";
        properties;
        attachments;
    }
    /// Marks the interaction as failed; the message is sent as `properties.error`.
    pub fn error(mut self, message: impl fmt::Display) -> Self {
        self.error = Some(message.to_string());
        self
    }
}
