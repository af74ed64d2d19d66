//! Where a build's sources come from and where its image goes.

use base64::Engine;
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::redact::{redact, redact_reference};

/// `docker://[user:pass@]host[:port]/path[:tag]`: an image in a registry, with the
/// credentials for that registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerImage {
    /// `host[:port]`
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub credentials: Option<RegistryCredentials>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
}

/// The shortest registry password taken. Jenkins masks a password parameter wherever its value
/// appears in the build log, as text: a password of one character turned every such character
/// of the log into `****`. Refusing short ones at create keeps every log readable (the
/// alternative, masking only at word boundaries, is not ours to choose: Jenkins masks).
pub const MIN_REGISTRY_PASSWORD_CHARS: usize = 4;

impl RegistryCredentials {
    /// `Err` with the reason when the password is too short to be masked in the log safely.
    pub fn check_maskable(&self) -> Result<(), String> {
        let length = self.password.chars().count();
        if length > 0 && length < MIN_REGISTRY_PASSWORD_CHARS {
            return Err(format!(
                "the registry password has {length} characters, fewer than {MIN_REGISTRY_PASSWORD_CHARS}: Jenkins masks it wherever it appears in the build log, so a short one would garble the log"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("'{0}' is not a docker://host/path:tag image reference")]
    Malformed(String),
}

impl DockerImage {
    /// Parses `docker://[user:pass@]host[:port]/path[:tag]`.
    pub fn parse_url(raw: &str) -> Result<Self, ImageError> {
        let bad = || ImageError::Malformed(redact(raw));
        let url = Url::parse(raw.trim()).map_err(|_| bad())?;
        if url.scheme() != "docker" {
            return Err(bad());
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let registry = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let credentials = (!url.username().is_empty()).then(|| RegistryCredentials {
            username: percent_decode(url.username()),
            password: percent_decode(url.password().unwrap_or_default()),
        });
        let (repository, tag) = split_tag(url.path().trim_start_matches('/')).ok_or_else(bad)?;
        Ok(Self { registry, repository, tag, credentials })
    }

    /// Parses the legacy `docker_registry` form `host/path:tag` (no scheme).
    pub fn parse_reference(raw: &str) -> Result<Self, ImageError> {
        let bad = || ImageError::Malformed(redact_reference(raw));
        let (registry, rest) = raw.trim().split_once('/').ok_or_else(bad)?;
        if registry.is_empty() || registry.contains('@') {
            return Err(bad());
        }
        let (repository, tag) = split_tag(rest).ok_or_else(bad)?;
        Ok(Self { registry: registry.to_owned(), repository, tag, credentials: None })
    }

    /// `host[:port]/path:tag`, without credentials.
    pub fn reference(&self) -> String {
        format!("{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

fn split_tag(path: &str) -> Option<(String, String)> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
            && !s.starts_with('/')
            && !s.ends_with('/')
            && !s.contains("//")
    };
    let last_segment_start = path.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match path[last_segment_start..].rfind(':') {
        Some(i) => (&path[..last_segment_start + i], &path[last_segment_start + i + 1..]),
        None => (path, "latest"),
    };
    let valid_tag = !tag.is_empty() && tag.len() <= 128 && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    (valid(repository) && valid_tag).then(|| (repository.to_ascii_lowercase(), tag.to_owned()))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Where the poller gets a build's sources from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Downloaded over `http(s)` by the poller and cached in S3.
    Http { url: String },
    /// Sent inline (`data:` URI) and written to S3 at create time.
    Inline { bytes: u64 },
    /// A rebuild: another build's cached sources (`{BUILD_SHUTTLE_HOST}/{source_id}`), copied in S3.
    Rebuild { source_id: Uuid },
    /// An image to pull and re-tag; nothing to cache.
    Docker { image: DockerImage },
    /// Accepted by the legacy API but unusable: the build fails with this reason.
    Invalid { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataUriError {
    #[error("a data: URI must be data:[<media type>][;base64],<data>")]
    Malformed,
    #[error("the data: URI is not valid base64")]
    BadBase64,
    #[error("the data: URI holds no data")]
    Empty,
}

/// Decodes `data:base64,<b64>` and RFC 2397 `data:<media type>;base64,<b64>` (and the
/// percent-encoded form without `;base64`).
pub fn decode_data_uri(uri: &str) -> Result<Vec<u8>, DataUriError> {
    let rest = uri.strip_prefix("data:").ok_or(DataUriError::Malformed)?;
    let (header, payload) = rest.split_once(',').ok_or(DataUriError::Malformed)?;
    let is_base64 = header == "base64" || header.split(';').skip(1).any(|p| p.eq_ignore_ascii_case("base64"));
    let bytes = if is_base64 {
        let compact: String = payload.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let compact = percent_decode(&compact);
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(compact.trim_end_matches('=').as_bytes()))
            .map_err(|_| DataUriError::BadBase64)?
    } else {
        percent_encoding::percent_decode_str(payload).collect()
    };
    if bytes.is_empty() {
        return Err(DataUriError::Empty);
    }
    Ok(bytes)
}

/// Recognises the shuttle's own sources link `{shuttle_host}/{source_id}` (a rebuild).
pub fn rebuild_source_id(url: &Url, shuttle_host: &Url) -> Option<Uuid> {
    let same_origin = url.scheme() == shuttle_host.scheme()
        && url.host_str().map(str::to_ascii_lowercase) == shuttle_host.host_str().map(str::to_ascii_lowercase)
        && url.port_or_known_default() == shuttle_host.port_or_known_default();
    if !same_origin {
        return None;
    }
    let base_path = shuttle_host.path().trim_end_matches('/');
    let tail = url.path().strip_prefix(base_path)?.strip_prefix('/')?;
    crate::ids::parse_uuid(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_url_with_credentials() {
        let image = DockerImage::parse_url("docker://user:p%40ss@registry.example.com:5000/org/repo:v1.2").unwrap();
        assert_eq!(image.registry, "registry.example.com:5000");
        assert_eq!(image.repository, "org/repo");
        assert_eq!(image.tag, "v1.2");
        assert_eq!(image.credentials, Some(RegistryCredentials { username: "user".into(), password: "p@ss".into() }));
        assert_eq!(image.reference(), "registry.example.com:5000/org/repo:v1.2");
    }

    #[test]
    fn docker_url_without_tag_means_latest() {
        let image = DockerImage::parse_url("docker://example.com/org/repo").unwrap();
        assert_eq!((image.repository.as_str(), image.tag.as_str(), image.credentials), ("org/repo", "latest", None));
    }

    #[test]
    fn malformed_images_are_refused() {
        for raw in ["docker://", "docker://host", "docker://host/", "https://host/x:1", "docker://host/a b:1", "docker://host/x:"] {
            assert!(DockerImage::parse_url(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn legacy_registry_reference() {
        let image = DockerImage::parse_reference("quay.example.com/org/app:1.3").unwrap();
        assert_eq!(image.reference(), "quay.example.com/org/app:1.3");
        assert!(DockerImage::parse_reference("no-slash").is_err());
    }

    #[test]
    fn data_uris_in_both_forms() {
        assert_eq!(decode_data_uri("data:base64,aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_data_uri("data:application/zip;base64,aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_data_uri("data:application/zip;base64,aGVsbG8").unwrap(), b"hello", "padding optional");
        assert_eq!(decode_data_uri("data:text/plain,hi%20there").unwrap(), b"hi there");
        assert_eq!(decode_data_uri("data:base64,***"), Err(DataUriError::BadBase64));
        assert_eq!(decode_data_uri("data:nocomma"), Err(DataUriError::Malformed));
        assert_eq!(decode_data_uri("data:base64,"), Err(DataUriError::Empty));
    }

    #[test]
    fn the_shuttles_own_link_is_a_rebuild() {
        let host = Url::parse("https://shuttle.example.com").unwrap();
        let id = Uuid::new_v4();
        assert_eq!(rebuild_source_id(&Url::parse(&format!("https://shuttle.example.com/{id}")).unwrap(), &host), Some(id));
        assert_eq!(rebuild_source_id(&Url::parse(&format!("https://other.example.com/{id}")).unwrap(), &host), None);
        assert_eq!(rebuild_source_id(&Url::parse("https://shuttle.example.com/not-a-uuid").unwrap(), &host), None);
    }
}
