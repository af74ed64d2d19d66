//! Settings (SPEC §6), read once at start by the function that needs them. Each reader names
//! its variable, so a function reads only its own and a missing or malformed one is an error
//! naming it. Here is what the domain decides; what the adapters need (table, bucket, queue,
//! key, Jenkins) is read in `shuttle_adapters::wiring`, through the same [`Env`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::access::{Access, LinkSigner, MIN_SECRET_CHARS};
use crate::delivery::SigningSecret;
use crate::netguard::{AllowedBrokers, AllowedNetworks};
use crate::request::is_argument_name;
use crate::secrets::{json_field, Keyed, SecretSource};

/// A secret setting (a token, a key): `secrecy`'s string, whose `Debug` never shows it and
/// whose memory is zeroed on drop; read with [`secrecy::ExposeSecret::expose_secret`].
pub use secrecy::{ExposeSecret, SecretString as Secret};

/// The longest `LOG_WINDOW`: a poll must end well inside the poller's 90 s timeout.
pub const MAX_LOG_WINDOW: Duration = Duration::from_secs(60);

/// The shortest `SOURCES_SIGNING_KEY` taken: an HMAC-SHA-256 key of at least 256 bits of text.
pub const MIN_SIGNING_KEY_CHARS: usize = 32;

/// `BUILD_RETENTION`'s default: finished builds are kept 90 days.
pub const DEFAULT_BUILD_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// `SOURCES_LINK_TTL`'s default: how long a `GET /{build_uuid}` redirect stays valid.
pub const DEFAULT_SOURCES_LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// How much longer than `QUEUE_TIMEOUT + BUILD_TIMEOUT` a sources link for Jenkins lives (SPEC
/// §4): the poller notices a timeout only at its next look, and Jenkins' clock may differ from
/// ours.
pub const SOURCES_LINK_MARGIN: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("setting {0} is required but not set")]
    Missing(&'static str),
    #[error("setting {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
    #[error("setting {name} is required but not set: {hint}")]
    MissingWithHint { name: &'static str, hint: &'static str },
}

/// Reads one setting by name.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Where settings come from: the process environment, or a map in tests. A value is trimmed,
/// and an empty one is not set.
pub struct Env<'a> {
    lookup: Lookup<'a>,
}

impl Env<'static> {
    /// The process environment.
    pub fn from_process() -> Self {
        Env::from_lookup(|name| std::env::var(name).ok())
    }
}

