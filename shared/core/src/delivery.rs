//! Who a build's webhooks go to, how a delivery is judged and retried (SPEC §5), and how a
//! status webhook is signed (Standard Webhooks). Pure: [`crate::relay`] sends.

use std::time::{Duration, SystemTime};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::record::Deliveries;
use crate::request::{is_header_value, Api, BuildSpec};
use crate::webhook::WebhookTarget;

/// Where a build's status changes go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusTarget {
    /// A v2 target: JSON over `http(s)`, or a Kafka message keyed by the metadata.
    Webhook(WebhookTarget),
    /// The legacy `callback`, with `callback_auth` sent verbatim as `Authorization`.
    Callback { url: String, auth: Option<String> },
}

/// Where a build's log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// A v2 target: streamed over `http(s)`, or one Kafka message per line keyed by the metadata.
    Webhook(WebhookTarget),
    /// Legacy `kafka_hosts`: the envelope of SPEC §3 on `KAFKA_TOPIC`, keyed `{app}-{space}`,
    /// ending with `Build finished`.
    LegacyKafka { brokers: Vec<String>, topic: String, key: String },
}

impl BuildSpec {
    /// The status targets, in the order their positions are kept.
    pub fn status_targets(&self) -> Vec<StatusTarget> {
        match &self.api {
            Api::V2 { .. } => self.status_targets.iter().cloned().map(StatusTarget::Webhook).collect(),
            Api::Legacy(legacy) => {
                // A callback that is not an http(s) URL, or whose `callback_auth` no request can
                // carry, failed the build at create (SPEC §3): there is nobody to tell, and
                // trying would only be retried in vain.
                let sendable = legacy.callback_auth.as_deref().is_none_or(is_header_value);
                let callback = legacy
                    .callback
                    .clone()
                    .filter(|url| sendable && WebhookTarget::parse(url).is_ok_and(|t| matches!(t, WebhookTarget::Http { .. })));
                callback.map(|url| StatusTarget::Callback { url, auth: legacy.callback_auth.clone() }).into_iter().collect()
            }
        }
    }

    /// The positions of the build's targets, none of them told anything yet.
    pub fn deliveries(&self, kafka_topic: &str) -> Deliveries {
        let callbacks = self.status_targets().into_iter().map(|t| matches!(t, StatusTarget::Callback { .. }));
        Deliveries::for_targets(callbacks, self.log_targets(kafka_topic).len())
    }

    /// The log targets, in the order their positions are kept; legacy Kafka goes to `kafka_topic`.
    pub fn log_targets(&self, kafka_topic: &str) -> Vec<LogTarget> {
        match &self.api {
            Api::V2 { .. } => self.log_targets.iter().cloned().map(LogTarget::Webhook).collect(),
            Api::Legacy(legacy) if legacy.kafka_hosts.is_empty() => Vec::new(),
            Api::Legacy(legacy) => vec![LogTarget::LegacyKafka {
                brokers: legacy.kafka_hosts.clone(),
                topic: kafka_topic.to_owned(),
                key: format!("{}-{}", legacy.app, legacy.space),
            }],
        }
    }
}

/// What a receiver's answer means for the delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx: never sent again.
    Delivered,
    /// A 5xx or 429 (or no answer): try again, not before `after` when the receiver said so.
    Retry { after: Option<Duration> },
    /// Any other answer (3xx are not followed, other 4xx will not change): give up.
    Final { status: u16 },
}

/// The verdict on an HTTP answer `status` with its `Retry-After` header, read at `now`.
pub fn verdict(status: u16, retry_after: Option<&str>, now: SystemTime) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        429 | 500..=599 => Verdict::Retry { after: retry_after.and_then(|raw| parse_retry_after(raw, now)) },
        _ => Verdict::Final { status },
    }
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past is no wait.
pub fn parse_retry_after(raw: &str, now: SystemTime) -> Option<Duration> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// When to try a delivery again: exponential backoff with full jitter, bounded in attempts and
/// in time since the first attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
    /// No attempt starts later than this after the first one.
    pub give_up_after: Duration,
}

impl RetryPolicy {
    /// v2 status and log targets.
    pub const V2: Self = Self {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(5 * 60),
        max_attempts: 20,
        give_up_after: Duration::from_secs(60 * 60),
    };

    /// Legacy callbacks: the controller's `callback_auth` expires after 2 hours.
    pub const LEGACY: Self = Self {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(10 * 60),
        max_attempts: 30,
        give_up_after: Duration::from_secs(2 * 60 * 60),
    };

