//! The topic as an AsyncAPI 3.0 document: what a [`KafkaSink`](crate::KafkaSink)
//! publishes, message by message, for consumers outside the system.
//!
//! [`document`] describes one channel (the topic of a [`KafkaConfig`]) and
//! one `send` operation (the relay's), with one message per event type and
//! schema version of the service's contract ([`EventSchema`]s). Each
//! message says what the sink writes (the crate docs' table, from the
//! constants of [`cloudevents`](crate::cloudevents)): the key (the stream
//! id), the CloudEvents headers, with `ce_type` and `ce_schemaversion`
//! pinned to the message's, and the payload's JSON Schema as the body. The
//! body is the payload as the event store hands it to the relay, not
//! encoded again; [`Contract::payload_text`] says in what form.
//!
//! Pure: it builds JSON and talks to no broker.

use parallax_core::EventSchema;
use serde_json::{json, Map, Value};

use crate::cloudevents::{
    ACTOR, CAUSATION_ID, COMMAND_ID, CONTENT_TYPE, CORRELATION_ID, ID, JSON, POSITION, PREVIOUS_POSITION,
    SCHEMA_VERSION, SOURCE, SPECVERSION, SPEC_VERSION, STREAM_VERSION, SUBJECT, TENANT, TIME, TRACEPARENT,
    TYPE,
};
use crate::KafkaConfig;

/// The AsyncAPI version of the documents.
pub const ASYNCAPI_VERSION: &str = "3.0.0";
/// The version of the Kafka bindings used.
pub const KAFKA_BINDING_VERSION: &str = "0.5.0";
/// The id of the one channel (the topic) in the documents.
pub const CHANNEL: &str = "events";
/// The id of the relay's operation.
pub const OPERATION: &str = "publishEvents";

/// A UUID as Rust's `uuid` prints it: lowercase, hyphenated.
const UUID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
/// A non-negative decimal integer, without leading zeros.
const DECIMAL_PATTERN: &str = "^(0|[1-9][0-9]*)$";
/// RFC 3339, UTC, to the microsecond, as the sink writes `ce_time`.
const TIME_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$";
/// W3C Trace Context, version 00.
const TRACEPARENT_PATTERN: &str = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$";
/// A tenant's name (see `parallax_core::Tenant::parse`).
const TENANT_PATTERN: &str = "^[a-z0-9][a-z0-9_]{0,39}$";

/// What a document says besides the topic and the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract<'a> {
    /// The document's title, e.g. "Parallax shop events".
    pub title: &'a str,
    /// The contract's version (the event contract crate's, say).
    pub version: &'a str,
    /// What the topic is, for the document's description.
    pub description: &'a str,
    /// In what form the event store hands payloads to the relay, which the
    /// sink writes unchanged: the exact text of a message's body (its key
    /// order and spacing), for the messages' descriptions.
    pub payload_text: &'a str,
}

/// The AsyncAPI 3.0 document of the topic of `config` carrying `events`.
///
/// Message ids are `<event type>.v<schema version>`; each message's
/// `headers` schema requires the headers the sink always writes and
/// describes those it writes when known (`ce_previousposition`, `ce_actor`,
/// `traceparent`, `ce_tenant`).
pub fn document(contract: &Contract<'_>, config: &KafkaConfig, events: &[EventSchema]) -> Value {
    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operation_messages = Vec::new();
    for event in events {
        let id = message_id(event);
        channel_messages.insert(id.clone(), json!({ "$ref": format!("#/components/messages/{id}") }));
        operation_messages.push(json!({ "$ref": format!("#/channels/{CHANNEL}/messages/{id}") }));
        messages.insert(id, message(contract, config, event));
    }
    json!({
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": contract.title,
            "version": contract.version,
            "description": contract.description,
        },
        "defaultContentType": JSON,
        "channels": { CHANNEL: channel(config, channel_messages) },
        "operations": {
            OPERATION: {
                "action": "send",
                "channel": { "$ref": format!("#/channels/{CHANNEL}") },
                "title": "Publish the event store",
                "summary": "The relay publishes every committed event, in position order, once acknowledged by every in-sync replica.",
                "description": "At least once: after a crash or a failed publish the relay publishes again from its checkpoint, so a partition may carry an event twice (same `ce_id` and `ce_position`), always at or below a position it already carried. Consumers skip by `ce_position` per partition. A `ce_previousposition` above a consumer's checkpoint in the partition means events were lost to retention.",
                "messages": operation_messages,
            },
        },
        "components": {
            "messages": messages,
            "correlationIds": {
                "correlation": {
                    "description": "The id shared by every event one client request caused, across streams and processes (a checkout's order and stock events carry its cart's).",
                    "location": format!("$message.header#/{CORRELATION_ID}"),
                },
            },
        },
    })
}

