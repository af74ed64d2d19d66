//! The `status` function as a library, so the local gateway and the tests call the very handler
//! the Lambda runs, wired by the same composition root.

pub mod handler;

use shuttle_adapters::wiring::{self, SdkConfig, StartupError};
use shuttle_core::api::{Logs, Status};
use shuttle_core::config::Env;

/// The `status` function as wired at start: a build's status and its log, read.
pub type App = shuttle_http::Function<Reads>;

/// The two reads the status function serves.
pub struct Reads {
    pub status: Status,
    pub logs: Logs,
}

/// The composition root: what the `status` function uses, from its own settings only.
pub fn wire(sdk: &SdkConfig, env: &Env<'_>) -> Result<App, StartupError> {
    let (status, logs) = wiring::status(sdk, env)?;
    Ok(App { access: wiring::access(sdk, env)?, use_case: Reads { status, logs } })
}
