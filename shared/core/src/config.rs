//! Settings of the API functions (SPEC §6), read once at start. A missing or malformed
//! setting is an error naming it.

use std::collections::BTreeMap;
use std::time::Duration;

use url::Url;

use crate::access::{Access, LinkSigner, MIN_SECRET_CHARS};
use crate::delivery::SigningSecret;
use crate::netguard::AllowedNetworks;
use crate::request::is_argument_name;

#[derive(Clone, Debug)]
pub struct Settings {
    pub table_name: String,
    pub s3_bucket: String,
    pub poll_queue_url: String,
    pub kms_key_id: String,
    /// The public base URL of the shuttle, used in sources links and recognised in rebuilds.
    pub shuttle_host: Url,
    pub extra_build_args: BTreeMap<String, String>,
    pub image_tag_prefix: String,
    pub kafka_topic: String,
    /// `WEBHOOK_SIGNING_SECRET` (`whsec_…`): status webhooks carry Standard Webhooks signatures.
    pub webhook_signing_secret: Option<SigningSecret>,
    pub build_timeout: Duration,
    pub queue_timeout: Duration,
    /// How long a `GET /{build_uuid}` redirect stays valid.
    pub sources_link_ttl: Duration,
    /// `BUILD_RETENTION`: how long a finished build's record is kept after its last change
    /// (DynamoDB deletes it after its `expires_at`, the table's TTL attribute).
    pub build_retention: Duration,
    /// `SHUTTLE_API_TOKENS` or `SHUTTLE_OPEN_MODE=true`: who may call the API.
    pub access: Access,
    /// `SOURCES_SIGNING_KEY`: signs the sources links handed to Jenkins. Required with tokens;
    /// in open mode, links go unsigned when it is not set.
    pub sources_signer: Option<LinkSigner>,
    /// `ALLOWED_PRIVATE_CIDRS`: the refused ranges user-supplied URLs may reach all the same
    /// (SPEC §7); never link-local or the metadata service.
    pub allowed_private: AllowedNetworks,
    pub jenkins: JenkinsConfig,
    pub poller: PollerConfig,
}

/// Where Jenkins is and how the shuttle signs in (`JENKINS_URL`, `JENKINS_USER`, `JENKINS_TOKEN`).
#[derive(Clone, Debug)]
pub struct JenkinsConfig {
    /// Without credentials: they come from `JENKINS_USER` / `JENKINS_TOKEN`.
    pub url: Url,
    pub user: String,
    pub token: Secret,
}

/// How the poller paces itself.
#[derive(Clone, Debug)]
pub struct PollerConfig {
    /// `POLL_INTERVAL`: the delay between two looks at a build waiting in Jenkins' queue, and
    /// between two log reads of a running build.
    pub interval: Duration,
    /// `LOG_WINDOW`: how long one poll tails a running build before handing it to the next
    /// poll (≤ 60 s: always well inside the poller's own timeout).
    pub window: Duration,
    /// `SOURCE_MAX_BYTES`: the largest sources archive downloaded.
    pub source_max_bytes: u64,
    /// `POLL_STALE_AFTER`: the schedule re-drives an unfinished build whose last poll is older.
    /// Longer than a poll's lease (`LOG_WINDOW` + 60 s) to leave running polls alone.
    pub stale_after: Duration,
    /// `POLL_DEAD_LETTER_QUEUE_URL`: where a malformed poll message is moved (else it is
    /// reported failed and SQS moves it after `maxReceiveCount`).
    pub dead_letter_queue_url: Option<String>,
}

/// A secret setting (a token, a key): `secrecy`'s string, whose `Debug` never shows it and
/// whose memory is zeroed on drop; read with [`secrecy::ExposeSecret::expose_secret`].
pub use secrecy::{ExposeSecret, SecretString as Secret};

/// The longest `LOG_WINDOW`: a poll must end well inside the poller's 90 s timeout.
pub const MAX_LOG_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("setting {0} is required but not set")]
    Missing(&'static str),
    #[error("setting {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
    #[error("setting {name} is required but not set: {hint}")]
    MissingWithHint { name: &'static str, hint: &'static str },
}

