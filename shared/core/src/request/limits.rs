//! The bounds of a v2 create's fields (SPEC §2, §7): each over-long field is a `400` naming it,
//! so that no build is too large to store (a DynamoDB item holds 400 KB: at these bounds a
//! build's item stays under ≈230 KB) nor to send (`metadata` is every Kafka key and an
//! `X-Build-Metadata` header), and one poll never dials hundreds of targets.

use crate::error::ValidationError;

/// `metadata`, `human_readable_info`: bytes of UTF-8.
pub const TEXT_BYTES: usize = 4 * 1024;
/// `source.url`, `destination.url`: a presigned link with a session token fits.
pub const SOURCE_URL_BYTES: usize = 8 * 1024;
/// Each webhook target.
pub const TARGET_BYTES: usize = 4 * 1024;
/// Targets in `webhooks.status`, and in `webhooks.logs`.
pub const TARGETS: usize = 16;
/// Build arguments.
pub const ARGUMENTS: usize = 256;
pub const ARGUMENT_NAME_CHARS: usize = 128;
pub const ARGUMENT_VALUE_BYTES: usize = 16 * 1024;
/// Every argument's name and value together.
pub const ARGUMENTS_BYTES: usize = 64 * 1024;

/// A legacy create's text fields. Its job `{app}-{app_uuid}` is a path segment (≤ 128).
pub const LEGACY_FIELDS: [(&str, usize); 17] = [
    ("app", 128 - 37),
    ("space", TEXT_BYTES),
    ("app_uuid", 36),
    ("sha", TEXT_BYTES),
    ("branch", TEXT_BYTES),
    ("repo", TEXT_BYTES),
    ("org", TEXT_BYTES),
    ("callback", TARGET_BYTES),
    ("callback_auth", TARGET_BYTES),
    ("kafka_hosts", TARGET_BYTES),
    ("gm_registry_host", SOURCE_URL_BYTES),
    ("gm_registry_repo", SOURCE_URL_BYTES),
    ("sources", SOURCE_URL_BYTES),
    ("docker_registry", SOURCE_URL_BYTES),
    ("docker_login", TARGET_BYTES),
    ("docker_password", TARGET_BYTES),
    ("build_options", ARGUMENTS_BYTES),
];

/// A legacy field's bound, if it has one. `sources` as a `data:` URI is bounded by the body
/// alone: its bytes go to S3, not into the build.
pub fn legacy_field(field: &str, value: &str) -> Option<usize> {
    if field == "sources" && value.starts_with("data:") {
        return None;
    }
    LEGACY_FIELDS.iter().find(|(name, _)| *name == field).map(|(_, limit)| *limit)
}

/// `value` cut to at most `limit` bytes, on a character boundary.
pub(super) fn cut_to(mut value: String, limit: usize) -> String {
    if value.len() > limit {
        let end = (0..=limit).rev().find(|i| value.is_char_boundary(*i)).unwrap_or(0);
        value.truncate(end);
    }
    value
}

/// A `400` naming `field` when `value` is longer than `limit` bytes.
pub(super) fn at_most(field: &str, value: &str, limit: usize) -> Result<(), ValidationError> {
    match value.len() > limit {
        true => Err(ValidationError::new(field, format!("is {} bytes; at most {limit} are taken", value.len()))),
        false => Ok(()),
    }
}
