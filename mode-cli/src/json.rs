//! JSON arguments from the command line: parsed, with the argument named when they are not
//! JSON or not the shape it must have.

use serde_json::{Map, Value};

use crate::error::CliError;

/// Parses `text` as JSON, naming `what` when it is not.
pub fn parse_json(what: &str, text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text).map_err(|e| {
        CliError::usage(format!(
            "{what} is not JSON ({e}): {text:?}; a string needs quotes, e.g. '\"on\"'"
        ))
    })
}

/// Parses an optional JSON object argument (event data, command parameters, bulk payload).
pub fn parse_object(what: &str, text: Option<&str>) -> Result<Map<String, Value>, CliError> {
    match text {
        None => Ok(Map::new()),
        Some(text) => match parse_json(what, text)? {
            Value::Object(map) => Ok(map),
            other => Err(CliError::usage(format!(
                "{what} must be a JSON object, got {other}"
            ))),
        },
    }
}
