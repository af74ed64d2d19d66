//! The `delete` function as a library, so the local gateway and the tests call the very handler the Lambda runs.

pub mod handler;
