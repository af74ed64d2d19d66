//! The composition root: each function's use cases wired to the adapters, once per cold start,
//! from that function's own settings. Each adapter below reads its own variables through the
//! [`Env`], so a function reads only what it uses, and a missing or malformed setting stops it
//! with an error naming it. No network call is made here.

use std::sync::Arc;

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;
use shuttle_core::access::Access;
use shuttle_core::api::{Create, Delete, Logs, SourceLinks, Status, Stop};
use shuttle_core::config::{ConfigError, CreatePolicy, Env, PollPolicy, DEFAULT_BUILD_RETENTION, DEFAULT_SOURCES_LINK_TTL};
use shuttle_core::error::ServiceError;
use shuttle_core::jenkins::JenkinsError;
use shuttle_core::poll::Poller;
use shuttle_core::relay::Webhooks;
use shuttle_core::secrets::{Keyed, SecretSource};

use crate::secrets::{ManagedSecret, SECRET_TTL};
use crate::{
    aws_http, s3, Built, DynamoDbBuildStore, HttpSourceFetcher, HttpWebhookClient, JenkinsClient, JenkinsSettings, KmsSealer,
    RdKafkaClient, S3SourceStore, SqsPollQueue,
};

/// `SOURCE_MAX_BYTES`' default: the largest sources archive downloaded.
pub const DEFAULT_SOURCE_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is missing or malformed; the message names it.
    #[error(transparent)]
    Setting(#[from] ConfigError),
    #[error("could not set up the AWS SDK")]
    Sdk(#[source] ServiceError),
    #[error("could not set up the Jenkins client")]
    Jenkins(#[source] JenkinsError),
    #[error("could not set up the webhook client")]
    Webhooks(#[source] ServiceError),
}

/// Wires a function with `wire`, from the process environment and the SDK configuration.
pub async fn from_env<T>(wire: impl FnOnce(&SdkConfig, &Env<'_>) -> Result<T, StartupError>) -> Result<T, StartupError> {
    let env = Env::from_process();
    let sdk = load_sdk_config().await.map_err(StartupError::Sdk)?;
    wire(&sdk, &env)
}

/// The SDK configuration from the environment: credentials, region and endpoints, with the
/// shuttle's HTTP client ([`aws_http`]: reqwest on the one TLS configuration of [`crate::tls`]).
///
/// Lambda gives every function its region (`AWS_REGION`) and credentials (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) in the environment, where the SDK's default
/// chains look first. Naming them when they are there gives the same region and credentials and
/// skips building the chains' fallbacks (an IMDS client, and an STS client for web identity):
/// ≈0.2 ms of a cold start (issue 7). Without them, the default chains.
pub async fn load_sdk_config() -> Result<SdkConfig, ServiceError> {
    let set = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(aws_http::client()?);
    if let Some(region) = set("AWS_REGION") {
        loader = loader.region(aws_config::Region::new(region));
    }
    if set("AWS_ACCESS_KEY_ID").is_some() && set("AWS_SECRET_ACCESS_KEY").is_some() {
        loader = loader.credentials_provider(aws_config::environment::EnvironmentVariableCredentialsProvider::new());
    }
    Ok(loader.load().await)
}

/// The create function: builds stored (DynamoDB, sealed by KMS), inline sources put in S3, the
/// first poll queued.
pub fn create(sdk: &SdkConfig, env: &Env<'_>) -> Result<Create, StartupError> {
    Ok(Create {
        store: build_store(sdk, env)?,
        sources: source_store(sdk, env)?,
        queue: poll_queue(sdk, env)?,
        sealer: sealer(sdk, env)?,
        policy: CreatePolicy::from_env(env)?,
    })
}

/// The stop function: the stop recorded (DynamoDB), then handed to Jenkins.
pub fn stop(sdk: &SdkConfig, env: &Env<'_>) -> Result<Stop, StartupError> {
    Ok(Stop { store: build_store(sdk, env)?, jenkins: jenkins(sdk, env)? })
}

/// The delete function: the app's builds stopped, then its job deleted.
pub fn delete(sdk: &SdkConfig, env: &Env<'_>) -> Result<Delete, StartupError> {
    Ok(Delete { stop: stop(sdk, env)? })
}

/// The status function: the build read (DynamoDB), and its log (S3).
pub fn status(sdk: &SdkConfig, env: &Env<'_>) -> Result<(Status, Logs), StartupError> {
    let store = build_store(sdk, env)?;
    Ok((Status { store: store.clone() }, Logs { store, sources: source_store(sdk, env)? }))
}

/// The sources function: links presigned (S3), signed links checked.
pub fn source_links(sdk: &SdkConfig, env: &Env<'_>) -> Result<SourceLinks, StartupError> {
    Ok(SourceLinks {
        sources: source_store(sdk, env)?,
        ttl: env.duration("SOURCES_LINK_TTL", DEFAULT_SOURCES_LINK_TTL)?,
        signer: env.keyed_sources_signer(&secret_store(sdk))?,
    })
}

/// The poller: every store, Jenkins, the download of `http(s)` sources into S3 (through the
/// one S3 source store), and the webhook senders. Every user-supplied URL goes through the SSRF
/// guard (SPEC §7), open to `ALLOWED_PRIVATE_CIDRS`.
pub fn poller(sdk: &SdkConfig, env: &Env<'_>) -> Result<Poller, StartupError> {
    let policy = PollPolicy::from_env(env, &secret_store(sdk))?;
    let sources = source_store(sdk, env)?;
    let allowed = policy.allowed_private.clone();
    let max_bytes = env.positive("SOURCE_MAX_BYTES", DEFAULT_SOURCE_MAX_BYTES)?;
    let http = HttpWebhookClient::new(allowed.clone()).map_err(StartupError::Webhooks)?;
    Ok(Poller {
        store: build_store(sdk, env)?,
        fetcher: Arc::new(HttpSourceFetcher::new(sources.clone(), max_bytes, allowed.clone())),
        sources,
        queue: poll_queue(sdk, env)?,
        sealer: sealer(sdk, env)?,
        jenkins: jenkins(sdk, env)?,
        webhooks: Webhooks {
            http: Arc::new(http),
            kafka: Arc::new(RdKafkaClient::new(allowed).with_allowed_brokers(env.allowed_brokers()?)),
        },
        policy,
    })
}

/// `TABLE_NAME`, and `BUILD_RETENTION` (the TTL a finished build's item is given).
pub fn build_store(sdk: &SdkConfig, env: &Env<'_>) -> Result<Arc<DynamoDbBuildStore>, ConfigError> {
    let table = env.required("TABLE_NAME")?;
    let retention = env.duration("BUILD_RETENTION", DEFAULT_BUILD_RETENTION)?;
    Ok(Arc::new(DynamoDbBuildStore::new(aws_sdk_dynamodb::Client::new(sdk), &table, retention)))
}

/// `S3_BUCKET`, and `S3_LOCATION` (the bucket's region, when not the function's).
pub fn source_store(sdk: &SdkConfig, env: &Env<'_>) -> Result<Arc<S3SourceStore>, ConfigError> {
    let bucket = env.required("S3_BUCKET")?;
    Ok(Arc::new(S3SourceStore::new(s3::client(sdk, env.optional("S3_LOCATION")), &bucket)))
}

/// `POLL_QUEUE_URL`, and `POLL_DEAD_LETTER_QUEUE_URL` (where a malformed poll message is moved;
/// else SQS moves it after `maxReceiveCount`).
pub fn poll_queue(sdk: &SdkConfig, env: &Env<'_>) -> Result<Arc<SqsPollQueue>, ConfigError> {
    let url = env.required("POLL_QUEUE_URL")?;
    Ok(Arc::new(SqsPollQueue::new(aws_sdk_sqs::Client::new(sdk), &url, env.optional("POLL_DEAD_LETTER_QUEUE_URL"))))
}

/// `KMS_KEY_ID`: the key that seals build specs.
pub fn sealer(sdk: &SdkConfig, env: &Env<'_>) -> Result<Arc<KmsSealer>, ConfigError> {
    let key = env.required("KMS_KEY_ID")?;
    Ok(Arc::new(KmsSealer::new(aws_sdk_kms::Client::new(sdk), &key)))
}

/// `JENKINS_URL`, `JENKINS_FOLDER`, and `JENKINS_SECRET_ID` (read at run time) or else
/// `JENKINS_USER` and `JENKINS_TOKEN`.
pub fn jenkins(sdk: &SdkConfig, env: &Env<'_>) -> Result<Arc<JenkinsClient>, StartupError> {
    let settings = JenkinsSettings::from_env(env, |id| managed_secret(sdk, id))?;
    Ok(Arc::new(JenkinsClient::new(settings).map_err(StartupError::Jenkins)?))
}

/// Who may call an API function: `ACCESS_SECRET_ID` read at run time, or the environment's
/// `SHUTTLE_API_TOKENS` / `SHUTTLE_OPEN_MODE`.
pub fn access(sdk: &SdkConfig, env: &Env<'_>) -> Result<Keyed<Access>, ConfigError> {
    env.keyed_access(&secret_store(sdk))
}

/// Secrets Manager, as the settings' secret store: a [`ManagedSecret`] per secret named.
fn secret_store(sdk: &SdkConfig) -> impl Fn(&str) -> Arc<dyn SecretSource> + '_ {
    move |id| managed_secret(sdk, id)
}

/// A Secrets Manager secret, read on first use and kept for [`SECRET_TTL`]: no call at a cold
/// start, and a rotation reaches a warm function without a deploy.
pub fn managed_secret(sdk: &SdkConfig, id: &str) -> Arc<ManagedSecret> {
    let sdk = sdk.clone();
    Arc::new(ManagedSecret::new(Built::on_first_use(move || aws_sdk_secretsmanager::Client::new(&sdk)), id, SECRET_TTL))
}
