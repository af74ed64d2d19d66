//! Kafka delivery (SPEC §5): `kafka://host:port/topic` and `failover(kafka://a/topic, …)`.
//!
//! One idempotent producer per bootstrap list, created on first use and kept across calls (and
//! Lambda invocations): a failover target is one producer over all its brokers, which keeps
//! delivering while any one of them is reachable. Idempotence keeps the order of a call's
//! messages and rules out duplicates from librdkafka's own retries, so the messages delivered are
//! always a prefix of those given.
//!
//! The SSRF guard (SPEC §7) checks the bootstrap brokers before their producer is created: every
//! address each one resolves to must be allowed, else the target is refused (final). librdkafka
//! resolves the brokers again by itself, and so do later connections (to the brokers the cluster
//! advertises, too): those lookups cannot be pinned to the checked addresses, so a DNS-rebinding
//! broker name is a gap this check narrows but does not close. Deployers list brokers by address,
//! or keep `ALLOWED_PRIVATE_CIDRS` to the ranges Kafka really lives in.
//!
//! `KAFKA_ALLOWED_BROKERS` closes the rest of it for deployers who know their clusters: a target
//! whose bootstrap brokers are not all listed is refused (final); a new producer first asks the
//! cluster for its brokers (one metadata request, to a bootstrap broker: librdkafka connects to
//! the others only when it needs them) and is dropped, the target refused, when the cluster
//! advertises one not listed. librdkafka is handed each broker in the spelling the guard checked.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use lru::LruCache;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use shuttle_core::netguard::{broker_address, AllowedBrokers, AllowedNetworks};
use shuttle_core::ports::{KafkaClient, KafkaMessage, SendError};
use shuttle_core::redact::redact;
use tokio::time::Instant;

/// How long librdkafka may try to deliver a message (its retries included) before reporting it
/// undelivered.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broker connection (TCP, and TLS or SASL if any) may take to set up.
const CONNECTION_SETUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long messages wait to be batched.
const LINGER: Duration = Duration::from_millis(5);
/// How long to wait before enqueueing again when the producer's queue is full of other calls'
/// messages.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

/// The most producers one poller keeps (each holds its brokers' connections and a thread):
/// the least recently used is dropped past it, so that builds naming ever new broker lists do
/// not grow a warm poller without end. A poll's targets number at most 32 (16 status, 16 logs).
const MAX_PRODUCERS: NonZeroUsize = NonZeroUsize::new(32).expect("not zero");

/// Produces to Kafka through producers cached by bootstrap list, [`MAX_PRODUCERS`] at most.
pub struct RdKafkaClient {
    producers: Mutex<LruCache<String, FutureProducer>>,
    message_timeout: Duration,
    allowed: AllowedNetworks,
    brokers: AllowedBrokers,
}

impl RdKafkaClient {
    /// A client whose messages are reported undelivered after [`MESSAGE_TIMEOUT`], and whose
    /// brokers the SSRF guard refuses unless `allowed` opens them. Creates no producer yet: no
    /// network call.
    pub fn new(allowed: AllowedNetworks) -> Self {
        Self::with_message_timeout(MESSAGE_TIMEOUT, allowed)
    }

    /// A client whose messages are reported undelivered after `message_timeout` (at least 1 ms).
    pub fn with_message_timeout(message_timeout: Duration, allowed: AllowedNetworks) -> Self {
        Self {
            producers: Mutex::new(LruCache::new(MAX_PRODUCERS)),
            message_timeout: message_timeout.max(Duration::from_millis(1)),
            allowed,
            brokers: AllowedBrokers::any(),
        }
    }

    /// Dials only `brokers` (`KAFKA_ALLOWED_BROKERS`), bootstrap and advertised.
    #[must_use]
    pub fn with_allowed_brokers(self, brokers: AllowedBrokers) -> Self {
        Self { brokers, ..self }
    }

    fn cached(&self, bootstrap: &str) -> Option<FutureProducer> {
        self.producers.lock().unwrap_or_else(PoisonError::into_inner).get(bootstrap).cloned()
    }

    /// The producer of `brokers` (normalised), checked before it is created and kept.
    async fn producer(&self, brokers: &[String], bootstrap: &str) -> Result<FutureProducer, SendError> {
        if let Some(producer) = self.cached(bootstrap) {
            return Ok(producer);
        }
        if let Some(outside) = brokers.iter().find(|broker| !self.brokers.allows(broker)) {
            return Err(SendError::refused(format!("the Kafka broker {outside} is not in KAFKA_ALLOWED_BROKERS")));
        }
        crate::guard::check_brokers(brokers, &self.allowed).await.map_err(|check| match check {
            crate::guard::BrokerCheck::Refused(refusal) => SendError::refused(redact(&refusal)),
            crate::guard::BrokerCheck::Unresolved(problem) => SendError::new(redact(&problem)),
        })?;
        let producer = self.create(bootstrap)?;
        if self.brokers.is_restricted() {
            self.check_advertised(&producer).await?;
        }
        // A producer dropped here finishes what it has in flight: the polls using it hold a clone.
        self.producers.lock().unwrap_or_else(PoisonError::into_inner).put(bootstrap.to_owned(), producer.clone());
        Ok(producer)
    }

