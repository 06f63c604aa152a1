//! Messages read from a Kafka topic, checked against the AsyncAPI document of
//! the topic (`parallax_kafka::asyncapi`): a service's tests read the topic
//! as an outside consumer does and hand each message to a
//! [`MessageValidator`], which finds the document's message whose headers
//! schema the message's headers meet (for Parallax's documents: its
//! `ce_type` and `ce_schemaversion`) and validates the key and the payload
//! against that message's schemas, with a JSON Schema validator
//! (`jsonschema`, draft-07: AsyncAPI's schema format).
//!
//! Behind the `contract` feature, for tests only.

use jsonschema::Validator;
use serde_json::{Map, Value};

/// A message as a consumer reads it: header values as text.
#[derive(Debug, Clone, Copy)]
pub struct KafkaMessage<'a> {
    /// Where it was read, for the reports (`partition@offset`, say).
    pub place: &'a str,
    /// The key, if any.
    pub key: Option<&'a str>,
    /// Headers in their order; the last of a repeated name counts, as in
    /// Parallax's decoder.
    pub headers: &'a [(String, String)],
    /// The body, if any.
    pub payload: Option<&'a str>,
}

/// One message of the document, its schemas compiled.
struct Described {
    id: String,
    headers: Validator,
    key: Option<Validator>,
    payload: Validator,
}

/// The messages of every channel of an AsyncAPI 3.0 document.
pub struct MessageValidator {
    messages: Vec<Described>,
}

impl MessageValidator {
    /// Compiles the schemas of every message of every channel of `document`
    /// (messages given as local `$ref`s are followed).
    ///
    /// # Errors
    /// A message without headers or payload schema, a `$ref` that points
    /// nowhere, or a schema the validator refuses.
    pub fn new(document: &Value) -> Result<Self, String> {
        let mut messages = Vec::new();
        let channels = document["channels"].as_object().ok_or("the document has no channels")?;
        for (channel, item) in channels {
            let listed =
                item["messages"].as_object().ok_or_else(|| format!("channel {channel} has no messages"))?;
            for (id, message) in listed {
                let message = resolve(document, message)?;
                let schema = |field: &str| -> Result<Validator, String> {
                    let schema = resolve(document, &message[field])?;
                    compile(schema).map_err(|e| format!("message {id}'s {field}: {e}"))
                };
                let key = match message.pointer("/bindings/kafka/key") {
                    Some(key) => Some(
                        compile(resolve(document, key)?).map_err(|e| format!("message {id}'s key: {e}"))?,
                    ),
                    None => None,
                };
                messages.push(Described {
                    id: id.clone(),
                    headers: schema("headers")?,
                    key,
                    payload: schema("payload")?,
                });
            }
        }
        if messages.is_empty() {
            return Err("the document describes no message".to_owned());
        }
        Ok(Self { messages })
    }

    /// The id of the document's message that `message` is, or every way it
    /// misses: no message whose headers it meets (the errors against the
    /// nearest ones), or that message's key or payload schema.
    ///
    /// # Errors
    /// One line per finding, each naming `message.place`.
    pub fn validate(&self, message: &KafkaMessage<'_>) -> Result<&str, Vec<String>> {
        let at = message.place;
        let headers: Map<String, Value> = message
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect();
        let headers = Value::Object(headers);
        let checked: Vec<(&Described, Vec<String>)> = self
            .messages
            .iter()
            .map(|described| {
                (described, described.headers.iter_errors(&headers).map(|e| describe(&e)).collect())
            })
            .collect();
        let fitting: Vec<&Described> =
            checked.iter().filter(|(_, errors)| errors.is_empty()).map(|(described, _)| *described).collect();
        let described = match fitting.as_slice() {
            [] => {
                let mut findings =
                    vec![format!("{at}: no message of the document has headers like {headers}")];
                if let Some((nearest, errors)) = checked.iter().min_by_key(|(_, errors)| errors.len()) {
                    let id = &nearest.id;
                    findings.extend(
                        errors.iter().map(|error| format!("{at}: headers, as message {id}: {error}")),
                    );
                }
                return Err(findings);
            }
            [one] => *one,
            [one, another, ..] => {
                return Err(vec![format!(
                    "{at}: its headers fit messages {} and {} alike",
                    one.id, another.id
                )])
            }
        };
        let mut findings = Vec::new();
        match (&described.key, message.key) {
            (Some(key), Some(value)) => {
                let value = Value::String(value.to_owned());
                findings.extend(key.iter_errors(&value).map(|e| format!("{at}: key: {}", describe(&e))));
            }
            (Some(_), None) => findings.push(format!("{at}: no key")),
            (None, _) => {}
        }
        match message.payload.map(serde_json::from_str::<Value>) {
            None => findings.push(format!("{at}: no payload")),
            Some(Err(error)) => findings.push(format!("{at}: the payload is not JSON: {error}")),
            Some(Ok(payload)) => {
                let id = &described.id;
                let errors = described.payload.iter_errors(&payload).map(|e| describe(&e));
                findings.extend(errors.map(|error| format!("{at}: payload, as message {id}: {error}")));
            }
        }
        if findings.is_empty() {
            Ok(&described.id)
        } else {
            Err(findings)
        }
    }
}

/// A schema as draft-07 (AsyncAPI's schema format builds on it).
fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::draft7::new(schema).map_err(|error| error.to_string())
}

/// `value`, or what its local `$ref` (`#/…`) points at.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> Result<&'a Value, String> {
    match value.get("$ref").and_then(Value::as_str) {
        None if value.is_null() => Err("a schema or message is missing".to_owned()),
        None => Ok(value),
        Some(reference) => {
            let pointer =
                reference.strip_prefix('#').ok_or_else(|| format!("{reference} is not a local $ref"))?;
            document.pointer(pointer).ok_or_else(|| format!("{reference} points nowhere"))
        }
    }
}

fn describe(error: &jsonschema::ValidationError<'_>) -> String {
    let path = error.instance_path().to_string();
    if path.is_empty() {
        error.to_string()
    } else {
        format!("at {path}: {error}")
    }
}
