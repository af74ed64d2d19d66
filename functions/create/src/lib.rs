//! The `create` function as a library, so the local gateway and the tests call the very handler
//! the Lambda runs, wired by the same composition root.

pub mod handler;

use shuttle_adapters::wiring::{self, SdkConfig, StartupError};
use shuttle_core::api::Create;
use shuttle_core::config::Env;

/// The `create` function as wired at start: builds stored, inline sources put in S3, the first poll queued.
pub type App = shuttle_http::Function<Create>;

/// The composition root: what the `create` function uses, from its own settings only.
pub fn wire(sdk: &SdkConfig, env: &Env<'_>) -> Result<App, StartupError> {
    Ok(App { access: wiring::access(sdk, env)?, use_case: wiring::create(sdk, env)? })
}
