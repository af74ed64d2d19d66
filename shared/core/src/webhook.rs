//! Webhook targets (SPEC §5): `http(s)://…`, `kafka://host:port/topic` and
//! `failover(kafka://a:9092/topic, kafka://b:9092/topic, …)`.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::redact::redact;

/// Where a status change or a log is delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookTarget {
    /// An `http(s)` endpoint; userinfo in the URL becomes HTTP Basic auth.
    Http { url: String },
    /// A Kafka topic reached through one or more bootstrap brokers (`host:port`).
    Kafka { brokers: Vec<String>, topic: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("is empty")]
    Empty,
    #[error("'{0}' is not a URL")]
    NotAUrl(String),
    #[error("scheme '{0}' is not supported; use http, https, kafka or failover(kafka://…, …)")]
    UnsupportedScheme(String),
    #[error("'{0}' has no host")]
    NoHost(String),
    #[error("'{0}' names port 0, which no connection can reach")]
    PortZero(String),
    #[error("'{0}' must be kafka://host:port/topic")]
    BadKafka(String),
    #[error("failover(…) must be failover(kafka://host:port/topic, …) with at least one broker and one topic: {0}")]
    BadFailover(String),
}

impl WebhookTarget {
    pub fn parse(raw: &str) -> Result<Self, TargetError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(TargetError::Empty);
        }
        if let Some(inner) = raw.strip_prefix("failover(") {
            return parse_failover(raw, inner);
        }
        let url = Url::parse(raw).map_err(|_| TargetError::NotAUrl(redact(raw)))?;
        match url.scheme() {
            "http" | "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(TargetError::NoHost(redact(raw)));
                }
                if url.port() == Some(0) {
                    return Err(TargetError::PortZero(redact(raw)));
                }
                Ok(Self::Http { url: url.to_string() })
            }
            "kafka" => {
                let (broker, topic) = kafka_endpoint(&url).ok_or_else(|| TargetError::BadKafka(redact(raw)))?;
                Ok(Self::Kafka { brokers: vec![broker], topic })
            }
            other => Err(TargetError::UnsupportedScheme(other.to_owned())),
        }
    }

    /// The target as a caller may see it: credentials redacted.
    pub fn redacted(&self) -> String {
        redact(&self.to_string())
    }
}

fn parse_failover(raw: &str, inner: &str) -> Result<WebhookTarget, TargetError> {
    let bad = || TargetError::BadFailover(redact(raw));
    let list = inner.strip_suffix(')').ok_or_else(bad)?;
    let mut brokers = Vec::new();
    let mut topic: Option<String> = None;
    for member in list.split(',') {
        let url = Url::parse(member.trim()).map_err(|_| bad())?;
        if url.scheme() != "kafka" {
            return Err(bad());
        }
        let (broker, member_topic) = kafka_endpoint(&url).ok_or_else(bad)?;
        match &topic {
            Some(t) if *t != member_topic => return Err(bad()),
            _ => topic = Some(member_topic),
        }
        brokers.push(broker);
    }
    let topic = topic.ok_or_else(bad)?;
    Ok(WebhookTarget::Kafka { brokers, topic })
}

/// `kafka://host:port/topic` → (`host:port`, `topic`), the host as the SSRF guard reads it:
/// librdkafka dials what was checked, never another spelling of it.
fn kafka_endpoint(url: &Url) -> Option<(String, String)> {
    // One plain host: librdkafka would read `a,b` or `a b` as two brokers, one of them unchecked.
    let broker = crate::netguard::broker_address(&format!("{}:{}", url.host_str()?, url.port()?))?;
    let topic = url.path().trim_start_matches('/');
    let valid_topic =
        !topic.is_empty() && topic.len() <= 249 && topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    valid_topic.then(|| (broker, topic.to_owned()))
}

