//! The Kafka faults only a cluster has: the broker leading most of the
//! topic's partitions dies under load, its partitions move to other
//! replicas, and it comes back later (`scripts/services/kafka start
//! --brokers 3`, node i on 127.0.0.1:9191+i).
//!
//! **Lag**, as the leader kill measures it: at a moment `t` the lag is
//! under 1 s when every projection has absorbed, in every partition, each
//! event the event store held at `t − 1 s` (the store's head is sampled
//! every [`SAMPLE`]; an event counts as absorbed when the projection's
//! checkpoint in its stream's partition is at or beyond its position). The
//! scenario reports the time from the kill to the first moment of the last
//! stretch in which the lag stayed under 1 s, watched for at least
//! [`WATCH`] (the controller needs its session timeout, 9 s, to fence the
//! dead broker and move its leaderships); 0 s if it never went over.
//!
//! **Frozen followers** ([`kill_leader`] with `freeze_followers`): both
//! other brokers get SIGSTOP; the controller (a process of its own, never
//! faulted) fences them after its session timeout and the leader leads
//! every partition alone, its in-sync set shrunk to itself. After the
//! freeze the leader is killed and the followers thawed: no in-sync replica
//! is left. With `min.insync.replicas=2` the leader acknowledged nothing
//! alone, and the partitions wait for it to come back. The negative control
//! ([`make_unsafe`]) runs the relay's producer with `acks=1` and no
//! idempotence (`PARALLAX_TEST_KAFKA_LEADER_ACKS`, debug builds only) and
//! the topic with `min.insync.replicas=1` and unclean leader election
//! allowed: the leader acknowledges events no other replica holds, a
//! thawed follower is elected uncleanly, and the events die with the
//! leader (when it comes back it truncates its log to the new leader's).
//! A freeze of a few seconds did not lose anything (run of 2026-12-07): the
//! relay waits for the frozen partitions' acknowledgements, and what the
//! leader had acknowledged meanwhile already sat in the frozen followers'
//! socket buffers.

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parallax_core::{partition_for, Partition, Position, ReadStore};
use serde_json::Value;

use super::super::distributed::{services as single_services, Deployment, Services, PARTITIONS};
use super::{Cluster, Measured};

/// Brokers in the cluster.
pub const BROKERS: u32 = 3;
/// How often the lag is sampled.
const SAMPLE: Duration = Duration::from_millis(200);
/// How long after the kill the lag is watched at least.
const WATCH: Duration = Duration::from_secs(20);
/// How long the lag may stay over 1 s before the scenario fails.
const LIMIT: Duration = Duration::from_secs(120);

/// `scripts/services/kafka start --brokers 3`'s cluster; its bootstrap list
/// is `PARALLAX_TEST_KAFKA_CLUSTER_BROKERS`, else the script's three brokers.
const CLUSTER: Cluster = Cluster {
    service: "kafka",
    size_option: "--brokers",
    size: BROKERS,
    addresses_env: "PARALLAX_TEST_KAFKA_CLUSTER_BROKERS",
    script_addresses: "127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194",
};

/// The single nodes' services with the cluster's brokers; starts every node
/// of the cluster that is not running (a scenario that failed may have left
/// one down).
pub async fn services() -> Services {
    CLUSTER.run("start", None).await;
    Services { brokers: CLUSTER.addresses(), ..single_services().await }
}

/// The negative control's settings: the topic keeps an event on its leader
/// alone and lets an out-of-sync replica lead, and the relay (restarted)
/// publishes with `acks=1`.
pub async fn make_unsafe(deployment: &mut Deployment) {
    let config = parallax_kafka::KafkaConfig::new(
        &deployment.services.brokers,
        &deployment.topic,
        PARTITIONS,
        shop::EVENT_SOURCE,
    );
    parallax_kafka::alter_topic_settings(
        &config,
        &[("min.insync.replicas", "1"), ("unclean.leader.election.enable", "true"), ("retention.ms", "-1")],
    )
    .await
    .expect("alter the topic's settings");
    deployment.extra_env.push(("PARALLAX_TEST_KAFKA_LEADER_ACKS".into(), "1".into()));
    deployment.kill("relay");
    deployment.restart("relay").await;
}

/// Each partition's leader, by broker id, as `kcat -L -J` shows the topic.
async fn leaders(brokers: &str, topic: &str) -> BTreeMap<i64, usize> {
    let output = tokio::process::Command::new("kcat")
        .args(["-L", "-J", "-b", brokers, "-t", topic, "-m", "10"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run kcat -L");
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("kcat -L -J printed no metadata ({e}): {}", String::from_utf8_lossy(&output.stderr))
    });
    let mut count = BTreeMap::new();
    for partition in metadata["topics"][0]["partitions"].as_array().into_iter().flatten() {
        if let Some(leader) = partition["leader"].as_i64().filter(|&id| id > 0) {
            *count.entry(leader).or_default() += 1;
        }
    }
    count
}

