//! Adapters from the shuttle's ports to the outside systems, one module per system: DynamoDB,
//! S3, SQS, KMS, Jenkins, and the webhook targets (HTTP receivers and Kafka).
//!
//! Every AWS client comes from one `SdkConfig` loaded the SDK's own way, so the local emulator
//! is reached through `AWS_ENDPOINT_URL` and production and local runs are the same code.

pub mod aws_http;
pub mod built;
pub mod dynamodb;
pub mod fetch;
pub mod guard;
pub mod jenkins;
pub mod kafka;
pub mod kms;
pub mod s3;
pub mod sqs;
pub mod tls;
pub mod webhooks;

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use shuttle_core::error::ServiceError;
use shuttle_core::jenkins::JenkinsError;
use shuttle_core::poll::Poller;
use shuttle_core::relay::Webhooks;
use shuttle_core::{Settings, Shuttle};

pub use built::Built;
pub use dynamodb::DynamoDbBuildStore;
pub use fetch::HttpSourceFetcher;
pub use jenkins::{JenkinsClient, JenkinsSettings};
pub use kafka::RdKafkaClient;
pub use kms::KmsSealer;
pub use s3::S3SourceStore;
pub use sqs::SqsPollQueue;
pub use webhooks::HttpWebhookClient;

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

/// The outside systems whose clients a function builds at start, because its requests use them;
/// the others are built by the first request that needs one ([`built`]).
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

/// Wires the poller's use cases: the API's, the download of `http(s)` sources into S3 (both
/// writing through one S3 source store), and the webhook senders.
pub fn poller(sdk: &SdkConfig, settings: Settings, s3_region: Option<String>) -> Result<Poller, ServiceError> {
    let sources = Arc::new(S3SourceStore::new(s3::client(sdk, s3_region), &settings.s3_bucket));
    // Every user-supplied URL goes through the SSRF guard (SPEC §7), open to ALLOWED_PRIVATE_CIDRS.
    let allowed = settings.allowed_private.clone();
    let fetcher = Arc::new(HttpSourceFetcher::new(sources.clone(), settings.poller.source_max_bytes, allowed.clone()));
    let shuttle = shuttle_with_sources(sdk, settings, sources, Uses::ALL).map_err(|e| ServiceError::new("jenkins", e))?;
    let webhooks = Webhooks { http: Arc::new(HttpWebhookClient::new(allowed.clone())?), kafka: Arc::new(RdKafkaClient::new(allowed)) };
    Ok(Poller::new(shuttle, fetcher, webhooks))
}

/// Wires the use cases to DynamoDB, S3, SQS, KMS and Jenkins, building at start the clients
/// `uses` names. No network call.
pub fn shuttle(sdk: &SdkConfig, settings: Settings, s3_region: Option<String>, uses: Uses) -> Result<Shuttle, JenkinsError> {
    let s3 = built(uses.s3, sdk, move |sdk| s3::client(sdk, s3_region));
    let sources = Arc::new(S3SourceStore::new(s3, &settings.s3_bucket));
    shuttle_with_sources(sdk, settings, sources, uses)
}

fn shuttle_with_sources(sdk: &SdkConfig, settings: Settings, sources: Arc<S3SourceStore>, uses: Uses) -> Result<Shuttle, JenkinsError> {
    let jenkins_settings = JenkinsSettings::from(&settings.jenkins);
    let jenkins = if uses.jenkins { JenkinsClient::new(jenkins_settings)? } else { JenkinsClient::on_first_use(jenkins_settings) };
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
