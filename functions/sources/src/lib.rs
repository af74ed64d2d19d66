//! The `sources` function as a library, so the local gateway and the tests call the very handler
//! the Lambda runs, wired by the same composition root.

pub mod handler;

use shuttle_adapters::wiring::{self, SdkConfig, StartupError};
use shuttle_core::api::SourceLinks;
use shuttle_core::config::Env;

/// The `sources` function as wired at start: links to the cached sources presigned, signed links checked.
pub type App = shuttle_http::Function<SourceLinks>;

/// The composition root: what the `sources` function uses, from its own settings only.
pub fn wire(sdk: &SdkConfig, env: &Env<'_>) -> Result<App, StartupError> {
    Ok(App { access: wiring::access(sdk, env)?, use_case: wiring::source_links(sdk, env)? })
}
