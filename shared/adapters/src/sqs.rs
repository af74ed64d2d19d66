//! The poll queue in SQS. Messages carry a reference to a build, never its contents.

use std::time::Duration;

use crate::built::Built;
use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;
use shuttle_core::error::ServiceError;
use shuttle_core::ports::{PollMessage, PollQueue};

/// SQS delays a message by at most 15 minutes.
const MAX_DELAY: Duration = Duration::from_secs(900);

/// Failed receives before a message goes to the dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;

pub struct SqsPollQueue {
    client: Built<Client>,
    queue_url: String,
    dead_letter_url: Option<String>,
}

fn fail(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::new("sqs", error)
}

/// A queue and its dead-letter queue.
#[derive(Clone, Debug)]
pub struct QueueUrls {
    pub queue_url: String,
    pub dead_letter_url: String,
}

impl SqsPollQueue {
    pub fn new(client: impl Into<Built<Client>>, queue_url: &str, dead_letter_url: Option<String>) -> Self {
        Self { client: client.into(), queue_url: queue_url.to_owned(), dead_letter_url }
    }

    /// Creates `name` and `name-dlq`, with the redrive policy the template declares (tests and the local stack).
    pub async fn create_queue(client: &Client, name: &str, visibility_timeout: Duration) -> Result<QueueUrls, ServiceError> {
        let dead_letter_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?
            .queue_url
            .ok_or_else(|| fail("create_queue returned no URL"))?;
        let attributes = client
            .get_queue_attributes()
            .queue_url(&dead_letter_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        let dead_letter_arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .ok_or_else(|| fail("the dead-letter queue has no ARN"))?;
        let redrive = serde_json::json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": MAX_RECEIVE_COUNT.to_string()});
        let queue_url = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_timeout.as_secs().to_string())
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?
            .queue_url
            .ok_or_else(|| fail("create_queue returned no URL"))?;
        Ok(QueueUrls { queue_url, dead_letter_url })
    }
}

#[async_trait]
impl PollQueue for SqsPollQueue {
    async fn enqueue(&self, message: &PollMessage, delay: Duration) -> Result<(), ServiceError> {
        let body = serde_json::to_string(message).map_err(fail)?;
        // SQS counts whole seconds: a delay is rounded up, never dropped.
        let delay_seconds = i32::try_from(delay.min(MAX_DELAY).as_secs() + u64::from(delay.subsec_nanos() > 0)).unwrap_or(0);
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn dead_letter(&self, body: &str) -> Result<(), ServiceError> {
        let url = self.dead_letter_url.as_deref().ok_or_else(|| fail("no dead-letter queue is configured (POLL_DEAD_LETTER_QUEUE_URL)"))?;
        self.client.send_message().queue_url(url).message_body(body).send().await.map_err(|e| fail(DisplayErrorContext(e)))?;
        Ok(())
    }
}
