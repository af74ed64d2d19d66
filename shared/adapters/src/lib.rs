//! Adapters from the shuttle's ports to the outside systems, one module per system: DynamoDB,
//! S3, SQS, KMS and Jenkins.
//!
//! Every AWS client comes from one `SdkConfig` loaded the SDK's own way, so the local emulator
//! is reached through `AWS_ENDPOINT_URL` and production and local runs are the same code.

pub mod dynamodb;
pub mod jenkins;
pub mod kms;
pub mod s3;
pub mod sqs;

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use shuttle_core::{Settings, Shuttle};

pub use dynamodb::DynamoDbBuildStore;
pub use kms::KmsSealer;
pub use s3::S3SourceStore;
pub use sqs::SqsPollQueue;

/// The SDK configuration from the environment: credentials, region and endpoints.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Wires the use cases to DynamoDB, S3, SQS and KMS. Builds clients only: no network call.
pub fn shuttle(sdk: &SdkConfig, settings: Settings, s3_region: Option<String>) -> Shuttle {
    Shuttle {
        store: Arc::new(DynamoDbBuildStore::new(aws_sdk_dynamodb::Client::new(sdk), &settings.table_name)),
        sources: Arc::new(S3SourceStore::new(s3::client(sdk, s3_region), &settings.s3_bucket)),
        queue: Arc::new(SqsPollQueue::new(aws_sdk_sqs::Client::new(sdk), &settings.poll_queue_url)),
        sealer: Arc::new(KmsSealer::new(aws_sdk_kms::Client::new(sdk), &settings.kms_key_id)),
        settings: Arc::new(settings),
    }
}
