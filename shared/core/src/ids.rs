//! Identifiers: source ids, path segments, legacy job names.

use uuid::Uuid;

use crate::error::ValidationError;

/// The namespace of v2 source ids: `source_id = UUIDv5(NAMESPACE, "{app_id}/{build_id}")`.
pub const SOURCE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5b1f_0c3e_9d2a_4e57_8a31_6c0d_2f4b_7e19);

/// The source id of a v2 build, derived from its path so a repeated create finds it again.
pub fn v2_source_id(app_id: &str, build_id: &str) -> Uuid {
    Uuid::new_v5(&SOURCE_ID_NAMESPACE, format!("{app_id}/{build_id}").as_bytes())
}

/// A UUID in its hyphenated form, the whole string and nothing else.
pub fn parse_uuid(raw: &str) -> Option<Uuid> {
    (raw.len() == 36).then(|| Uuid::try_parse(raw).ok()).flatten()
}

/// Checks one path segment (`app_id`, `build_id`, `app`): 1–128 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn path_segment<'a>(name: &str, raw: &'a str) -> Result<&'a str, ValidationError> {
    let valid = !raw.is_empty()
        && raw.len() <= 128
        && raw != "."
        && raw != ".."
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(raw)
    } else {
        Err(ValidationError::new(name, "must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"))
    }
}

/// A legacy job name `{app}-{app_uuid}`, split on its UUID suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyJob<'a> {
    pub app: &'a str,
    pub app_uuid: Uuid,
}

pub fn parse_legacy_job(job: &str) -> Option<LegacyJob<'_>> {
    let split = job.len().checked_sub(37)?;
    let (app, suffix) = job.split_at(split);
    let app_uuid = parse_uuid(suffix.strip_prefix('-')?)?;
    (!app.is_empty()).then_some(LegacyJob { app, app_uuid })
}

pub fn legacy_job_name(app: &str, app_uuid: &str) -> String {
    format!("{app}-{app_uuid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_source_id_is_stable_and_distinct() {
        assert_eq!(v2_source_id("app", "1"), v2_source_id("app", "1"));
        assert_ne!(v2_source_id("app", "1"), v2_source_id("app", "2"));
        assert_ne!(v2_source_id("app1", "2"), v2_source_id("app", "12"));
        assert_eq!(v2_source_id("app", "1").get_version_num(), 5);
    }

    #[test]
    fn uuids_are_matched_whole() {
        let id = "0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10";
        assert!(parse_uuid(id).is_some());
        assert!(parse_uuid(&format!("{id}x")).is_none());
        assert!(parse_uuid(&format!("x{id}")).is_none());
        assert!(parse_uuid("0b9e8c2a6c844a3f9a556d6a4c1b2e10").is_none(), "simple form is not accepted");
        assert!(parse_uuid("octhc").is_none());
    }

    #[test]
    fn segments_are_checked() {
        assert!(path_segment("app_id", "my-app_1.2").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(129)] {
            let err = path_segment("app_id", bad).unwrap_err();
            assert_eq!(err.field, "app_id");
        }
    }

    #[test]
    fn legacy_job_splits_on_the_uuid_suffix() {
        let job = parse_legacy_job("myapp-0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10").unwrap();
        assert_eq!(job.app, "myapp");
        assert_eq!(job.app_uuid.to_string(), "0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10");
        assert!(parse_legacy_job("myapp").is_none());
        assert!(parse_legacy_job("-0b9e8c2a-6c84-4a3f-9a55-6d6a4c1b2e10").is_none());
    }
}