/// `<event type>.v<schema version>`.
pub fn message_id(event: &EventSchema) -> String {
    format!("{}.v{}", event.event_type, event.schema_version)
}

fn channel(config: &KafkaConfig, messages: Map<String, Value>) -> Value {
    let mut topic_configuration = Map::new();
    topic_configuration.insert("retention.ms".into(), config.retention_ms.unwrap_or(-1).into());
    let mut kafka = Map::new();
    kafka.insert("topic".into(), config.topic.clone().into());
    kafka.insert("partitions".into(), config.partitions.into());
    if let Some(replicas) = config.replication {
        kafka.insert("replicas".into(), replicas.into());
    }
    kafka.insert("topicConfiguration".into(), topic_configuration.into());
    kafka.insert("bindingVersion".into(), KAFKA_BINDING_VERSION.into());
    json!({
        "address": config.topic,
        "title": "The event log",
        "description": format!(
            "Every event of the event store, one message each, in CloudEvents 1.0 binary content mode (the Kafka protocol binding). All events of a stream go to one partition: murmur2 of the key (the stream id) modulo {} partitions, as Kafka's default partitioner places it, set explicitly by the relay; within a partition events are in position order, so a stream's events are in version order.",
            config.partitions
        ),
        "messages": messages,
        "bindings": { "kafka": kafka },
    })
}

fn message(contract: &Contract<'_>, config: &KafkaConfig, event: &EventSchema) -> Value {
    let EventSchema { event_type, schema_version, summary, schema } = event;
    json!({
        "name": event_type,
        "title": format!("{event_type} v{schema_version}"),
        "summary": summary,
        "description": format!(
            "An event of type `{event_type}` stored at schema version {schema_version} (`{TYPE}` and `{SCHEMA_VERSION}` say so). The relay publishes an event at the version it was stored at, never upcast: a consumer that reads a later version upcasts older ones. The body is the payload as the event store hands it to the relay, unchanged: {}",
            contract.payload_text
        ),
        "contentType": JSON,
        "correlationId": { "$ref": "#/components/correlationIds/correlation" },
        "headers": headers(&config.source, event_type, *schema_version),
        "payload": schema,
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": format!("The stream id, as `{SUBJECT}`."),
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            },
        },
    })
}