    /// Asks the cluster for its brokers: each must be in `KAFKA_ALLOWED_BROKERS`.
    async fn check_advertised(&self, producer: &FutureProducer) -> Result<(), SendError> {
        let asking = producer.clone();
        let timeout = self.message_timeout;
        // librdkafka's metadata call blocks its thread.
        let metadata = tokio::task::spawn_blocking(move || asking.client().fetch_metadata(None, timeout))
            .await
            .map_err(|e| SendError::new(format!("the Kafka metadata request did not finish: {e}")))?
            .map_err(|e| SendError::new(redact(&format!("the Kafka cluster did not say which brokers it has: {e}"))))?;
        let advertised = metadata.brokers().iter().map(|broker| format!("{}:{}", broker.host(), broker.port()));
        match advertised.into_iter().find(|broker| !self.brokers.allows(broker)) {
            Some(outside) => Err(SendError::refused(redact(&format!(
                "the Kafka cluster advertises the broker {outside}, which is not in KAFKA_ALLOWED_BROKERS"
            )))),
            None => Ok(()),
        }
    }

    /// A new producer for `bootstrap` (`host:port,host:port`).
    fn create(&self, bootstrap: &str) -> Result<FutureProducer, SendError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", self.message_timeout.as_millis().to_string())
            .set("linger.ms", LINGER.as_millis().to_string())
            .set("socket.connection.setup.timeout.ms", CONNECTION_SETUP_TIMEOUT.as_millis().to_string())
            .create()
            .map_err(|e| SendError::new(redact(&format!("no Kafka producer for {bootstrap}: {e}"))))?;
        Ok(producer)
    }

    /// Drops the cached producer of `bootstrap`: the next call creates a new one.
    fn forget(&self, bootstrap: &str) {
        self.producers.lock().unwrap_or_else(PoisonError::into_inner).pop(bootstrap);
    }
}

#[async_trait]
impl KafkaClient for RdKafkaClient {
    async fn produce(&self, brokers: &[String], topic: &str, messages: Vec<KafkaMessage>) -> Result<(), (usize, SendError)> {
        // Each broker as the guard reads it (a legacy broker without a port is on Kafka's 9092).
        let brokers = brokers
            .iter()
            .map(|broker| broker_address(broker).or_else(|| broker_address(&format!("{}:9092", broker.trim()))))
            .collect::<Option<Vec<_>>>()
            // Never echoed: a malformed broker may carry userinfo that redaction would not see.
            .ok_or_else(|| (0, SendError::refused("a Kafka broker is not a plain host:port")))?;
        let bootstrap = brokers.join(",");
        let producer = self.producer(&brokers, &bootstrap).await.map_err(|e| (0, e))?;
        let result = produce_in_order(&producer, topic, &messages, self.message_timeout).await;
        // A fatal error (the idempotent producer's state lost) leaves the producer unusable.
        if result.is_err() && producer.client().fatal_error().is_some() {
            self.forget(&bootstrap);
        }
        result.map_err(|(delivered, error)| (delivered, SendError { message: redact(&error.message), ..error }))
    }
}

/// Enqueues `messages` in order and awaits their delivery reports, oldest first. `Err` carries
/// how many of the first messages were delivered. A full queue is waited out on the oldest of
/// this call's deliveries, or for at most `queue_wait` when the queue is full of others'.
async fn produce_in_order(
    producer: &FutureProducer,
    topic: &str,
    messages: &[KafkaMessage],
    queue_wait: Duration,
) -> Result<(), (usize, SendError)> {
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(messages.len());
    let mut delivered = 0;
    let mut refused = None;
    'messages: for message in messages {
        let mut record = record(topic, message);
        let mut full_since = None;
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    if let Some(oldest) = pending.pop_front() {
                        delivery_report(oldest).await.map_err(|e| (delivered, e))?;
                        delivered += 1;
                    } else if full_since.get_or_insert_with(Instant::now).elapsed() < queue_wait {
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    } else {
                        refused = Some(SendError::new(format!("the producer's queue stayed full for {queue_wait:?}")));
                        break 'messages;
                    }
                }
                Err((error, _)) => {
                    refused = Some(SendError::new(format!("not enqueued: {error}")));
                    break 'messages;
                }
            }
        }
    }
    for delivery in pending {
        delivery_report(delivery).await.map_err(|e| (delivered, e))?;
        delivered += 1;
    }
    refused.map_or(Ok(()), |error| Err((delivered, error)))
}

fn record<'a>(topic: &'a str, message: &'a KafkaMessage) -> FutureRecord<'a, str, [u8]> {
    let record = FutureRecord::to(topic).key(&*message.key).payload(message.payload.as_ref());
    if message.headers.is_empty() {
        return record;
    }
    let headers = message.headers.iter().fold(OwnedHeaders::new_with_capacity(message.headers.len()), |headers, (key, value)| {
        headers.insert(Header { key, value: Some(value.as_str()) })
    });
    record.headers(headers)
}

async fn delivery_report(delivery: DeliveryFuture) -> Result<(), SendError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(SendError::new(format!("not delivered: {error}"))),
        Err(_) => Err(SendError::new("the producer went away before reporting the delivery".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20: builds naming ever new broker lists do not grow a warm poller's producers
    /// without end; the least recently used goes first.
    #[tokio::test]
    async fn the_producers_kept_are_bounded_and_the_least_recently_used_goes_first() {
        let client = RdKafkaClient::new("127.0.0.0/8".parse().unwrap());
        let lists: Vec<String> = (0..40).map(|i| format!("127.0.0.1:{}", 20_000 + i)).collect();
        for list in &lists {
            drop(client.producer(std::slice::from_ref(list), list).await.expect("a producer: creating one dials nothing yet"));
            drop(client.producer(&lists[..1], &lists[0]).await.expect("the first one, used again"));
        }
        let kept = client.producers.lock().unwrap().len();
        assert_eq!(kept, MAX_PRODUCERS.get(), "at most {MAX_PRODUCERS} producers");
        let has_producer = |list: &String| client.producers.lock().unwrap().contains(list);
        assert!(has_producer(&lists[0]), "the one in use stays");
        assert!(!has_producer(&lists[1]), "the least recently used went first");
        assert!(has_producer(&lists[39]));
    }
}
