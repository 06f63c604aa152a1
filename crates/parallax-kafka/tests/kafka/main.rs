//! Against a real Kafka broker: `PARALLAX_TEST_KAFKA_BROKERS`, default
//! 127.0.0.1:9092 (`scripts/services/kafka start`), and for the replicated
//! topic a cluster of three, `PARALLAX_TEST_KAFKA_CLUSTER_BROKERS`, default
//! 127.0.0.1:9192-9194 (`scripts/services/kafka start --brokers 3`). Every
//! test makes its own topics and consumer groups.

mod common;
mod sink;
mod source;
mod topic;
