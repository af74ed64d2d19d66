//! Secrets read at run time from AWS Secrets Manager, never from the function's environment
//! (where `lambda:GetFunctionConfiguration` would show them, and a rotation needs a deploy).
//!
//! A [`ManagedSecret`] is fetched on first use, kept for its TTL, then fetched again: a rotation
//! reaches every warm function within the TTL, and at once where the old value is refused (the
//! caller [`ManagedSecret::expire`]s it). No call is made at a cold start.

use std::time::Duration;

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::Client;
use shuttle_core::config::Secret;
use shuttle_core::error::ServiceError;
use shuttle_core::secrets::SecretSource;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::built::Built;

/// How long a secret's value is used before it is fetched again.
pub const SECRET_TTL: Duration = Duration::from_secs(5 * 60);

/// One secret of Secrets Manager (its name or ARN), its value cached for a TTL.
pub struct ManagedSecret {
    client: Built<Client>,
    id: String,
    ttl: Duration,
    cached: Mutex<Option<(Instant, Secret)>>,
}

impl ManagedSecret {
    pub fn new(client: impl Into<Built<Client>>, id: &str, ttl: Duration) -> Self {
        Self { client: client.into(), id: id.to_owned(), ttl, cached: Mutex::new(None) }
    }

    /// Forgets the cached value: the next use fetches the secret again (its value was refused,
    /// so it may have been rotated).
    pub async fn expire(&self) {
        *self.cached.lock().await = None;
    }
}

#[async_trait::async_trait]
impl SecretSource for ManagedSecret {
    /// The secret's `SecretString`: the cached one while it is younger than the TTL, else
    /// fetched (one fetch at a time; the others wait for it).
    async fn current(&self) -> Result<Secret, ServiceError> {
        let mut cached = self.cached.lock().await;
        if let Some((fetched, value)) = cached.as_ref() {
            if fetched.elapsed() < self.ttl {
                return Ok(value.clone());
            }
        }
        let output = self.client.get_secret_value().secret_id(&self.id).send().await.map_err(|e| {
            // The SDK's error names the secret and the failure, never its value.
            ServiceError::new("secrets manager", format!("could not read the secret {}: {}", self.id, DisplayErrorContext(e)))
        })?;
        let value = output
            .secret_string()
            .map(Secret::from)
            .ok_or_else(|| ServiceError::new("secrets manager", format!("the secret {} has no SecretString", self.id)))?;
        *cached = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}
