//! ③④ An [`EventRecord`] as a Kafka message: CloudEvents 1.0, Kafka protocol
//! binding, binary content mode. The body is the event's JSON payload; every
//! other field is a `ce_` header (see the crate docs for the table).

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use parallax_core::{EventRecord, Metadata, Position, Tenant, TraceParent};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use uuid::Uuid;

/// CloudEvents `specversion` header.
pub const SPECVERSION: &str = "ce_specversion";
/// CloudEvents `id` header: the event id.
pub const ID: &str = "ce_id";
/// CloudEvents `source` header.
pub const SOURCE: &str = "ce_source";
/// CloudEvents `type` header: the event type.
pub const TYPE: &str = "ce_type";
/// CloudEvents `time` header: when the event was recorded.
pub const TIME: &str = "ce_time";
/// CloudEvents `subject` header: the stream id.
pub const SUBJECT: &str = "ce_subject";
/// The body's media type (the binding's `datacontenttype`).
pub const CONTENT_TYPE: &str = "content-type";
/// Extension: the global position.
pub const POSITION: &str = "ce_position";
/// Extension: the position of the previous event of the same partition
/// (0: none before it), where the relay knew it. A consumer whose checkpoint
/// in the partition is below it has missed events (retention deleted them).
pub const PREVIOUS_POSITION: &str = "ce_previousposition";
/// Extension: the stream version.
pub const STREAM_VERSION: &str = "ce_streamversion";
/// Extension: the payload's schema version.
pub const SCHEMA_VERSION: &str = "ce_schemaversion";
/// Extension: the correlation id.
pub const CORRELATION_ID: &str = "ce_correlationid";
/// Extension: the causation id.
pub const CAUSATION_ID: &str = "ce_causationid";
/// Extension: the command id.
pub const COMMAND_ID: &str = "ce_commandid";
/// Extension: who asked (only when known).
pub const ACTOR: &str = "ce_actor";
/// Extension: the tenant whose event it is (only for a named tenant; the
/// subject, the stream id, starts with it too).
pub const TENANT: &str = "ce_tenant";
/// The W3C trace context of the operation that produced the event (only
/// when known). Written under the plain W3C name, not as `ce_traceparent`:
/// it is the name the CloudEvents distributed-tracing extension and W3C
/// Trace Context give it, and the header OpenTelemetry's Kafka
/// instrumentations read and write.
pub const TRACEPARENT: &str = TraceParent::HEADER;

/// The CloudEvents version written and accepted.
pub const SPEC_VERSION: &str = "1.0";
/// The body's media type.
pub const JSON: &str = "application/json";

/// The headers of `event`'s message, linked to the `previous` event of its
/// partition where known.
pub(crate) fn encode(event: &EventRecord, previous: Option<Position>, source: &str) -> OwnedHeaders {
    let position = event.position.to_string();
    let previous = previous.map(|previous| previous.to_string());
    let stream_version = event.stream_version.to_string();
    let schema_version = event.schema_version.to_string();
    let id = event.event_id.to_string();
    let time = event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let correlation = event.metadata.correlation_id.to_string();
    let causation = event.metadata.causation_id.to_string();
    let command = event.metadata.command_id.to_string();
    let traceparent = event.metadata.traceparent.map(|trace| trace.to_string());
    let tenant = event.tenant();
    let mut fields: Vec<(&str, &str)> = vec![
        (SPECVERSION, SPEC_VERSION),
        (ID, &id),
        (SOURCE, source),
        (TYPE, &event.event_type),
        (TIME, &time),
        (SUBJECT, &event.stream_id),
        (CONTENT_TYPE, JSON),
        (POSITION, &position),
        (STREAM_VERSION, &stream_version),
        (SCHEMA_VERSION, &schema_version),
        (CORRELATION_ID, &correlation),
        (CAUSATION_ID, &causation),
        (COMMAND_ID, &command),
    ];
    if let Some(previous) = &previous {
        fields.push((PREVIOUS_POSITION, previous));
    }
    if let Some(actor) = &event.metadata.actor {
        fields.push((ACTOR, actor));
    }
    if let Some(traceparent) = &traceparent {
        fields.push((TRACEPARENT, traceparent));
    }
    if let Some(tenant) = tenant.name() {
        fields.push((TENANT, tenant));
    }
    fields.into_iter().fold(OwnedHeaders::new_with_capacity(16), |headers, (key, value)| {
        headers.insert(Header { key, value: Some(value) })
    })
}

