//! The `stop` function as a library, so the local gateway and the tests call the very handler
//! the Lambda runs, wired by the same composition root.

pub mod handler;

use shuttle_adapters::wiring::{self, SdkConfig, StartupError};
use shuttle_core::api::Stop;
use shuttle_core::config::Env;

/// The `stop` function as wired at start: the stop recorded, then handed to Jenkins.
pub type App = shuttle_http::Function<Stop>;

/// The composition root: what the `stop` function uses, from its own settings only.
pub fn wire(sdk: &SdkConfig, env: &Env<'_>) -> Result<App, StartupError> {
    Ok(App { access: wiring::access(sdk, env)?, use_case: wiring::stop(sdk, env)? })
}
