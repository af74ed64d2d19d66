//! The domain's errors. Their HTTP meaning is decided in one place, `shuttle-http`.

/// A v2 request that is missing a field or has a malformed one: a 400 naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// The only two answers the legacy API gives to bad input (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LegacyRejection {
    #[error("Bad Request - missing fields.")]
    MissingFields,
    #[error("Bad Request - build uuid is invalid.")]
    InvalidBuildUuid,
}

/// A failure of an outside system behind a port (store, object store, queue, key service).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{system}: {message}")]
pub struct ServiceError {
    pub system: &'static str,
    pub message: String,
}

impl ServiceError {
    pub fn new(system: &'static str, message: impl std::fmt::Display) -> Self {
        Self { system, message: crate::redact::redact(&message.to_string()) }
    }
}

/// What the build store can answer besides success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The conditional write lost: someone else changed the build first.
    #[error("the build was changed concurrently (version conflict)")]
    Conflict,
    /// Refused before the write: the store could never take it, however often it is tried.
    #[error("the build as stored would be {size} bytes, over the store's limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Unavailable(#[from] ServiceError),
}

/// Everything a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ShuttleError {
    #[error("invalid request: {0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    LegacyBadRequest(#[from] LegacyRejection),
    #[error("{what} of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { what: &'static str, size: usize, limit: usize },
    #[error("no such build")]
    NotFound,
    #[error("a different build already exists for {0}")]
    Conflict(String),
    #[error("the build is not running")]
    NotRunning,
    /// A log read from past the log's end: `size` is where it ends now.
    #[error("the log has {size} bytes: start at most there")]
    LogRangeNotSatisfiable { size: u64 },
    #[error("the build kept changing under us; try again")]
    Contended,
    #[error("a backing service failed")]
    Unavailable(#[source] ServiceError),
}

impl From<ServiceError> for ShuttleError {
    fn from(error: ServiceError) -> Self {
        Self::Unavailable(error)
    }
}

impl From<StoreError> for ShuttleError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => Self::Contended,
            StoreError::TooLarge { size, limit } => Self::TooLarge { what: "the build as stored", size, limit },
            StoreError::Unavailable(e) => Self::Unavailable(e),
        }
    }
}

/// An error with its causes, `outer: cause: …`, for the one log line where it is mapped. Every
/// message in a chain is already redacted where it is made.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_logged_with_every_cause() {
        let error = ShuttleError::from(StoreError::Unavailable(ServiceError::new("dynamodb", "throttled")));
        assert_eq!(with_causes(&error), "a backing service failed: dynamodb: throttled");
        assert_eq!(with_causes(&ShuttleError::NotFound), "no such build");
    }
}
