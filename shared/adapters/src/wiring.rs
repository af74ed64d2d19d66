//! The composition root: the use cases wired to the adapters, from the environment, once per
//! cold start. A missing or malformed setting stops the function with an error naming it; no
//! network call is made here.

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use shuttle_core::config::ConfigError;
use shuttle_core::error::ServiceError;
use shuttle_core::jenkins::JenkinsError;
use shuttle_core::poll::Poller;
use shuttle_core::relay::Webhooks;
use shuttle_core::{Settings, Shuttle};

use crate::{
    aws_http, s3, Built, DynamoDbBuildStore, HttpSourceFetcher, HttpWebhookClient, JenkinsClient, JenkinsSettings, KmsSealer,
    RdKafkaClient, S3SourceStore, SqsPollQueue,
};

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

/// The outside systems whose clients a function builds at start, because its requests use them;
/// the others are built by the first request that needs one ([`crate::built`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Uses {
    pub dynamodb: bool,
    pub s3: bool,
    pub sqs: bool,
    pub kms: bool,
    pub jenkins: bool,
}

impl Uses {
    /// Every client at start (the poller).
    pub const ALL: Self = Self { dynamodb: true, s3: true, sqs: true, kms: true, jenkins: true };
}

/// An API function's use cases from the environment, with the clients `uses` names built now.
pub async fn shuttle_from_env(uses: Uses) -> Result<Shuttle, StartupError> {
    let (sdk, settings, s3_region) = from_env().await?;
    shuttle(&sdk, settings, s3_region, uses)
}

/// The poller's use cases from the environment.
pub async fn poller_from_env() -> Result<Poller, StartupError> {
    let (sdk, settings, s3_region) = from_env().await?;
    poller(&sdk, settings, s3_region)
}

/// The SDK configuration, the settings and `S3_LOCATION`, as every function reads them.
async fn from_env() -> Result<(SdkConfig, Settings, Option<String>), StartupError> {
    let settings = Settings::from_env()?;
    let sdk = load_sdk_config().await.map_err(StartupError::Sdk)?;
    let s3_region = std::env::var("S3_LOCATION").ok().filter(|r| !r.trim().is_empty());
    Ok((sdk, settings, s3_region))
}

/// The SDK configuration from the environment: credentials, region and endpoints, with the
/// shuttle's HTTP client ([`aws_http`]: reqwest on the one TLS configuration of [`tls`]).
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

/// Wires the poller's use cases: the API's, the download of `http(s)` sources into S3 (both
/// writing through one S3 source store), and the webhook senders.
pub fn poller(sdk: &SdkConfig, settings: Settings, s3_region: Option<String>) -> Result<Poller, StartupError> {
    let sources = Arc::new(S3SourceStore::new(s3::client(sdk, s3_region), &settings.s3_bucket));
    // Every user-supplied URL goes through the SSRF guard (SPEC §7), open to ALLOWED_PRIVATE_CIDRS.
    let allowed = settings.allowed_private.clone();
    let fetcher = Arc::new(HttpSourceFetcher::new(sources.clone(), settings.poller.source_max_bytes, allowed.clone()));
    let shuttle = shuttle_with_sources(sdk, settings, sources, Uses::ALL)?;
    let http = HttpWebhookClient::new(allowed.clone()).map_err(StartupError::Webhooks)?;
    let webhooks = Webhooks { http: Arc::new(http), kafka: Arc::new(RdKafkaClient::new(allowed)) };
    Ok(Poller::new(shuttle, fetcher, webhooks))
}

/// Wires the use cases to DynamoDB, S3, SQS, KMS and Jenkins, building at start the clients
/// `uses` names. No network call.
pub fn shuttle(sdk: &SdkConfig, settings: Settings, s3_region: Option<String>, uses: Uses) -> Result<Shuttle, StartupError> {
    let s3 = built(uses.s3, sdk, move |sdk| s3::client(sdk, s3_region));
    let sources = Arc::new(S3SourceStore::new(s3, &settings.s3_bucket));
    shuttle_with_sources(sdk, settings, sources, uses)
}

fn shuttle_with_sources(sdk: &SdkConfig, settings: Settings, sources: Arc<S3SourceStore>, uses: Uses) -> Result<Shuttle, StartupError> {
    let jenkins_settings = JenkinsSettings::from(&settings.jenkins);
    let jenkins = if uses.jenkins {
        JenkinsClient::new(jenkins_settings).map_err(StartupError::Jenkins)?
    } else {
        JenkinsClient::on_first_use(jenkins_settings)
    };
    Ok(Shuttle {
        store: Arc::new(DynamoDbBuildStore::new(
            built(uses.dynamodb, sdk, aws_sdk_dynamodb::Client::new),
            &settings.table_name,
            settings.build_retention,
        )),
        sources,
        queue: Arc::new(SqsPollQueue::new(
            built(uses.sqs, sdk, aws_sdk_sqs::Client::new),
            &settings.poll_queue_url,
            settings.poller.dead_letter_queue_url.clone(),
        )),
        sealer: Arc::new(KmsSealer::new(built(uses.kms, sdk, aws_sdk_kms::Client::new), &settings.kms_key_id)),
        jenkins: Arc::new(jenkins),
        settings: Arc::new(settings),
    })
}

/// A client from the SDK configuration: built now when `now`, else on first use.
fn built<C: Send + 'static>(now: bool, sdk: &SdkConfig, build: impl FnOnce(&SdkConfig) -> C + Send + 'static) -> Built<C> {
    if now {
        return Built::from(build(sdk));
    }
    let sdk = sdk.clone();
    Built::on_first_use(move || build(&sdk))
}
