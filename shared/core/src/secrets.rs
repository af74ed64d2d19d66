//! Secrets that may be read at run time: a value given once at start (the environment, in
//! `make run` and the tests), or read from a secret store on each use (Secrets Manager in AWS,
//! cached there for a while), so that a rotation needs no deploy and no secret sits in a
//! function's environment.

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{ExposeSecret, Secret};
use crate::error::ServiceError;

/// Where a secret's current text comes from (Secrets Manager, in the adapters).
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn current(&self) -> Result<Secret, ServiceError>;
}

/// Something made from a secret: the callers' tokens, a signing key.
pub enum Keyed<T> {
    /// Made once, at start.
    Given(Arc<T>),
    /// Made from the secret's current text at each use: `read` takes the text (a JSON object
    /// for some) and names what is wrong without quoting it; `setting` names the secret.
    Managed { source: Arc<dyn SecretSource>, read: fn(&str) -> Result<T, String>, setting: &'static str },
}

impl<T> Clone for Keyed<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Given(value) => Self::Given(Arc::clone(value)),
            Self::Managed { source, read, setting } => Self::Managed { source: Arc::clone(source), read: *read, setting },
        }
    }
}

impl<T> std::fmt::Debug for Keyed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given(_) => f.write_str("Given(****)"),
            Self::Managed { setting, .. } => write!(f, "Managed({setting})"),
        }
    }
}

impl<T> Keyed<T> {
    pub fn given(value: T) -> Self {
        Self::Given(Arc::new(value))
    }

    /// The value now.
    pub async fn get(&self) -> Result<Arc<T>, ServiceError> {
        match self {
            Self::Given(value) => Ok(Arc::clone(value)),
            Self::Managed { source, read, setting } => {
                let text = source.current().await?;
                read(text.expose_secret()).map(Arc::new).map_err(|why| ServiceError::new("secrets", format!("the secret {setting}: {why}")))
            }
        }
    }

    /// The value given at start; `None` when it is read at run time.
    pub fn given_value(&self) -> Option<&T> {
        match self {
            Self::Given(value) => Some(value),
            Self::Managed { .. } => None,
        }
    }
}

/// The field `name` of a secret holding a JSON object (`{"tokens": "…", …}`), if it is there.
pub fn json_field(text: &str, name: &str) -> Result<Option<String>, String> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).map_err(|_| "is not a JSON object".to_owned())?;
    match object.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(value)) if value.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(value)) => Ok(Some(value.trim().to_owned())),
        Some(_) => Err(format!("its field {name} is not a string")),
    }
}