    /// The wait before attempt `attempt + 1`, after `attempt` failed attempts (1-based), or
    /// `None` when the delivery is given up. `jitter` in `[0, 1)` picks the wait within the
    /// backoff window; a receiver's `Retry-After` wins when it is longer.
    pub fn next_delay(&self, attempt: u32, elapsed: Duration, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let window = self.first_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(self.max_delay);
        let backoff = window.mul_f64(jitter.clamp(0.0, 1.0)).max(self.first_delay / 2);
        let delay = retry_after.map_or(backoff, |after| after.max(backoff)).min(self.max_delay);
        (elapsed + delay <= self.give_up_after).then_some(delay)
    }
}

/// A Standard Webhooks secret: `whsec_` followed by base64 of the key (the prefix is optional).
/// The key is `secrecy`'s: never in `Debug`, zeroed on drop.
#[derive(Clone, Debug)]
pub struct SigningSecret(secrecy::SecretSlice<u8>);

impl SigningSecret {
    pub fn parse(raw: &str) -> Option<Self> {
        let encoded = raw.trim().strip_prefix("whsec_").unwrap_or(raw.trim());
        let key = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        (!key.is_empty()).then(|| Self(key.into()))
    }

    /// `webhook-signature`: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secrecy::ExposeSecret::expose_secret(&self.0)).expect("HMAC takes a key of any length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_as_spec_5_says() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        assert_eq!(verdict(200, None, now), Verdict::Delivered);
        assert_eq!(verdict(204, None, now), Verdict::Delivered);
        assert_eq!(verdict(500, None, now), Verdict::Retry { after: None });
        assert_eq!(verdict(503, Some("7"), now), Verdict::Retry { after: Some(Duration::from_secs(7)) });
        assert_eq!(verdict(429, Some("soon"), now), Verdict::Retry { after: None }, "an unreadable Retry-After is no hint");
        for status in [301, 302, 307, 400, 401, 403, 404, 410, 422] {
            assert_eq!(verdict(status, None, now), Verdict::Final { status }, "{status}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Tue, 24 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Tue, 24 Nov 2026 10:01:30 GMT", now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("Tue, 24 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn backoff_grows_is_jittered_bounded_and_gives_up() {
        let policy = RetryPolicy::V2;
        let at = |attempt, jitter| policy.next_delay(attempt, Duration::ZERO, None, jitter).unwrap();
        assert_eq!(at(1, 1.0), Duration::from_secs(1));
        assert_eq!(at(4, 1.0), Duration::from_secs(8));
        assert_eq!(at(4, 0.5), Duration::from_secs(4));
        assert_eq!(at(4, 0.0), Duration::from_millis(500), "never a busy retry");
        assert_eq!(at(15, 1.0), policy.max_delay);
        assert_eq!(policy.next_delay(policy.max_attempts, Duration::ZERO, None, 1.0), None);
        assert_eq!(policy.next_delay(1, Duration::from_secs(3600), None, 1.0), None, "past the time bound");
        assert_eq!(policy.next_delay(1, Duration::ZERO, Some(Duration::from_secs(30)), 0.3), Some(Duration::from_secs(30)));
    }

    #[test]
    fn legacy_callbacks_stop_within_two_hours() {
        let policy = RetryPolicy::LEGACY;
        let (mut elapsed, mut attempt) = (Duration::ZERO, 1);
        while let Some(delay) = policy.next_delay(attempt, elapsed, None, 1.0) {
            elapsed += delay;
            attempt += 1;
        }
        assert!(elapsed <= Duration::from_secs(2 * 3600), "{elapsed:?}");
        assert!(attempt > 10, "it does keep trying for a while: {attempt} attempts");
    }

    #[test]
    fn a_legacy_callback_that_is_not_an_http_url_is_nobody_to_tell() {
        let host = url::Url::parse("https://shuttle.example").unwrap();
        let spec = |callback: &str| {
            let body = serde_json::json!({
                "app": "myapp", "space": "default", "app_uuid": "7d1f3b5c-2a4e-4c6d-8e0f-1a2b3c4d5e6f",
                "build_uuid": "0b6a3d4e-5f60-4718-9a2b-3c4d5e6f7a8b", "sources": "docker://registry.example/org/base:3",
                "gm_registry_host": "registry.example", "gm_registry_repo": "org", "callback": callback,
            });
            crate::request::parse_legacy(body.to_string().as_bytes(), &crate::request::LegacyContext { shuttle_host: &host }).unwrap().spec
        };
        assert!(spec("ftp://controller.example/cb").status_targets().is_empty());
        assert_eq!(spec("https://controller.example/cb").status_targets().len(), 1);
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(SigningSecret::parse("whsec_").is_none());
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}