impl<'a> Env<'a> {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Self { lookup: Box::new(lookup) }
    }

    pub fn optional(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// A duration (seconds, or numbers with units), `default` when not set.
    pub fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => parse_duration(&raw).ok_or_else(|| ConfigError::Malformed {
                name,
                reason: format!("'{raw}' is not a duration (seconds, or numbers with units: 500ms, 90s, 20m, 2h, 30d)"),
            }),
        }
    }

    /// A positive whole number, `default` when not set.
    pub fn positive(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::Malformed { name, reason: format!("'{raw}' is not a positive whole number") }),
        }
    }

    /// A required absolute `http(s)` URL.
    pub fn http_url(&self, name: &'static str, example: &str) -> Result<Url, ConfigError> {
        Url::parse(&self.required(name)?)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| ConfigError::Malformed { name, reason: format!("must be an absolute http(s) URL such as {example}") })
    }

    /// `BUILD_SHUTTLE_HOST`: the public base URL of the shuttle, used in sources links and
    /// recognised in rebuilds.
    pub fn shuttle_host(&self) -> Result<Url, ConfigError> {
        self.http_url("BUILD_SHUTTLE_HOST", "https://shuttle.example.com")
    }

    /// `SHUTTLE_OPEN_MODE`: `true` for controllers that send no token.
    pub fn open_mode(&self) -> Result<bool, ConfigError> {
        match self.optional("SHUTTLE_OPEN_MODE").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(ConfigError::Malformed { name: "SHUTTLE_OPEN_MODE", reason: "must be true or false".into() }),
        }
    }

    /// Who may call the API: `SHUTTLE_API_TOKENS` (comma-separated, several during a rotation)
    /// or `SHUTTLE_OPEN_MODE=true`.
    pub fn access(&self) -> Result<Access, ConfigError> {
        let open = self.open_mode()?;
        let tokens = self.optional("SHUTTLE_API_TOKENS").map(|raw| token_list(&raw)).unwrap_or_default();
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
            (false, false) => checked_tokens(tokens).map_err(|reason| ConfigError::Malformed { name: "SHUTTLE_API_TOKENS", reason }),
        }
    }

    /// Who may call the API, as the functions get it: from `ACCESS_SECRET_ID` (a Secrets
    /// Manager secret `{"tokens": "…", "sources_signing_key": "…"}`, read at run time through
    /// `secrets`) unless the API is open, else as [`Env::access`] reads the environment.
    pub fn keyed_access(&self, secrets: &SecretStore<'_>) -> Result<Keyed<Access>, ConfigError> {
        match self.optional("ACCESS_SECRET_ID") {
            Some(id) if !self.open_mode()? => {
                Ok(Keyed::Managed { source: secrets(&id), read: access_from_secret, setting: "ACCESS_SECRET_ID" })
            }
            _ => self.access().map(Keyed::given),
        }
    }

    /// The sources links' signer, as the functions get it: the `sources_signing_key` of
    /// `ACCESS_SECRET_ID` read at run time, else [`Env::sources_signer`].
    pub fn keyed_sources_signer(&self, secrets: &SecretStore<'_>) -> Result<Keyed<Option<LinkSigner>>, ConfigError> {
        let open_mode = self.open_mode()?;
        match self.optional("ACCESS_SECRET_ID") {
            Some(id) => Ok(Keyed::Managed { source: secrets(&id), read: signer_from_secret, setting: "ACCESS_SECRET_ID" }),
            None => self.sources_signer(open_mode).map(Keyed::given),
        }
    }

    /// The status webhooks' signing secret: `WEBHOOK_SIGNING_SECRET_ID` read at run time, else
    /// `WEBHOOK_SIGNING_SECRET`, else none (not signed).
    pub fn keyed_webhook_signing(&self, secrets: &SecretStore<'_>) -> Result<Keyed<Option<SigningSecret>>, ConfigError> {
        if let Some(id) = self.optional("WEBHOOK_SIGNING_SECRET_ID") {
            return Ok(Keyed::Managed { source: secrets(&id), read: webhook_secret_from_secret, setting: "WEBHOOK_SIGNING_SECRET_ID" });
        }
        match self.optional("WEBHOOK_SIGNING_SECRET") {
            None => Ok(Keyed::given(None)),
            Some(raw) => SigningSecret::parse(&raw)
                .map(|secret| Keyed::given(Some(secret)))
                .ok_or_else(|| ConfigError::Malformed { name: "WEBHOOK_SIGNING_SECRET", reason: WHSEC.to_owned() }),
        }
    }

    /// `SOURCES_SIGNING_KEY`: signs the sources links handed to Jenkins. Required unless the API
    /// is open (`open_mode`), where links go unsigned when it is not set.
    pub fn sources_signer(&self, open_mode: bool) -> Result<Option<LinkSigner>, ConfigError> {
        match self.optional("SOURCES_SIGNING_KEY") {
            Some(key) => {
                checked_signing_key(key).map(Some).map_err(|reason| ConfigError::Malformed { name: "SOURCES_SIGNING_KEY", reason })
            }
            None if open_mode => Ok(None),
            None => Err(ConfigError::MissingWithHint {
                name: "SOURCES_SIGNING_KEY",
                hint: "it signs the sources links Jenkins downloads from while tokens guard the API (e.g. openssl rand -hex 32)",
            }),
        }
    }

    /// `ALLOWED_PRIVATE_CIDRS`: the refused ranges user-supplied URLs may reach all the same
    /// (SPEC §7); never link-local or the metadata service.
    pub fn allowed_private(&self) -> Result<AllowedNetworks, ConfigError> {
        match self.optional("ALLOWED_PRIVATE_CIDRS") {
            None => Ok(AllowedNetworks::none()),
            Some(raw) => raw.parse().map_err(|reason| ConfigError::Malformed { name: "ALLOWED_PRIVATE_CIDRS", reason }),
        }
    }

    /// `KAFKA_ALLOWED_BROKERS`: the only Kafka brokers dialled; unset, any the guard allows.
    pub fn allowed_brokers(&self) -> Result<AllowedBrokers, ConfigError> {
        match self.optional("KAFKA_ALLOWED_BROKERS") {
            None => Ok(AllowedBrokers::any()),
            Some(raw) => raw.parse().map_err(|reason| ConfigError::Malformed { name: "KAFKA_ALLOWED_BROKERS", reason }),
        }
    }

    /// `KAFKA_TOPIC`: the topic of legacy Kafka log targets.
    pub fn kafka_topic(&self) -> String {
        self.optional("KAFKA_TOPIC").unwrap_or_else(|| "alamobuildlogs".to_owned())
    }
}

