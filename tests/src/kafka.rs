//! A real Kafka broker for the tests: a Tansu broker process (a Kafka-compatible broker, as
//! `make run` starts one), one per test on a free port, and a consumer that reads a topic back
//! from the beginning. `make test` installs it and names its binary in
//! `SHUTTLE_TEST_KAFKA_BROKER` (infra/local/test.sh). The fault-injection tests of the Kafka
//! adapter use librdkafka's mock cluster instead (`tests/tests/delivery_adapters.rs`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

/// Where `make test` names the broker's binary.
pub const BROKER_VARIABLE: &str = "SHUTTLE_TEST_KAFKA_BROKER";

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

/// A broker process, stopped when this is dropped.
pub struct Kafka {
    broker: Child,
    address: SocketAddr,
}

impl Kafka {
    /// A broker of its own on a free loopback port, with its topics in memory.
    pub fn start() -> Self {
        Self::start_advertising(None)
    }

    /// A broker listening on a free loopback port that tells its clients it is at
    /// `advertised_host` (on the same port), as a broker behind another name does.
    pub fn start_advertising(advertised_host: Option<&str>) -> Self {
        let binary = std::env::var(BROKER_VARIABLE).unwrap_or_else(|_| {
            panic!("{BROKER_VARIABLE} must name the Tansu broker binary: run the tests with `make test` (infra/local/test.sh installs it)")
        });
        let address = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let url = format!("tcp://{address}");
        let advertised = advertised_host.map_or_else(|| url.clone(), |host| format!("tcp://{host}:{}", address.port()));
        let broker = Command::new(&binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised, "--storage-engine", "memory://tansu/"])
            // Tansu reads these too; the caller's would change the broker.
            .env_remove("CLUSTER_ID")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start the Kafka broker {binary}: {e}"));
        let mut kafka = Self { broker, address };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
            assert!(kafka.broker.try_wait().ok().flatten().is_none(), "the Kafka broker {binary} exited at start");
            assert!(Instant::now() < deadline, "the Kafka broker did not listen on {address} within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        kafka.address = address;
        kafka
    }

    /// `host:port` of its broker.
    pub fn bootstrap(&self) -> String {
        self.address.to_string()
    }

    /// A topic of one partition (so its messages are in one order).
    pub async fn create_topic(&self, topic: &str) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().expect("an admin client");
        let created = admin
            .create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
            .await
            .expect("the broker answers CreateTopics");
        for outcome in created {
            outcome.unwrap_or_else(|(topic, error)| panic!("create the topic {topic}: {error}"));
        }
    }

    /// A consumer reading partition 0 of `topic` from the beginning in the background from now
    /// on (assigned, not in a group: a group's join waits on a rebalance).
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

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = self.broker.kill();
        let _ = self.broker.wait();
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