/// The shortest `SOURCES_SIGNING_KEY` taken: an HMAC-SHA-256 key of at least 256 bits of text.
pub const MIN_SIGNING_KEY_CHARS: usize = 32;

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let optional = |name: &'static str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let required = |name: &'static str| optional(name).ok_or(ConfigError::Missing(name));
        let duration = |name: &'static str, default: Duration| match optional(name) {
            None => Ok(default),
            Some(raw) => parse_duration(&raw).ok_or_else(|| ConfigError::Malformed {
                name,
                reason: format!("'{raw}' is not a duration (seconds, or numbers with units: 500ms, 90s, 20m, 2h, 30d)"),
            }),
        };

        let http_url = |name: &'static str, example: &str| {
            let raw = required(name)?;
            Url::parse(&raw)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| ConfigError::Malformed { name, reason: format!("must be an absolute http(s) URL such as {example}") })
        };

        let shuttle_host = http_url("BUILD_SHUTTLE_HOST", "https://shuttle.example.com")?;
        let extra_build_args = match optional("EXTRA_BUILD_ARGS") {
            None => BTreeMap::new(),
            Some(raw) => parse_extra_build_args(&raw).map_err(|reason| ConfigError::Malformed { name: "EXTRA_BUILD_ARGS", reason })?,
        };
        let image_tag_prefix = optional("IMAGE_TAG_PREFIX").unwrap_or_else(|| "1".to_owned());
        if !image_tag_prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(ConfigError::Malformed { name: "IMAGE_TAG_PREFIX", reason: "must be a docker tag fragment such as 1".into() });
        }
        let jenkins_url = http_url("JENKINS_URL", "https://jenkins.example.com")?;
        if !jenkins_url.username().is_empty() || jenkins_url.password().is_some() {
            return Err(ConfigError::Malformed {
                name: "JENKINS_URL",
                reason: "must not carry credentials: set JENKINS_USER and JENKINS_TOKEN".into(),
            });
        }
        let window = duration("LOG_WINDOW", Duration::from_secs(20))?;
        if window > MAX_LOG_WINDOW {
            return Err(ConfigError::Malformed { name: "LOG_WINDOW", reason: "must be at most 60 s".into() });
        }
        let source_max_bytes = match optional("SOURCE_MAX_BYTES") {
            None => 512 * 1024 * 1024,
            Some(raw) => raw.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| ConfigError::Malformed {
                name: "SOURCE_MAX_BYTES",
                reason: format!("'{raw}' is not a positive number of bytes"),
            })?,
        };
        let access = access(&optional)?;
        let sources_signer = match (optional("SOURCES_SIGNING_KEY"), &access) {
            (Some(key), _) if key.chars().count() < MIN_SIGNING_KEY_CHARS => {
                return Err(ConfigError::Malformed {
                    name: "SOURCES_SIGNING_KEY",
                    reason: format!("must be at least {MIN_SIGNING_KEY_CHARS} characters (e.g. openssl rand -hex 32)"),
                })
            }
            (Some(key), _) => Some(LinkSigner::new(Secret::from(key))),
            (None, Access::Open) => None,
            (None, Access::Tokens(_)) => {
                return Err(ConfigError::MissingWithHint {
                    name: "SOURCES_SIGNING_KEY",
                    hint: "it signs the sources links Jenkins downloads from while tokens guard the API (e.g. openssl rand -hex 32)",
                })
            }
        };
        Ok(Self {
            access,
            sources_signer,
            jenkins: JenkinsConfig {
                url: jenkins_url,
                user: optional("JENKINS_USER").unwrap_or_default(),
                token: Secret::from(optional("JENKINS_TOKEN").unwrap_or_default()),
            },
            poller: PollerConfig {
                interval: duration("POLL_INTERVAL", Duration::from_secs(2))?,
                window,
                source_max_bytes,
                stale_after: duration("POLL_STALE_AFTER", Duration::from_secs(5 * 60))?,
                dead_letter_queue_url: optional("POLL_DEAD_LETTER_QUEUE_URL"),
            },
            table_name: required("TABLE_NAME")?,
            s3_bucket: required("S3_BUCKET")?,
            poll_queue_url: required("POLL_QUEUE_URL")?,
            kms_key_id: required("KMS_KEY_ID")?,
            shuttle_host,
            extra_build_args,
            image_tag_prefix,
            kafka_topic: optional("KAFKA_TOPIC").unwrap_or_else(|| "alamobuildlogs".to_owned()),
            webhook_signing_secret: match optional("WEBHOOK_SIGNING_SECRET") {
                None => None,
                Some(raw) => Some(SigningSecret::parse(&raw).ok_or_else(|| ConfigError::Malformed {
                    name: "WEBHOOK_SIGNING_SECRET",
                    reason: "must be a Standard Webhooks secret: whsec_ followed by base64 (at least one byte)".to_owned(),
                })?),
            },
            build_timeout: duration("BUILD_TIMEOUT", Duration::from_secs(20 * 60))?,
            queue_timeout: duration("QUEUE_TIMEOUT", Duration::from_secs(30 * 60))?,
            sources_link_ttl: duration("SOURCES_LINK_TTL", Duration::from_secs(15 * 60))?,
            build_retention: duration("BUILD_RETENTION", DEFAULT_BUILD_RETENTION)?,
            allowed_private: match optional("ALLOWED_PRIVATE_CIDRS") {
                None => AllowedNetworks::none(),
                Some(raw) => raw.parse().map_err(|reason| ConfigError::Malformed { name: "ALLOWED_PRIVATE_CIDRS", reason })?,
            },
        })
    }
}

