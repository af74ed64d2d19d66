//! Which function an invocation of the gateway runs: in AWS each function is its own process
//! with its own role, here all run in one. Every invocation runs inside its function's scope,
//! so a test can tell whose call an AWS request was (the IAM check, `tests/src/aws_calls.rs`).

use std::future::Future;

tokio::task_local! {
    static FUNCTION: &'static str;
}

/// The function (its `BinaryName` in template.yaml) whose invocation runs `body`.
pub async fn within<F: Future>(function: &'static str, body: F) -> F::Output {
    FUNCTION.scope(function, body).await
}

/// The function whose invocation the current task runs, if any.
pub fn current_function() -> Option<&'static str> {
    FUNCTION.try_with(|function| *function).ok()
}
