//! A real Kafka-protocol broker for the tests: librdkafka's mock cluster, in the test process,
//! and a consumer that reads a topic back from the beginning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

/// One record as a consumer reads it.
#[derive(Clone, Debug)]
pub struct Message {
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// When the consumer read it.
    pub read_at: Instant,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }
}

pub struct Kafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Kafka {
    /// A one-broker cluster on a random local port.
    pub fn start() -> Self {
        Self { cluster: MockCluster::new(1).expect("a mock Kafka cluster") }
    }

    /// `host:port` of its broker.
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// A topic of one partition (so its messages are in one order).
    pub fn create_topic(&self, topic: &str) {
        self.cluster.create_topic(topic, 1, 1).expect("create a topic");
    }

    /// A consumer reading `topic` from the beginning in the background from now on. (The mock
    /// broker keeps only the last 5 MB or 100,000 messages of a partition: a large log must be
    /// read while it is written.)
    pub fn follow(&self, topic: &str) -> Follower {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", "shuttle-tests")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .set("max.partition.fetch.bytes", "16777216")
            .create()
            .expect("a consumer");
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition_offset(topic, 0, Offset::Beginning).expect("partition 0");
        consumer.assign(&partitions).expect("assign partition 0");
        let (messages, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (read, stopped) = (messages.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                    let headers = message.headers().map_or_else(Vec::new, |headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                            .collect()
                    });
                    read.lock().expect("the messages").push(Message {
                        key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                        payload: message.payload().unwrap_or_default().to_vec(),
                        headers,
                        read_at: Instant::now(),
                    });
                }
            }
        });
        Follower { topic: topic.to_owned(), messages, stop }
    }

    /// The topic's messages from the beginning, once `done` holds (panics after `limit`).
    pub async fn messages_until(&self, topic: &str, limit: Duration, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        self.follow(topic).until(limit, done).await
    }

    /// At least `count` messages of the topic.
    pub async fn messages(&self, topic: &str, count: usize, limit: Duration) -> Vec<Message> {
        self.messages_until(topic, limit, move |messages| messages.len() >= count).await
    }
}

/// A background consumer of one topic.
pub struct Follower {
    topic: String,
    messages: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
}

impl Follower {
    /// The messages read so far, once `done` holds (panics after `limit`).
    pub async fn until(&self, limit: Duration, done: impl Fn(&[Message]) -> bool) -> Vec<Message> {
        let deadline = Instant::now() + limit;
        loop {
            let messages = self.messages.lock().expect("the messages").clone();
            if done(&messages) {
                return messages;
            }
            assert!(Instant::now() < deadline, "{}: not there within {limit:?}; {} messages", self.topic, messages.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
