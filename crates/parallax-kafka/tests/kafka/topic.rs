//! Topic administration.

use std::sync::{Arc, Mutex};

use parallax_kafka::{
    delete_topic, ensure_topic, partition_count, topic_differences, KafkaConfig, TopicError, TopicStatus,
};

use crate::common::{broker_trouble, cluster_brokers, cluster_trouble, error_chain, fresh_config};

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

/// Reads the settings a topic was created with, as differences from a
/// configuration that asks for none of them.
async fn settings_of(config: &KafkaConfig) -> Vec<(String, String)> {
    let impossible = KafkaConfig {
        replication: Some(9),
        min_insync_replicas: Some(9),
        retention_ms: Some(9),
        ..config.clone()
    };
    let mut found: Vec<(String, String)> = topic_differences(&impossible)
        .await
        .unwrap_or_else(|e| panic!("{}", broker_trouble(config, &e)))
        .into_iter()
        .map(|difference| (difference.setting.to_owned(), difference.topic_has))
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_on_one_broker_has_one_replica_and_keeps_every_message() {
    let config = fresh_config("settings", 2);
    ensure_topic(&config).await.unwrap_or_else(|e| panic!("{}", broker_trouble(&config, &e)));
    let had = settings_of(&config).await;
    assert_eq!(
        had,
        [("min.insync.replicas", "1"), ("replication", "1"), ("retention.ms", "-1")]
            .map(|(setting, value)| (setting.to_owned(), value.to_owned())),
        "the defaults on a single broker"
    );
    assert_eq!(topic_differences(&config).await.expect("describe"), [], "as configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_topic_with_other_settings_is_named_setting_by_setting() {
    let created = fresh_config("differs", 2).with_retention_ms(3_600_000);
    ensure_topic(&created).await.unwrap_or_else(|e| panic!("{}", broker_trouble(&created, &e)));
    let wanted = KafkaConfig { retention_ms: None, ..created.clone() }.with_replication(3);
    let differences = topic_differences(&wanted).await.expect("describe");
    let named: Vec<String> = differences.iter().map(ToString::to_string).collect();
    assert_eq!(
        named,
        [
            "replication is 1 on the topic, 3 configured",
            "min.insync.replicas is 1 on the topic, 2 configured",
            "retention.ms is 3600000 on the topic, -1 configured",
        ],
    );
    // The topic is left as it is: ensure_topic only warns.
    assert_eq!(ensure_topic(&wanted).await.expect("exists"), TopicStatus::Existed);
    assert_eq!(topic_differences(&wanted).await.expect("describe").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_on_a_cluster_of_three_is_replicated_three_times_with_two_in_sync() {
    let config = KafkaConfig { brokers: cluster_brokers(), ..fresh_config("cluster", 4) };
    assert_eq!(
        ensure_topic(&config).await.unwrap_or_else(|e| panic!("{}", cluster_trouble(&config, &e))),
        TopicStatus::Created
    );
    let had = settings_of(&config).await;
    assert_eq!(
        had,
        [("min.insync.replicas", "2"), ("replication", "3"), ("retention.ms", "-1")]
            .map(|(setting, value)| (setting.to_owned(), value.to_owned())),
    );
    assert_eq!(topic_differences(&config).await.expect("describe"), []);
    delete_topic(&config).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_in_sync_replicas_than_replicas_is_refused_before_anything_is_created() {
    let config = fresh_config("min-isr", 2).with_min_insync_replicas(2);
    let error = ensure_topic(&config).await.expect_err("min.insync.replicas 2 of 1 replica");
    assert!(
        error
            .to_string()
            .contains("min_insync_replicas is 2, above the replication (1, for a cluster of 1 brokers)"),
        "{}",
        error_chain(&error)
    );
    assert_eq!(partition_count(&config).await.expect("metadata"), None, "nothing created");
}

/// What a test's tracing subscriber wrote.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: the subscriber set below is this thread's default.
#[tokio::test(flavor = "current_thread")]
async fn ensure_topic_warns_of_each_setting_the_existing_topic_has_otherwise() {
    let created = fresh_config("warns", 1).with_retention_ms(3_600_000);
    ensure_topic(&created).await.unwrap_or_else(|e| panic!("{}", broker_trouble(&created, &e)));
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let wanted = KafkaConfig { retention_ms: None, ..created.clone() };
    assert_eq!(ensure_topic(&wanted).await.expect("exists"), TopicStatus::Existed);
    let text = String::from_utf8(logs.0.lock().expect("not poisoned").clone()).expect("UTF-8");
    let warnings: Vec<&str> = text.lines().filter(|line| line.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("retention.ms is 3600000 on the topic, -1 configured; it is left as it is"),
        "{text}"
    );
}