/// The headers' schema: values are UTF-8 text.
fn headers(source: &str, event_type: &str, schema_version: u32) -> Value {
    let text = |description: &str| json!({ "type": "string", "description": description });
    let pattern = |pattern: &str, description: &str| json!({ "type": "string", "pattern": pattern, "description": description });
    let constant = |value: &str, description: &str| json!({ "type": "string", "const": value, "description": description });
    let uuid = |description: &str| pattern(UUID_PATTERN, description);
    let decimal = |description: &str| pattern(DECIMAL_PATTERN, description);
    let mut properties = Map::new();
    let mut put = |name: &str, schema: Value| properties.insert(name.to_owned(), schema);
    put(SPECVERSION, constant(SPEC_VERSION, "CloudEvents version."));
    put(ID, uuid("The event id; a republished event keeps it."));
    put(SOURCE, constant(source, "CloudEvents source: the system that recorded the event."));
    put(TYPE, constant(event_type, "The event type."));
    put(
        TIME,
        json!({
            "type": "string",
            "format": "date-time",
            "pattern": TIME_PATTERN,
            "description": "When the event store recorded the event: RFC 3339, UTC, to the microsecond. The Kafka message timestamp is the producer's clock instead.",
        }),
    );
    put(SUBJECT, text("The stream id, also the message key."));
    put(CONTENT_TYPE, constant(JSON, "The body's media type (CloudEvents datacontenttype)."));
    put(POSITION, decimal("The event's global position in the event store: per partition, increasing."));
    put(
        PREVIOUS_POSITION,
        decimal("The position of the previous event of the same partition (0: none), when the relay knew it. A consumer whose checkpoint in the partition is below it has missed events."),
    );
    put(STREAM_VERSION, decimal("The event's version in its stream: 1, 2, … without gaps."));
    put(SCHEMA_VERSION, constant(&schema_version.to_string(), "The payload's schema version."));
    put(CORRELATION_ID, uuid("Shared by every event one client request caused."));
    put(CAUSATION_ID, uuid("The command or event that caused this event."));
    put(COMMAND_ID, uuid("The command that appended the event."));
    put(ACTOR, text("Who asked, when known."));
    put(
        TENANT,
        pattern(
            TENANT_PATTERN,
            "The tenant whose event it is, for a named tenant only (the subject, the stream id, then starts with `{tenant}/`).",
        ),
    );
    put(
        TRACEPARENT,
        pattern(
            TRACEPARENT_PATTERN,
            "W3C Trace Context of the operation that produced the event, when known.",
        ),
    );
    let required = [
        SPECVERSION,
        ID,
        SOURCE,
        TYPE,
        TIME,
        SUBJECT,
        CONTENT_TYPE,
        POSITION,
        STREAM_VERSION,
        SCHEMA_VERSION,
        CORRELATION_ID,
        CAUSATION_ID,
        COMMAND_ID,
    ];
    json!({ "type": "object", "required": required, "properties": properties })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn schema(event_type: &str, schema_version: u32) -> EventSchema {
        EventSchema {
            event_type: event_type.into(),
            schema_version,
            summary: "Something happened.".into(),
            schema: json!({ "type": "object", "required": ["n"], "properties": { "n": { "type": "integer" } } }),
        }
    }

    const CONTRACT: Contract<'static> = Contract {
        title: "Test events",
        version: "1.2.3",
        description: "A test topic.",
        payload_text: "compact JSON.",
    };

    #[test]
    fn one_message_per_type_and_version_on_the_topic() {
        let config = KafkaConfig::new("127.0.0.1:9092", "test.events", 4, "/test").with_replication(3);
        let doc =
            document(&CONTRACT, &config, &[schema("a.made", 1), schema("a.made", 2), schema("a.gone", 1)]);
        assert_eq!(doc["asyncapi"], "3.0.0");
        let channel = &doc["channels"][CHANNEL];
        assert_eq!(channel["address"], "test.events");
        assert_eq!(channel["bindings"]["kafka"]["partitions"], 4);
        assert_eq!(channel["bindings"]["kafka"]["replicas"], 3);
        assert_eq!(channel["bindings"]["kafka"]["topicConfiguration"]["retention.ms"], -1);
        let ids: Vec<&String> = channel["messages"].as_object().expect("messages").keys().collect();
        assert_eq!(ids, ["a.gone.v1", "a.made.v1", "a.made.v2"]);
        assert_eq!(doc["operations"][OPERATION]["action"], "send");
        assert_eq!(doc["operations"][OPERATION]["messages"].as_array().map(Vec::len), Some(3));

        let v2 = &doc["components"]["messages"]["a.made.v2"];
        assert_eq!(v2["payload"]["properties"]["n"]["type"], "integer");
        let headers = &v2["headers"]["properties"];
        assert_eq!(headers[TYPE]["const"], "a.made");
        assert_eq!(headers[SCHEMA_VERSION]["const"], "2");
        assert_eq!(headers[SOURCE]["const"], "/test");
        assert_eq!(headers[SPECVERSION]["const"], "1.0");
        assert_eq!(v2["bindings"]["kafka"]["key"]["type"], "string");
        assert_eq!(v2["correlationId"]["$ref"], "#/components/correlationIds/correlation");
        assert!(v2["description"].as_str().is_some_and(|d| d.ends_with("compact JSON.")), "{v2}");
    }

    /// The names of the headers the sink writes for `event`.
    fn written(event: &parallax_core::EventRecord, previous: Option<u64>) -> BTreeSet<String> {
        use rdkafka::message::Headers as _;
        let headers = crate::cloudevents::encode(event, previous, "/test");
        headers.iter().map(|header| header.key.to_owned()).collect()
    }

    fn names(values: &Value) -> BTreeSet<String> {
        match values {
            Value::Object(object) => object.keys().cloned().collect(),
            Value::Array(array) => array.iter().filter_map(|name| name.as_str().map(str::to_owned)).collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Every header the sink writes is described, and exactly the ones it
    /// always writes are required.
    #[test]
    fn the_headers_are_the_sinks() {
        let bare = parallax_core::EventRecord {
            position: 1,
            stream_id: "a-1".into(),
            stream_version: 1,
            event_id: uuid::Uuid::now_v7(),
            event_type: "a.made".into(),
            schema_version: 1,
            payload: "{}".into(),
            metadata: parallax_core::Metadata::default(),
            recorded_at: chrono::Utc::now(),
        };
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().expect("valid");
        let full = parallax_core::EventRecord {
            stream_id: "acme/a-1".into(),
            metadata: parallax_core::Metadata {
                actor: Some("alice".into()),
                traceparent: Some(traceparent),
                tenant: Some("acme".into()),
                ..Default::default()
            },
            ..bare.clone()
        };
        let schema = headers("/test", "a.made", 1);
        assert_eq!(
            names(&schema["properties"]),
            written(&full, Some(0)),
            "every header written is described"
        );
        assert_eq!(names(&schema["required"]), written(&bare, None), "required: what every message carries");
    }
}