/// Makes the [`SecretSource`] of a secret's name or ARN (Secrets Manager, in the adapters).
pub type SecretStore<'s> = dyn Fn(&str) -> Arc<dyn SecretSource> + 's;

const WHSEC: &str = "must be a Standard Webhooks secret: whsec_ followed by base64 (at least one byte)";

/// A comma-separated list of tokens, blanks left out.
fn token_list(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// The callers' tokens: each at least [`MIN_SECRET_CHARS`] long, without a space.
fn checked_tokens(tokens: Vec<String>) -> Result<Access, String> {
    if let Some(position) = tokens.iter().position(|t| t.chars().count() < MIN_SECRET_CHARS || t.chars().any(char::is_whitespace)) {
        return Err(format!("token {} of the list is shorter than {MIN_SECRET_CHARS} characters or holds a space", position + 1));
    }
    Ok(Access::Tokens(tokens.into_iter().map(Secret::from).collect()))
}

fn checked_signing_key(key: String) -> Result<LinkSigner, String> {
    if key.chars().count() < MIN_SIGNING_KEY_CHARS {
        return Err(format!("must be at least {MIN_SIGNING_KEY_CHARS} characters (e.g. openssl rand -hex 32)"));
    }
    Ok(LinkSigner::new(Secret::from(key)))
}

/// The `tokens` of an `ACCESS_SECRET_ID` secret (comma-separated, several during a rotation).
fn access_from_secret(text: &str) -> Result<Access, String> {
    let tokens = json_field(text, "tokens")?.ok_or("has no tokens")?;
    checked_tokens(token_list(&tokens)).map_err(|why| format!("tokens: {why}"))
}

/// The `sources_signing_key` of an `ACCESS_SECRET_ID` secret.
fn signer_from_secret(text: &str) -> Result<Option<LinkSigner>, String> {
    let key = json_field(text, "sources_signing_key")?.ok_or("has no sources_signing_key")?;
    checked_signing_key(key).map(Some).map_err(|why| format!("sources_signing_key {why}"))
}

/// A `WEBHOOK_SIGNING_SECRET_ID` secret: the `whsec_…` key itself.
fn webhook_secret_from_secret(text: &str) -> Result<Option<SigningSecret>, String> {
    SigningSecret::parse(text.trim()).map(Some).ok_or_else(|| WHSEC.to_owned())
}

/// What a create decides with (the create function).
#[derive(Clone, Debug)]
pub struct CreatePolicy {
    pub shuttle_host: Url,
    pub allowed_private: AllowedNetworks,
    pub kafka_topic: String,
}

impl CreatePolicy {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self { shuttle_host: env.shuttle_host()?, allowed_private: env.allowed_private()?, kafka_topic: env.kafka_topic() })
    }
}

/// What the poller decides with.
#[derive(Clone, Debug)]
pub struct PollPolicy {
    pub shuttle_host: Url,
    pub extra_build_args: BTreeMap<String, String>,
    pub image_tag_prefix: String,
    pub kafka_topic: String,
    /// `WEBHOOK_SIGNING_SECRET` (`whsec_…`, or read at run time from
    /// `WEBHOOK_SIGNING_SECRET_ID`): status webhooks carry Standard Webhooks signatures.
    pub webhook_signing_secret: Keyed<Option<SigningSecret>>,
    pub build_timeout: Duration,
    pub queue_timeout: Duration,
    /// Signs the sources links handed to Jenkins; `None` in open mode without a key.
    pub sources_signer: Keyed<Option<LinkSigner>>,
    pub allowed_private: AllowedNetworks,
    pub pacing: Pacing,
}