/// SIGKILL to the broker leading most of the topic's partitions (after
/// freezing the others for `freeze_followers`, if given, which are thawed
/// right after the kill), then its restart once the lag is back under 1 s
/// (or, with frozen followers, after [`WATCH`]: until it is back, nothing
/// in sync is left). Returns how long the lag took to get back under 1 s
/// (not measured with frozen followers: the control loses events, and its
/// projectors stop at the hole).
pub async fn kill_leader(deployment: &Deployment, freeze_followers: Option<Duration>) -> Option<Measured> {
    let leaders = leaders(&deployment.services.brokers, &deployment.topic).await;
    let (&leader, &led) =
        leaders.iter().max_by_key(|(_, led)| **led).expect("the topic's partitions have leaders");
    let leader = u32::try_from(leader).expect("a broker id");
    let followers: Vec<u32> = (1..=BROKERS).filter(|&id| id != leader).collect();
    if let Some(freeze) = freeze_followers {
        for &follower in &followers {
            CLUSTER.run("pause", Some(follower)).await;
        }
        tokio::time::sleep(freeze).await;
    }
    eprintln!(
        "-- SIGKILL to Kafka broker {leader}, leader of {led} of {PARTITIONS} partitions ({leaders:?})"
    );
    CLUSTER.run("kill", Some(leader)).await;
    let killed = Instant::now();
    if freeze_followers.is_some() {
        for &follower in &followers {
            CLUSTER.run("resume", Some(follower)).await;
        }
        tokio::time::sleep(WATCH).await;
        CLUSTER.run("start", None).await;
        return None;
    }
    let took = LagProbe::new(deployment).await.back_under_a_second(killed).await;
    eprintln!("-- the lag was back under 1 s {took:?} after the kill; restarting broker {leader}");
    CLUSTER.run("start", None).await;
    Some(Measured { took, what: "lag under 1 s again" })
}

/// Samples the event store's head and the projections' checkpoints.
struct LagProbe {
    write: sqlx::PgPool,
    views: Arc<dyn ReadStore>,
    /// Heads sampled, oldest first.
    heads: VecDeque<(Instant, Position)>,
}

impl LagProbe {
    async fn new(deployment: &Deployment) -> Self {
        let write =
            parallax_postgres::pool(&deployment.write_url, 2).await.expect("connect to the event store");
        Self { write, views: deployment.read_store().await, heads: VecDeque::new() }
    }

    /// The first moment of the last stretch with the lag under 1 s, after
    /// `killed` (see the module docs), as time since `killed`.
    async fn back_under_a_second(mut self, killed: Instant) -> Duration {
        let mut under_since: Option<Duration> = None;
        loop {
            let now = Instant::now();
            let head: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
                .fetch_one(&self.write)
                .await
                .expect("read the head");
            self.heads.push_back((now, u64::try_from(head).expect("a position")));
            while self.heads.get(1).is_some_and(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1)) {
                self.heads.pop_front();
            }
            let second_ago =
                self.heads.front().filter(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1));
            if let Some(&(_, head)) = second_ago {
                if self.absorbed(head).await {
                    under_since.get_or_insert(now.duration_since(killed));
                } else {
                    under_since = None;
                }
            }
            let watched = now.duration_since(killed);
            if let Some(since) = under_since.filter(|_| watched >= WATCH) {
                self.write.close().await;
                return since;
            }
            assert!(watched < LIMIT, "the lag stayed over 1 s for {LIMIT:?} after the broker's kill");
            tokio::time::sleep(SAMPLE).await;
        }
    }

    /// Whether every projection's checkpoint in each partition is at or
    /// beyond the last position up to `head` of that partition's streams.
    async fn absorbed(&self, head: Position) -> bool {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream_id, max(position) FROM events WHERE position <= $1 GROUP BY stream_id",
        )
        .bind(i64::try_from(head).expect("a position"))
        .fetch_all(&self.write)
        .await
        .expect("read the streams' last positions");
        let mut needed: BTreeMap<Partition, Position> = BTreeMap::new();
        for (stream, position) in rows {
            let slot = needed.entry(partition_for(&stream, PARTITIONS)).or_default();
            *slot = (*slot).max(u64::try_from(position).expect("a position"));
        }
        for projection in shop_read::all_projections() {
            let Ok(checkpoints) = self.views.checkpoints(projection.name()).await else { return false };
            let at: BTreeMap<Partition, Position> = checkpoints
                .into_iter()
                .map(|(partition, checkpoint)| (partition, checkpoint.position))
                .collect();
            if needed.iter().any(|(partition, position)| at.get(partition).copied().unwrap_or(0) < *position)
            {
                return false;
            }
        }
        true
    }
}
