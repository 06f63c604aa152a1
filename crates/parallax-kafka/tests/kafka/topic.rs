//! Topic administration.

use parallax_kafka::{ensure_topic, partition_count, KafkaConfig, TopicError, TopicStatus};

use crate::common::{broker_trouble, error_chain, fresh_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_topic_is_idempotent_and_refuses_another_partition_count() {
    let config = fresh_config("topic", 5);
    let missing =
        partition_count(&config).await.unwrap_or_else(|e| panic!("{}", broker_trouble(&config, &e)));
    assert_eq!(missing, None, "not created yet");
    let first = ensure_topic(&config).await.map_err(|e| error_chain(&e)).expect("created");
    assert_eq!(first, TopicStatus::Created);
    assert_eq!(ensure_topic(&config).await.expect("again"), TopicStatus::Existed);
    assert_eq!(partition_count(&config).await.expect("metadata"), Some(5));

    let other = KafkaConfig { partitions: 6, ..config.clone() };
    match ensure_topic(&other).await {
        Err(TopicError::PartitionMismatch { topic, expected: 6, actual: 5 }) => {
            assert_eq!(topic, config.topic)
        }
        other => panic!("expected a partition mismatch, got {other:?}"),
    }
    let text = ensure_topic(&other).await.expect_err("mismatch").to_string();
    assert!(text.contains("has 5 partitions, but 6 are configured"), "{text}");
    assert_eq!(partition_count(&config).await.expect("metadata"), Some(5), "left as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ensure_topic_calls_agree() {
    let config = fresh_config("race", 3);
    let (a, b) = tokio::join!(ensure_topic(&config), ensure_topic(&config));
    let trouble = |e: TopicError| panic!("{}", broker_trouble(&config, &e));
    let mut statuses = vec![a.unwrap_or_else(trouble), b.unwrap_or_else(trouble)];
    statuses.sort_by_key(|s| *s == TopicStatus::Existed);
    assert_eq!(statuses, vec![TopicStatus::Created, TopicStatus::Existed]);
}