/// Why a message is not a Parallax event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A required header is absent (or has no value).
    Missing(&'static str),
    /// A header's value is unusable.
    Invalid { header: &'static str, value: String, expected: &'static str },
    /// The body is absent or not UTF-8.
    Body(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(header) => write!(f, "header {header} is missing"),
            Self::Invalid { header, value, expected } => {
                write!(f, "header {header} is {value:?}, expected {expected}")
            }
            Self::Body(problem) => write!(f, "body {problem}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The event a message carries, from its headers and body, and the position
/// of the previous event of its partition where the message says.
pub(crate) fn decode<H: Headers>(
    headers: Option<&H>,
    body: Option<&[u8]>,
) -> Result<(EventRecord, Option<Position>), DecodeError> {
    let fields = Fields::read(headers)?;
    let event = fields.event(body)?;
    let previous =
        fields.optional(PREVIOUS_POSITION)?.map(|_| fields.number(PREVIOUS_POSITION)).transpose()?;
    Ok((event, previous))
}

impl Fields<'_> {
    /// The event of a message whose body is `body`.
    fn event(&self, body: Option<&[u8]>) -> Result<EventRecord, DecodeError> {
        let fields = self;
        let spec = fields.required(SPECVERSION)?;
        if spec != SPEC_VERSION {
            return Err(invalid(SPECVERSION, spec, "\"1.0\""));
        }
        let payload = match body {
            None => return Err(DecodeError::Body("is empty (a null message value)")),
            Some(bytes) => std::str::from_utf8(bytes).map_err(|_| DecodeError::Body("is not UTF-8"))?,
        };
        let time = fields.required(TIME)?;
        let recorded_at = DateTime::parse_from_rfc3339(time)
            .map_err(|_| invalid(TIME, time, "an RFC 3339 timestamp"))?
            .with_timezone(&Utc);
        let subject = fields.required(SUBJECT)?;
        let tenant = fields.optional(TENANT)?;
        if tenant != Tenant::split(subject).0.name() {
            let value = tenant.unwrap_or("(absent)");
            return Err(invalid(TENANT, value, "the tenant the subject (the stream id) starts with"));
        }
        Ok(EventRecord {
            position: fields.number(POSITION)?,
            stream_id: subject.to_owned(),
            stream_version: fields.number(STREAM_VERSION)?,
            event_id: fields.uuid(ID)?,
            event_type: fields.required(TYPE)?.to_owned(),
            schema_version: fields.number(SCHEMA_VERSION)?,
            payload: payload.to_owned(),
            metadata: Metadata {
                correlation_id: fields.uuid(CORRELATION_ID)?,
                causation_id: fields.uuid(CAUSATION_ID)?,
                command_id: fields.uuid(COMMAND_ID)?,
                actor: fields.optional(ACTOR)?.map(str::to_owned),
                // Tracing is best effort: a malformed header loses the trace, not the event.
                traceparent: fields.optional(TRACEPARENT).ok().flatten().and_then(|value| value.parse().ok()),
                tenant: tenant.map(str::to_owned),
            },
            recorded_at,
        })
    }
}

fn invalid(header: &'static str, value: &str, expected: &'static str) -> DecodeError {
    DecodeError::Invalid { header, value: value.to_owned(), expected }
}

/// The `ce_` headers (and `content-type`) of one message, as text; the last
/// occurrence of a repeated header wins, as in Kafka's Java client.
struct Fields<'a>(Vec<(&'a str, &'a [u8])>);

impl<'a> Fields<'a> {
    fn read<H: Headers>(headers: Option<&'a H>) -> Result<Self, DecodeError> {
        let Some(headers) = headers else { return Err(DecodeError::Missing(SPECVERSION)) };
        Ok(Self(headers.iter().filter_map(|header| Some((header.key, header.value?))).collect()))
    }

    fn optional(&self, header: &'static str) -> Result<Option<&'a str>, DecodeError> {
        match self.0.iter().rev().find(|(key, _)| *key == header) {
            None => Ok(None),
            Some((_, value)) => std::str::from_utf8(value)
                .map(Some)
                .map_err(|_| invalid(header, &String::from_utf8_lossy(value), "UTF-8 text")),
        }
    }

    fn required(&self, header: &'static str) -> Result<&'a str, DecodeError> {
        self.optional(header)?.ok_or(DecodeError::Missing(header))
    }

    fn number<N: std::str::FromStr>(&self, header: &'static str) -> Result<N, DecodeError> {
        let value = self.required(header)?;
        value.parse().map_err(|_| invalid(header, value, "a non-negative decimal integer"))
    }

    fn uuid(&self, header: &'static str) -> Result<Uuid, DecodeError> {
        let value = self.required(header)?;
        Uuid::parse_str(value).map_err(|_| invalid(header, value, "a UUID"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn record(actor: Option<&str>) -> EventRecord {
        EventRecord {
            position: 42,
            stream_id: "cart-7".into(),
            stream_version: 3,
            event_id: Uuid::now_v7(),
            event_type: "cart.item_added".into(),
            schema_version: 2,
            payload: r#"{"sku":"A-1","quantity":2}"#.into(),
            metadata: Metadata {
                correlation_id: Uuid::new_v4(),
                causation_id: Uuid::new_v4(),
                command_id: Uuid::new_v4(),
                actor: actor.map(str::to_owned),
                traceparent: actor.map(|_| TRACE.parse().expect("a valid traceparent")),
                tenant: None,
            },
            recorded_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 5).unwrap()
                + chrono::Duration::microseconds(123_456),
        }
    }

    fn value<'a>(headers: &'a OwnedHeaders, key: &str) -> Option<&'a str> {
        headers.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn headers_follow_the_binary_mode_binding() {
        let event = record(Some("alice"));
        let headers = encode(&event, Some(17), "/shop");
        assert_eq!(value(&headers, "ce_specversion"), Some("1.0"));
        assert_eq!(value(&headers, "ce_id"), Some(event.event_id.to_string().as_str()));
        assert_eq!(value(&headers, "ce_source"), Some("/shop"));
        assert_eq!(value(&headers, "ce_type"), Some("cart.item_added"));
        assert_eq!(value(&headers, "ce_time"), Some("2026-03-01T12:30:05.123456Z"));
        assert_eq!(value(&headers, "ce_subject"), Some("cart-7"));
        assert_eq!(value(&headers, "content-type"), Some("application/json"));
        assert_eq!(value(&headers, "ce_position"), Some("42"));
        assert_eq!(value(&headers, "ce_streamversion"), Some("3"));
        assert_eq!(value(&headers, "ce_schemaversion"), Some("2"));
        assert_eq!(value(&headers, "ce_actor"), Some("alice"));
        assert_eq!(value(&headers, "traceparent"), Some(TRACE));
        assert_eq!(value(&headers, "ce_previousposition"), Some("17"));
        let bare = encode(&record(None), None, "/shop");
        assert!(bare.iter().all(|h| !["ce_actor", "traceparent", "ce_previousposition"].contains(&h.key)));
    }

    #[test]
    fn an_event_survives_the_round_trip() {
        for (actor, previous) in [(Some("alice"), Some(0)), (None, None), (None, Some(41))] {
            let event = record(actor);
            let headers = encode(&event, previous, "/shop");
            let decoded = decode(Some(&headers), Some(event.payload.as_bytes())).expect("decodes");
            assert_eq!(decoded, (event, previous));
        }
    }

    #[test]
    fn a_tenant_rides_as_an_extension_that_must_agree_with_the_subject() {
        let mut event = record(Some("alice"));
        event.stream_id = "acme/cart-7".into();
        event.metadata.tenant = Some("acme".into());
        let headers = encode(&event, None, "/shop");
        assert_eq!(value(&headers, "ce_tenant"), Some("acme"));
        let decoded = decode(Some(&headers), Some(event.payload.as_bytes())).expect("decodes");
        assert_eq!(decoded, (event.clone(), None));
        assert!(encode(&record(None), None, "/shop").iter().all(|h| h.key != "ce_tenant"));

        let other = encode(&event, None, "/shop").insert(Header { key: TENANT, value: Some("other") });
        let error = decode(Some(&other), Some(event.payload.as_bytes())).unwrap_err().to_string();
        assert_eq!(
            error,
            r#"header ce_tenant is "other", expected the tenant the subject (the stream id) starts with"#
        );
        event.stream_id = "cart-7".into();
        let claimed = encode(&event, None, "/shop").insert(Header { key: TENANT, value: Some("acme") });
        assert!(
            decode(Some(&claimed), Some(event.payload.as_bytes())).is_err(),
            "a tenant the subject lacks"
        );
    }

    #[test]
    fn foreign_messages_are_refused_precisely() {
        let event = record(None);
        let body = Some(event.payload.as_bytes());
        assert_eq!(decode::<OwnedHeaders>(None, body), Err(DecodeError::Missing(SPECVERSION)));

        let wrong_spec = OwnedHeaders::new().insert(Header { key: SPECVERSION, value: Some("0.3") });
        let error = decode(Some(&wrong_spec), body).unwrap_err().to_string();
        assert_eq!(error, r#"header ce_specversion is "0.3", expected "1.0""#);

        let bad_position = encode(&event, None, "/shop").insert(Header { key: POSITION, value: Some("-1") });
        let error = decode(Some(&bad_position), body).unwrap_err().to_string();
        assert_eq!(error, r#"header ce_position is "-1", expected a non-negative decimal integer"#);

        let bad_trace =
            encode(&event, None, "/shop").insert(Header { key: TRACEPARENT, value: Some("00-zz") });
        let (decoded, _) = decode(Some(&bad_trace), body).expect("a bad traceparent loses the trace only");
        assert_eq!(decoded.metadata.traceparent, None);

        let bad_previous =
            encode(&event, Some(3), "/shop").insert(Header { key: PREVIOUS_POSITION, value: Some("x") });
        let error = decode(Some(&bad_previous), body).unwrap_err().to_string();
        assert_eq!(error, r#"header ce_previousposition is "x", expected a non-negative decimal integer"#);

        let headers = encode(&event, None, "/shop");
        assert_eq!(decode(Some(&headers), None), Err(DecodeError::Body("is empty (a null message value)")));
        assert_eq!(decode(Some(&headers), Some(&[0xff, 0xfe][..])), Err(DecodeError::Body("is not UTF-8")));
    }
}