/// `BUILD_RETENTION`'s default: finished builds are kept 90 days.
pub const DEFAULT_BUILD_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// How much longer than `QUEUE_TIMEOUT + BUILD_TIMEOUT` a sources link for Jenkins lives (SPEC
/// §4): the poller notices a timeout only at its next look, and Jenkins' clock may differ from
/// ours.
pub const SOURCES_LINK_MARGIN: Duration = Duration::from_secs(5 * 60);

impl Settings {
    /// The link Jenkins downloads a build's sources from (SPEC §4): signed when a signing key
    /// is set, and valid for as long as the build may wait in the queue and then run, and
    /// [`SOURCES_LINK_MARGIN`] more.
    pub fn sources_link_for_jenkins(&self, source_id: uuid::Uuid, now_ms: u64) -> String {
        match &self.sources_signer {
            Some(signer) => {
                signer.link(&self.shuttle_host, source_id, now_ms, self.queue_timeout + self.build_timeout + SOURCES_LINK_MARGIN)
            }
            None => crate::access::unsigned_link(&self.shuttle_host, source_id),
        }
    }
}

/// `SHUTTLE_API_TOKENS` (comma-separated, several during a rotation) or `SHUTTLE_OPEN_MODE=true`.
fn access(optional: &impl Fn(&'static str) -> Option<String>) -> Result<Access, ConfigError> {
    let open = match optional("SHUTTLE_OPEN_MODE").map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ConfigError::Malformed { name: "SHUTTLE_OPEN_MODE", reason: "must be true or false".into() }),
    };
    let tokens: Vec<String> = optional("SHUTTLE_API_TOKENS")
        .map(|raw| raw.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    match (open, tokens.is_empty()) {
        (true, true) => Ok(Access::Open),
        (true, false) => Err(ConfigError::Malformed {
            name: "SHUTTLE_OPEN_MODE",
            reason: "is true while SHUTTLE_API_TOKENS is set: unset one of them".into(),
        }),
        (false, true) => Err(ConfigError::MissingWithHint {
            name: "SHUTTLE_API_TOKENS",
            hint: "give the callers' tokens, comma-separated, or set SHUTTLE_OPEN_MODE=true for controllers that send none",
        }),
        (false, false) => {
            if let Some(position) = tokens.iter().position(|t| t.chars().count() < MIN_SECRET_CHARS || t.chars().any(char::is_whitespace)) {
                return Err(ConfigError::Malformed {
                    name: "SHUTTLE_API_TOKENS",
                    reason: format!("token {} of the list is shorter than {MIN_SECRET_CHARS} characters or holds a space", position + 1),
                });
            }
            Ok(Access::Tokens(tokens.into_iter().map(Secret::from).collect()))
        }
    }
}

/// `90` (seconds), `90s`, `20m`, `2h`, `500ms`, `30d` (humantime's units, and combinations such
/// as `1h 30m`); zero is refused.
fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let duration = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(raw.parse().ok()?)
    } else {
        humantime::parse_duration(raw).ok()?
    };
    (!duration.is_zero()).then_some(duration)
}

