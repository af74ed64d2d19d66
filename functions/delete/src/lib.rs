//! The `delete` function as a library, so the local gateway and the tests call the very handler
//! the Lambda runs, wired by the same composition root.

pub mod handler;

use shuttle_adapters::wiring::{self, SdkConfig, StartupError};
use shuttle_core::api::Delete;
use shuttle_core::config::Env;

/// The `delete` function as wired at start: the app's builds stopped, then its Jenkins job deleted.
pub type App = shuttle_http::Function<Delete>;

/// The composition root: what the `delete` function uses, from its own settings only.
pub fn wire(sdk: &SdkConfig, env: &Env<'_>) -> Result<App, StartupError> {
    Ok(App { access: wiring::access(sdk, env)?, use_case: wiring::delete(sdk, env)? })
}