/// How the poller paces itself.
#[derive(Clone, Debug)]
pub struct Pacing {
    /// `POLL_INTERVAL`: the delay between two looks at a build waiting in Jenkins' queue, and
    /// between two log reads of a running build.
    pub interval: Duration,
    /// `LOG_WINDOW`: how long one poll tails a running build before handing it to the next
    /// poll (≤ 60 s: always well inside the poller's own timeout).
    pub window: Duration,
    /// `POLL_STALE_AFTER`: the schedule re-drives an unfinished build whose last poll is older.
    /// Longer than a poll's lease (`LOG_WINDOW` + 60 s) to leave running polls alone.
    pub stale_after: Duration,
}

impl PollPolicy {
    /// The poller's settings; its secrets read at run time through `secrets` when their
    /// `…_SECRET_ID` is set.
    pub fn from_env(env: &Env<'_>, secrets: &SecretStore<'_>) -> Result<Self, ConfigError> {
        let extra_build_args = match env.optional("EXTRA_BUILD_ARGS") {
            None => BTreeMap::new(),
            Some(raw) => parse_extra_build_args(&raw).map_err(|reason| ConfigError::Malformed { name: "EXTRA_BUILD_ARGS", reason })?,
        };
        let image_tag_prefix = env.optional("IMAGE_TAG_PREFIX").unwrap_or_else(|| "1".to_owned());
        if !image_tag_prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(ConfigError::Malformed { name: "IMAGE_TAG_PREFIX", reason: "must be a docker tag fragment such as 1".into() });
        }
        let window = env.duration("LOG_WINDOW", Duration::from_secs(20))?;
        if window > MAX_LOG_WINDOW {
            return Err(ConfigError::Malformed { name: "LOG_WINDOW", reason: "must be at most 60 s".into() });
        }
        let webhook_signing_secret = env.keyed_webhook_signing(secrets)?;
        Ok(Self {
            shuttle_host: env.shuttle_host()?,
            extra_build_args,
            image_tag_prefix,
            kafka_topic: env.kafka_topic(),
            webhook_signing_secret,
            build_timeout: env.duration("BUILD_TIMEOUT", Duration::from_secs(20 * 60))?,
            queue_timeout: env.duration("QUEUE_TIMEOUT", Duration::from_secs(30 * 60))?,
            sources_signer: env.keyed_sources_signer(secrets)?,
            allowed_private: env.allowed_private()?,
            pacing: Pacing {
                interval: env.duration("POLL_INTERVAL", Duration::from_secs(2))?,
                window,
                stale_after: env.duration("POLL_STALE_AFTER", Duration::from_secs(5 * 60))?,
            },
        })
    }

    /// The link Jenkins downloads a build's sources from (SPEC §4): signed when a signing key
    /// is set, and valid for as long as the build may wait in the queue and then run, and
    /// [`SOURCES_LINK_MARGIN`] more.
    pub fn sources_link_for_jenkins(&self, signer: Option<&LinkSigner>, source_id: uuid::Uuid, now_ms: u64) -> String {
        match signer {
            Some(signer) => {
                signer.link(&self.shuttle_host, source_id, now_ms, self.queue_timeout + self.build_timeout + SOURCES_LINK_MARGIN)
            }
            None => crate::access::unsigned_link(&self.shuttle_host, source_id),
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
            ("BUILD_SHUTTLE_HOST", "http://127.0.0.1:3000"),
            ("SHUTTLE_API_TOKENS", "caller-token-0123456789"),
            ("SOURCES_SIGNING_KEY", "a-sources-signing-key-of-32-chars!"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
    }

    fn env<'a>(map: &'a HashMap<&'static str, String>) -> Env<'a> {
        Env::from_lookup(|name| map.get(name).cloned())
    }

    fn poll_policy(map: &HashMap<&'static str, String>) -> Result<PollPolicy, ConfigError> {
        PollPolicy::from_env(&env(map), &|id| panic!("no secret store here, yet {id} was asked for"))
    }

    /// A secret store of one secret, whose text a test changes (a rotation).
    #[derive(Default)]
    struct Store(std::sync::Mutex<String>);

    #[async_trait::async_trait]
    impl SecretSource for Store {
        async fn current(&self) -> Result<Secret, crate::error::ServiceError> {
            Ok(Secret::from(self.0.lock().unwrap().clone()))
        }
    }

    #[tokio::test]
    async fn with_access_secret_id_the_tokens_and_the_signing_key_are_read_at_each_use() {
        let store = Arc::new(Store::default());
        let stored = |tokens: &str, key: &str| {
            *store.0.lock().unwrap() = serde_json::json!({"tokens": tokens, "sources_signing_key": key}).to_string()
        };
        stored("first-caller-token-0123", "a-sources-signing-key-of-32-chars!");
        let mut map = base();
        map.remove("SHUTTLE_API_TOKENS");
        map.remove("SOURCES_SIGNING_KEY");
        map.insert("ACCESS_SECRET_ID", "shuttle/access".into());
        let secrets = |id: &str| -> Arc<dyn SecretSource> {
            assert_eq!(id, "shuttle/access");
            store.clone()
        };
        let access = env(&map).keyed_access(&secrets).expect("no token in the environment is needed");
        let policy = PollPolicy::from_env(&env(&map), &secrets).unwrap();
        assert!(access.get().await.unwrap().admits(Some("first-caller-token-0123")));
        let link = policy.sources_link_for_jenkins(policy.sources_signer.get().await.unwrap().as_ref().as_ref(), uuid::Uuid::nil(), 0);
        assert!(link.contains("signature="), "{link}");

        // Rotated in the store: the next use takes the new tokens, no restart.
        stored("first-caller-token-0123,second-caller-token-456", "a-sources-signing-key-of-32-chars!");
        assert!(access.get().await.unwrap().admits(Some("second-caller-token-456")));
        stored("second-caller-token-456", "a-sources-signing-key-of-32-chars!");
        assert!(!access.get().await.unwrap().admits(Some("first-caller-token-0123")), "the retired token is refused");

        // A secret that cannot work is named, its text not shown.
        stored("short", "a-sources-signing-key-of-32-chars!");
        let error = access.get().await.unwrap_err().to_string();
        assert!(error.contains("ACCESS_SECRET_ID") && error.contains("shorter than 16") && !error.contains("short,"), "{error}");
        *store.0.lock().unwrap() = "not json".into();
        assert!(policy.sources_signer.get().await.unwrap_err().to_string().contains("is not a JSON object"));
    }

    #[test]
    fn defaults_apply() {
        let policy = poll_policy(&base()).unwrap();
        assert_eq!(policy.image_tag_prefix, "1");
        assert_eq!(policy.kafka_topic, "alamobuildlogs");
        assert_eq!(policy.build_timeout, Duration::from_secs(1200));
        assert_eq!((policy.pacing.interval, policy.pacing.window), (Duration::from_secs(2), Duration::from_secs(20)));
        assert_eq!(CreatePolicy::from_env(&env(&base())).unwrap().kafka_topic, "alamobuildlogs");
    }

    #[test]
    fn each_missing_setting_is_named() {
        let mut map = base();
        map.remove("BUILD_SHUTTLE_HOST");
        for error in [poll_policy(&map).unwrap_err(), CreatePolicy::from_env(&env(&map)).unwrap_err()] {
            assert_eq!(error, ConfigError::Missing("BUILD_SHUTTLE_HOST"));
            assert!(error.to_string().contains("BUILD_SHUTTLE_HOST"));
        }
        assert_eq!(env(&map).required("TABLE_NAME"), Err(ConfigError::Missing("TABLE_NAME")));
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
            ("LOG_WINDOW", "5m"),
            ("POLL_INTERVAL", "fast"),
            ("ALLOWED_PRIVATE_CIDRS", "10.0.0.0/8;192.168.0.0/16"),
            ("WEBHOOK_SIGNING_SECRET", "not-whsec"),
        ] {
            let mut map = base();
            map.insert(name, value.to_owned());
            match poll_policy(&map) {
                Err(ConfigError::Malformed { name: named, .. }) => assert_eq!(named, name, "{value}"),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
        let map = HashMap::from([("SOURCE_MAX_BYTES", "0".to_owned())]);
        assert!(matches!(env(&map).positive("SOURCE_MAX_BYTES", 1), Err(ConfigError::Malformed { name: "SOURCE_MAX_BYTES", .. })));
    }

    #[test]
    fn tokens_are_a_comma_separated_list_or_open_mode_is_chosen() {
        let mut map = base();
        map.insert("SHUTTLE_API_TOKENS", " old-token-0123456789 , new-token-0123456789 ,".into());
        let access = env(&map).access().unwrap();
        assert!(access.admits(Some("old-token-0123456789")) && access.admits(Some("new-token-0123456789")));
        assert!(!access.admits(None));
        assert!(!format!("{access:?}").contains("token-0123456789"), "tokens show in Debug");

        map.remove("SHUTTLE_API_TOKENS");
        map.remove("SOURCES_SIGNING_KEY");
        assert_eq!(
            env(&map).access().unwrap_err(),
            ConfigError::MissingWithHint {
                name: "SHUTTLE_API_TOKENS",
                hint: "give the callers' tokens, comma-separated, or set SHUTTLE_OPEN_MODE=true for controllers that send none"
            }
        );
        map.insert("SHUTTLE_OPEN_MODE", "true".into());
        assert!(env(&map).access().unwrap().admits(None));
        assert!(poll_policy(&map).unwrap().sources_signer.given_value().unwrap().is_none(), "open mode without a key signs nothing");
    }

    #[test]
    fn access_settings_that_cannot_work_are_named() {
        let cases: [&[(&'static str, &str)]; 4] = [
            &[("SHUTTLE_API_TOKENS", "short")],
            &[("SHUTTLE_API_TOKENS", "caller-token-0123456789,with a space in it")],
            &[("SHUTTLE_OPEN_MODE", "yes")],
            &[("SHUTTLE_OPEN_MODE", "true")],
        ];
        for case in cases {
            let mut map = base();
            map.extend(case.iter().map(|(name, value)| (*name, (*value).to_owned())));
            let access = env(&map).access();
            match access {
                Err(ConfigError::Malformed { name, .. }) => assert_eq!(name, case[0].0, "{case:?}"),
                other => panic!("{case:?}: {other:?}"),
            }
        }
        let mut map = base();
        map.insert("SOURCES_SIGNING_KEY", "too-short-a-key".into());
        assert!(matches!(poll_policy(&map), Err(ConfigError::Malformed { name: "SOURCES_SIGNING_KEY", .. })));
        map.remove("SOURCES_SIGNING_KEY");
        assert!(matches!(poll_policy(&map), Err(ConfigError::MissingWithHint { name: "SOURCES_SIGNING_KEY", .. })));
    }

    #[test]
    fn the_sources_link_for_jenkins_lives_the_queue_and_build_timeouts_and_a_margin() {
        let mut map = base();
        map.insert("QUEUE_TIMEOUT", "10m".into());
        map.insert("BUILD_TIMEOUT", "20m".into());
        let policy = poll_policy(&map).unwrap();
        let link =
            policy.sources_link_for_jenkins(policy.sources_signer.given_value().unwrap().as_ref(), uuid::Uuid::nil(), 1_000_000_000_000);
        let expires: u64 =
            link.split("expires=").nth(1).and_then(|rest| rest.split('&').next()).and_then(|e| e.parse().ok()).expect("expires");
        assert_eq!(expires, 1_000_000_000 + 10 * 60 + 20 * 60 + SOURCES_LINK_MARGIN.as_secs(), "{link}");
    }

    #[test]
    fn durations_and_extra_args_parse() {
        let mut map = base();
        map.insert("BUILD_TIMEOUT", "5m".into());
        map.insert("QUEUE_TIMEOUT", "90".into());
        map.insert("BUILD_RETENTION", "30d".into());
        map.insert("EXTRA_BUILD_ARGS", "{\"NODE_ENV\":\"production\"}".into());
        let policy = poll_policy(&map).unwrap();
        assert_eq!(env(&map).duration("BUILD_RETENTION", DEFAULT_BUILD_RETENTION), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(env(&base()).duration("BUILD_RETENTION", DEFAULT_BUILD_RETENTION), Ok(DEFAULT_BUILD_RETENTION));
        assert_eq!(policy.build_timeout, Duration::from_secs(300));
        assert_eq!(policy.queue_timeout, Duration::from_secs(90));
        assert_eq!(policy.extra_build_args.get("NODE_ENV").map(String::as_str), Some("production"));
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
        assert!(env(&base()).allowed_private().unwrap().is_empty(), "nothing is allowed by default");
        let mut map = base();
        map.insert("ALLOWED_PRIVATE_CIDRS", "10.0.0.0/8, fd00::/8".into());
        let allowed = env(&map).allowed_private().unwrap();
        assert!(allowed.contains("10.1.2.3".parse().unwrap()));
        assert!(!allowed.contains("192.168.1.1".parse().unwrap()));
    }
}