fn parse_extra_build_args(raw: &str) -> Result<BTreeMap<String, String>, String> {
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(raw).map_err(|e| format!("must be a JSON object of strings, e.g. {{\"NODE_ENV\":\"production\"}} ({e})"))?;
    map.into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(s) if is_argument_name(&name) => Ok((name, s)),
            serde_json::Value::String(_) => Err(format!("'{name}' is not a valid argument name")),
            _ => Err(format!("the value of '{name}' must be a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn base() -> HashMap<&'static str, String> {
        [
            ("TABLE_NAME", "builds"),
            ("S3_BUCKET", "sources"),
            ("POLL_QUEUE_URL", "http://127.0.0.1:5000/123/poll"),
            ("KMS_KEY_ID", "key"),
            ("BUILD_SHUTTLE_HOST", "http://127.0.0.1:3000"),
            ("JENKINS_URL", "http://127.0.0.1:8080"),
            ("SHUTTLE_API_TOKENS", "caller-token-0123456789"),
            ("SOURCES_SIGNING_KEY", "a-sources-signing-key-of-32-chars!"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
    }

    fn load(env: &HashMap<&'static str, String>) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| env.get(name).cloned())
    }

    #[test]
    fn defaults_apply() {
        let settings = load(&base()).unwrap();
        assert_eq!(settings.image_tag_prefix, "1");
        assert_eq!(settings.kafka_topic, "alamobuildlogs");
        assert_eq!(settings.build_timeout, Duration::from_secs(1200));
        assert_eq!((settings.poller.interval, settings.poller.window), (Duration::from_secs(2), Duration::from_secs(20)));
    }

    #[test]
    fn the_jenkins_token_never_shows_in_debug() {
        let mut env = base();
        env.insert("JENKINS_TOKEN", "canary-token-1234".into());
        let settings = load(&env).unwrap();
        assert_eq!(settings.jenkins.token.expose_secret(), "canary-token-1234");
        assert!(!format!("{settings:?}").contains("canary-token-1234"));
    }

    #[test]
    fn each_missing_setting_is_named() {
        for name in ["TABLE_NAME", "S3_BUCKET", "POLL_QUEUE_URL", "KMS_KEY_ID", "BUILD_SHUTTLE_HOST", "JENKINS_URL"] {
            let mut env = base();
            env.remove(name);
            let err = load(&env).unwrap_err();
            assert_eq!(err, ConfigError::Missing(name));
            assert!(err.to_string().contains(name));
        }
    }

    #[test]
    fn malformed_settings_are_named() {
        for (name, value) in [
            ("EXTRA_BUILD_ARGS", "[1]"),
            ("EXTRA_BUILD_ARGS", "{\"1X\":\"y\"}"),
            ("EXTRA_BUILD_ARGS", "{\"X\":1}"),
            ("BUILD_TIMEOUT", "soon"),
            ("BUILD_TIMEOUT", "0"),
            ("BUILD_SHUTTLE_HOST", "shuttle.example.com"),
            ("IMAGE_TAG_PREFIX", "a b"),
            ("JENKINS_URL", "jenkins"),
            ("JENKINS_URL", "http://admin:token@jenkins.example.com"),
            ("LOG_WINDOW", "5m"),
            ("POLL_INTERVAL", "fast"),
            ("SOURCE_MAX_BYTES", "0"),
            ("ALLOWED_PRIVATE_CIDRS", "10.0.0.0/8;192.168.0.0/16"),
        ] {
            let mut env = base();
            env.insert(name, value.to_owned());
            match load(&env) {
                Err(ConfigError::Malformed { name: named, .. }) => assert_eq!(named, name, "{value}"),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn tokens_are_a_comma_separated_list_or_open_mode_is_chosen() {
        let mut env = base();
        env.insert("SHUTTLE_API_TOKENS", " old-token-0123456789 , new-token-0123456789 ,".into());
        let settings = load(&env).unwrap();
        assert!(settings.access.admits(Some("old-token-0123456789")) && settings.access.admits(Some("new-token-0123456789")));
        assert!(!settings.access.admits(None));
        assert!(!format!("{settings:?}").contains("token-0123456789"), "tokens show in Debug");

        env.remove("SHUTTLE_API_TOKENS");
        env.remove("SOURCES_SIGNING_KEY");
        assert_eq!(
            load(&env).unwrap_err(),
            ConfigError::MissingWithHint {
                name: "SHUTTLE_API_TOKENS",
                hint: "give the callers' tokens, comma-separated, or set SHUTTLE_OPEN_MODE=true for controllers that send none"
            }
        );
        env.insert("SHUTTLE_OPEN_MODE", "true".into());
        let open = load(&env).unwrap();
        assert!(open.access.admits(None));
        assert!(open.sources_signer.is_none(), "open mode without a key signs nothing");
    }

    #[test]
    fn access_settings_that_cannot_work_are_named() {
        let cases: [&[(&'static str, &str)]; 5] = [
            &[("SHUTTLE_API_TOKENS", "short")],
            &[("SHUTTLE_API_TOKENS", "caller-token-0123456789,with a space in it")],
            &[("SHUTTLE_OPEN_MODE", "yes")],
            &[("SHUTTLE_OPEN_MODE", "true")],
            &[("SOURCES_SIGNING_KEY", "too-short-a-key")],
        ];
        for case in cases {
            let mut env = base();
            env.extend(case.iter().map(|(name, value)| (*name, (*value).to_owned())));
            match load(&env) {
                Err(ConfigError::Malformed { name, .. }) => assert_eq!(name, case[0].0, "{case:?}"),
                other => panic!("{case:?}: {other:?}"),
            }
        }
        let mut env = base();
        env.remove("SOURCES_SIGNING_KEY");
        assert!(matches!(load(&env), Err(ConfigError::MissingWithHint { name: "SOURCES_SIGNING_KEY", .. })));
    }

    #[test]
    fn the_sources_link_for_jenkins_lives_the_queue_and_build_timeouts_and_a_margin() {
        let mut env = base();
        env.insert("QUEUE_TIMEOUT", "10m".into());
        env.insert("BUILD_TIMEOUT", "20m".into());
        let settings = load(&env).unwrap();
        let link = settings.sources_link_for_jenkins(uuid::Uuid::nil(), 1_000_000_000_000);
        let expires: u64 =
            link.split("expires=").nth(1).and_then(|rest| rest.split('&').next()).and_then(|e| e.parse().ok()).expect("expires");
        assert_eq!(expires, 1_000_000_000 + 10 * 60 + 20 * 60 + SOURCES_LINK_MARGIN.as_secs(), "{link}");
    }

    #[test]
    fn durations_and_extra_args_parse() {
        let mut env = base();
        env.insert("BUILD_TIMEOUT", "5m".into());
        env.insert("QUEUE_TIMEOUT", "90".into());
        env.insert("BUILD_RETENTION", "30d".into());
        env.insert("EXTRA_BUILD_ARGS", "{\"NODE_ENV\":\"production\"}".into());
        let settings = load(&env).unwrap();
        assert_eq!(settings.build_retention, Duration::from_secs(30 * 86_400));
        assert_eq!(load(&base()).unwrap().build_retention, DEFAULT_BUILD_RETENTION);
        assert_eq!(settings.build_timeout, Duration::from_secs(300));
        assert_eq!(settings.queue_timeout, Duration::from_secs(90));
        assert_eq!(settings.extra_build_args.get("NODE_ENV").map(String::as_str), Some("production"));
        for (raw, expected) in [
            ("500ms", Some(500)),
            ("1h 30m", Some(5_400_000)),
            ("90", Some(90_000)),
            ("0", None),
            ("0s", None),
            ("soon", None),
            ("-5s", None),
            ("", None),
        ] {
            assert_eq!(parse_duration(raw), expected.map(Duration::from_millis), "{raw:?}");
        }
    }

    #[test]
    fn allowed_private_cidrs_are_optional() {
        assert!(load(&base()).unwrap().allowed_private.is_empty(), "nothing is allowed by default");
        let mut env = base();
        env.insert("ALLOWED_PRIVATE_CIDRS", "10.0.0.0/8, fd00::/8".into());
        let settings = load(&env).unwrap();
        assert!(settings.allowed_private.contains("10.1.2.3".parse().unwrap()));
        assert!(!settings.allowed_private.contains("192.168.1.1".parse().unwrap()));
    }
}
