//! Against a real Kafka broker: `PARALLAX_TEST_KAFKA_BROKERS`, default
//! 127.0.0.1:9092 (`scripts/services/kafka start`). Every test makes its own
//! topics and consumer groups.

mod common;
mod sink;
mod source;
mod topic;
