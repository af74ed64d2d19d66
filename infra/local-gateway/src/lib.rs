//! The local API gateway of SPEC §8: one process that serves every API Gateway route of
//! `template.yaml` by calling the very handler functions the Lambdas run, after turning each
//! request into the API Gateway v2 event a Lambda receives.

pub mod event;
pub mod functions;
pub mod invocation;
pub mod jenkins_folder;
pub mod mapping;
pub mod poller;
pub mod routes;
pub mod schedule;
pub mod server;
pub mod stack;
pub mod template;

pub use functions::Functions;
pub use server::serve;
