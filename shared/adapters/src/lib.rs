//! Adapters from the shuttle's ports to the outside systems, one module per system: DynamoDB,
//! S3, SQS, KMS, Jenkins, and the webhook targets (HTTP receivers and Kafka).
//!
//! Every AWS client comes from one `SdkConfig` loaded the SDK's own way, so the local emulator
//! is reached through `AWS_ENDPOINT_URL` and production and local runs are the same code.

pub mod aws_http;
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
pub async fn load_sdk_config() -> Result<SdkConfig, ServiceError> {
    Ok(aws_config::defaults(BehaviorVersion::latest()).http_client(aws_http::client()?).load().await)
}

/// Wires the poller's use cases: the API's, the download of `http(s)` sources into S3 (both
/// writing through one S3 source store), and the webhook senders.
pub fn poller(sdk: &SdkConfig, settings: Settings, s3_region: Option<String>) -> Result<Poller, ServiceError> {
    let sources = Arc::new(S3SourceStore::new(s3::client(sdk, s3_region), &settings.s3_bucket));
    // Every user-supplied URL goes through the SSRF guard (SPEC §7), open to ALLOWED_PRIVATE_CIDRS.
    let allowed = settings.allowed_private.clone();
    let fetcher = Arc::new(HttpSourceFetcher::new(sources.clone(), settings.poller.source_max_bytes, allowed.clone())?);
    let shuttle = shuttle_with_sources(sdk, settings, sources).map_err(|e| ServiceError::new("jenkins", e))?;
    let webhooks = Webhooks { http: Arc::new(HttpWebhookClient::new(allowed.clone())?), kafka: Arc::new(RdKafkaClient::new(allowed)) };
    Ok(Poller::new(shuttle, fetcher, webhooks))
}

/// Wires the use cases to DynamoDB, S3, SQS, KMS and Jenkins. Builds clients only: no network call.
pub fn shuttle(sdk: &SdkConfig, settings: Settings, s3_region: Option<String>) -> Result<Shuttle, JenkinsError> {
    let sources = Arc::new(S3SourceStore::new(s3::client(sdk, s3_region), &settings.s3_bucket));
    shuttle_with_sources(sdk, settings, sources)
}

fn shuttle_with_sources(sdk: &SdkConfig, settings: Settings, sources: Arc<S3SourceStore>) -> Result<Shuttle, JenkinsError> {
    Ok(Shuttle {
        store: Arc::new(DynamoDbBuildStore::new(aws_sdk_dynamodb::Client::new(sdk), &settings.table_name)),
        sources,
        queue: Arc::new(SqsPollQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            &settings.poll_queue_url,
            settings.poller.dead_letter_queue_url.clone(),
        )),
        sealer: Arc::new(KmsSealer::new(aws_sdk_kms::Client::new(sdk), &settings.kms_key_id)),
        jenkins: Arc::new(JenkinsClient::new(JenkinsSettings::from(&settings.jenkins))?),
        settings: Arc::new(settings),
    })
}