impl fmt::Display for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http { url } => f.write_str(url),
            Self::Kafka { brokers, topic } if brokers.len() == 1 => write!(f, "kafka://{}/{topic}", brokers[0]),
            Self::Kafka { brokers, topic } => {
                let members: Vec<String> = brokers.iter().map(|b| format!("kafka://{b}/{topic}")).collect();
                write!(f, "failover({})", members.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_are_targets() {
        let target = WebhookTarget::parse("https://token@example.com/hooks/status").unwrap();
        assert_eq!(target, WebhookTarget::Http { url: "https://token@example.com/hooks/status".into() });
        assert_eq!(target.redacted(), "https://***@example.com/hooks/status");
        assert!(matches!(WebhookTarget::parse("http://127.0.0.1:9000/x"), Ok(WebhookTarget::Http { .. })));
    }

    #[test]
    fn kafka_topic_is_the_path() {
        let target = WebhookTarget::parse("kafka://10.0.0.1:9092/buildlogs").unwrap();
        assert_eq!(target, WebhookTarget::Kafka { brokers: vec!["10.0.0.1:9092".into()], topic: "buildlogs".into() });
        assert_eq!(target.to_string(), "kafka://10.0.0.1:9092/buildlogs");
    }

    #[test]
    fn a_kafka_host_must_be_one_plain_host() {
        for raw in ["kafka://10.0.0.5,kafka.example:9092/logs", "kafka://a%20b:9092/logs", "kafka://a;b:9092/logs"] {
            assert!(WebhookTarget::parse(raw).is_err(), "{raw}");
        }
        assert!(WebhookTarget::parse("kafka://[::1]:9092/logs").is_ok());
        assert!(WebhookTarget::parse("kafka://kafka_1.internal-zone.example:9092/logs").is_ok());
    }

    #[test]
    fn failover_lists_every_broker_for_one_topic() {
        let target =
            WebhookTarget::parse("failover(kafka://10.0.0.1:9092/buildlogs, kafka://10.0.0.2:9092/buildlogs,kafka://b3:9093/buildlogs)")
                .unwrap();
        assert_eq!(
            target,
            WebhookTarget::Kafka {
                brokers: vec!["10.0.0.1:9092".into(), "10.0.0.2:9092".into(), "b3:9093".into()],
                topic: "buildlogs".into()
            }
        );
        assert_eq!(WebhookTarget::parse(&target.to_string()).unwrap(), target, "display round-trips");
    }

    #[test]
    fn bad_targets_are_refused_with_the_reason() {
        assert_eq!(WebhookTarget::parse("ftp://example.com/x"), Err(TargetError::UnsupportedScheme("ftp".into())));
        assert_eq!(WebhookTarget::parse(""), Err(TargetError::Empty));
        // URLs no connection can reach: refused at create, never retried.
        assert!(matches!(WebhookTarget::parse("https://hooks.example:0/s"), Err(TargetError::PortZero(_))));
        assert!(matches!(WebhookTarget::parse("kafka://10.0.0.1:0/buildlogs"), Err(TargetError::BadKafka(_))), "port 0");
        assert!(matches!(WebhookTarget::parse("not a url"), Err(TargetError::NotAUrl(_))));
        assert!(matches!(WebhookTarget::parse("kafka://10.0.0.1/buildlogs"), Err(TargetError::BadKafka(_))), "no port");
        assert!(matches!(WebhookTarget::parse("kafka://10.0.0.1:9092/"), Err(TargetError::BadKafka(_))), "no topic");
        for malformed in [
            "failover(kafka://a:9092/t",
            "failover()",
            "failover(kafka://a:9092/t, https://b/x)",
            "failover(kafka://a:9092/t, kafka://b:9092/other)",
            "failover(kafka://a:9092/t,)",
        ] {
            assert!(matches!(WebhookTarget::parse(malformed), Err(TargetError::BadFailover(_))), "{malformed}");
        }
    }

    #[test]
    fn errors_never_show_credentials() {
        let err = WebhookTarget::parse("failover(kafka://u:secret@a:9092/t").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
