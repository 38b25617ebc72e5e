//! Property conversion: any `Serialize` value into JSON properties, and the
//! nesting limit every property map is held to. Deep JSON is measured and
//! dropped without recursion, so a hostile value cannot overflow the
//! caller's stack (see [`probe`]).

mod probe;

use serde_json::{Map, Value};

use crate::Error;
use probe::{DepthProbe, SAFE_DROP_DEPTH};

/// Arbitrary JSON properties attached to events, signals and interactions.
///
/// Values may nest up to 512 levels of objects and arrays (the map itself is
/// level 1); deeper ones are refused with [`Error::InvalidField`] naming
/// `properties` (or `traits`). JSON has no NaN or infinity: serde_json turns
/// such floats into `null` (`Value::from(f64::NAN)` is `Value::Null`), and
/// that `null` is what is sent.
pub type Properties = Map<String, Value>;

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
