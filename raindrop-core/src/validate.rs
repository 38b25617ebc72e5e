//! Validation of what tracking calls are given: each check names the field
//! it refuses, and a call either builds the record that is queued or returns
//! [`Error::InvalidField`]. Nothing here does I/O or touches the queue.

use serde_json::Value;

use crate::item::{AiData, EventRecord, SignalRecord};
use crate::model::{AiEvent, Attachment, Begin, Event, Signal, SignalType, Timestamp};
use crate::properties::{properties_of, within_depth, Properties};
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

pub(crate) fn require(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        Err(Error::invalid(field, "must not be empty"))
    } else {
        Ok(())
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
