//! The resources of the local stack, created in the AWS emulator the way the template
//! declares them in AWS: table, bucket, poll queue with its dead-letter queue, KMS key.

use std::time::Duration;

use aws_config::SdkConfig;
use shuttle_adapters::sqs::QueueUrls;
use shuttle_adapters::{DynamoDbBuildStore, KmsSealer, S3SourceStore, SqsPollQueue};
use shuttle_core::error::ServiceError;

/// The poll queue's visibility timeout (6 × the poller's 90 s timeout, as the template sets).
pub const POLL_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(540);

/// What the local run allows of the ranges the SSRF guard refuses (SPEC §7): loopback.
pub const LOCAL_ALLOWED_PRIVATE_CIDRS: &str = "127.0.0.0/8,::1/128";

#[derive(Clone, Debug)]
pub struct Resources {
    pub table_name: String,
    pub s3_bucket: String,
    pub queues: QueueUrls,
    pub kms_key_id: String,
}

impl Resources {
    /// The setting (SPEC §6) these resources provide, for `Settings::from_lookup`.
    pub fn setting(&self, name: &str, shuttle_host: &str) -> Option<String> {
        match name {
            "TABLE_NAME" => Some(self.table_name.clone()),
            "S3_BUCKET" => Some(self.s3_bucket.clone()),
            "POLL_QUEUE_URL" => Some(self.queues.queue_url.clone()),
            "KMS_KEY_ID" => Some(self.kms_key_id.clone()),
            "BUILD_SHUTTLE_HOST" => Some(shuttle_host.to_owned()),
            // The local run's receivers, source servers and Kafka are on loopback.
            "ALLOWED_PRIVATE_CIDRS" => Some(LOCAL_ALLOWED_PRIVATE_CIDRS.to_owned()),
            _ => None,
        }
    }
}

/// Creates the resources named `{prefix}-builds`, `{prefix}-sources`, `{prefix}-poll` (and
/// `-dlq`) and a new KMS key. Resources that exist already are kept.
pub async fn create_resources(sdk: &SdkConfig, prefix: &str) -> Result<Resources, ServiceError> {
    let (table_name, s3_bucket, queue) = (format!("{prefix}-builds"), format!("{prefix}-sources"), format!("{prefix}-poll"));
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    if dynamodb.describe_table().table_name(&table_name).send().await.is_err() {
        DynamoDbBuildStore::create_table(&dynamodb, &table_name).await?;
    }
    let s3 = shuttle_adapters::s3::client(sdk, None);
    if s3.head_bucket().bucket(&s3_bucket).send().await.is_err() {
        S3SourceStore::create_bucket(&s3, &s3_bucket).await?;
    }
    let queues = SqsPollQueue::create_queue(&aws_sdk_sqs::Client::new(sdk), &queue, POLL_VISIBILITY_TIMEOUT).await?;
    let kms_key_id = KmsSealer::create_key(&aws_sdk_kms::Client::new(sdk)).await?;
    Ok(Resources { table_name, s3_bucket, queues, kms_key_id })
}

#[cfg(test)]
mod tests {
    use shuttle_adapters::dynamodb::{BY_ACTIVITY_INDEX, BY_APP_INDEX, BY_NUMBER_INDEX, TTL_ATTRIBUTE};

    use super::*;

    fn template() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml")).expect("template.yaml")
    }

    /// Whether a line of the template, less indentation and a list dash, starts with `start`
    /// and ends right there or with a space.
    fn has_line(template: &str, start: &str) -> bool {
        template.lines().map(|l| l.trim_start().trim_start_matches("- ")).any(|l| l == start || l.starts_with(&format!("{start} ")))
    }

    /// The local stack is created by code, AWS's by the template: both must declare the same.
    #[test]
    fn the_template_declares_the_indexes_settings_and_queue_timing_the_code_uses() {
        let template = template();
        for index in [BY_APP_INDEX, BY_NUMBER_INDEX, BY_ACTIVITY_INDEX] {
            assert!(has_line(&template, &format!("IndexName: {index}")), "template.yaml lacks the index {index}");
        }
        let provided = ["TABLE_NAME", "S3_BUCKET", "POLL_QUEUE_URL", "KMS_KEY_ID", "BUILD_SHUTTLE_HOST", "JENKINS_URL"];
        for name in provided
            .into_iter()
            .chain([
                "JENKINS_FOLDER",
                "JENKINS_SECRET_ID",
                "POLL_DEAD_LETTER_QUEUE_URL",
                "WEBHOOK_SIGNING_SECRET_ID",
                "ALLOWED_PRIVATE_CIDRS",
            ])
            .chain(["ACCESS_SECRET_ID", "SHUTTLE_OPEN_MODE", "BUILD_RETENTION"])
        {
            assert!(has_line(&template, &format!("{name}:")), "template.yaml does not set {name} for the functions");
        }
        let ttl = format!("AttributeName: {TTL_ATTRIBUTE}");
        assert!(template.contains(&format!("TimeToLiveSpecification:\n        {ttl}")), "the table's TTL attribute is not {TTL_ATTRIBUTE}");
        let visibility = format!("VisibilityTimeout: {}", POLL_VISIBILITY_TIMEOUT.as_secs());
        assert!(has_line(&template, &visibility), "the poll queue's visibility timeout differs from {visibility}");
        let timeout = format!("Timeout: {}", shuttle_core::poll::POLLER_TIMEOUT.as_secs());
        assert!(has_line(&template, &timeout), "the poller's timeout differs from {timeout}");
        assert_eq!(POLL_VISIBILITY_TIMEOUT, shuttle_core::poll::POLLER_TIMEOUT * 6, "AWS advises 6 × the function timeout");
    }
}
