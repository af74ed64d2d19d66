//! The `poller` Lambda: SQS poll messages and the scheduled re-drive (SPEC §4).

pub mod handler;
