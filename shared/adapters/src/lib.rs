//! Adapters from the shuttle's ports to the outside systems, one module per system: DynamoDB,
//! S3, SQS, KMS, Jenkins, and the webhook targets (HTTP receivers and Kafka).
//!
//! Every AWS client comes from one `SdkConfig` loaded the SDK's own way, so the local emulator
//! is reached through `AWS_ENDPOINT_URL` and production and local runs are the same code.
//! [`wiring`] is the functions' composition root: the use cases wired to these adapters.

pub mod aws_http;
pub mod built;
pub mod dynamodb;
pub mod fetch;
pub mod guard;
pub mod jenkins;
pub mod kafka;
pub mod kms;
pub mod s3;
pub mod secrets;
pub mod sqs;
pub mod tls;
pub mod webhooks;
pub mod wiring;

pub use built::Built;
pub use dynamodb::DynamoDbBuildStore;
pub use fetch::HttpSourceFetcher;
pub use jenkins::{JenkinsClient, JenkinsCredentials, JenkinsSettings};
pub use kafka::RdKafkaClient;
pub use kms::KmsSealer;
pub use s3::S3SourceStore;
pub use sqs::SqsPollQueue;
pub use webhooks::HttpWebhookClient;
pub use wiring::{load_sdk_config, StartupError};
