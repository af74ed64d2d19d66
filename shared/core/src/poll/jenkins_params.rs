//! The job parameters of `infra/jenkins/README.md`, the legacy image tag among them.

use super::Build;
use crate::access::LinkSigner;
use crate::jenkins::parameters;
use crate::record::now_ms;
use crate::request::{Api, BuildSpec};
use crate::source::Source;

impl Build<'_> {
    /// The job parameters of `infra/jenkins/README.md`.
    /// `signer` signs the sources link (`None`: open mode without a key, the link unsigned).
    pub(super) fn parameters(&self, spec: &BuildSpec, signer: Option<&LinkSigner>) -> Vec<(String, String)> {
        let policy = &self.poller.policy;
        let id = self.record.source_id;
        let mut arguments = policy.extra_build_args.clone();
        arguments.extend(spec.arguments.clone());
        let (destination, latest, push_credentials) = match &spec.api {
            Api::V2 { destination, .. } => (destination.reference(), false, destination.credentials.clone()),
            Api::Legacy(legacy) => {
                let number = self.record.number.map_or_else(|| "@BUILD_NUMBER@".to_owned(), |n| n.to_string());
                let image = format!(
                    "{}/{}/{}:{}.{number}",
                    legacy.registry_host.trim_end_matches('/'),
                    legacy.registry_repo.trim_matches('/'),
                    legacy.job(),
                    policy.image_tag_prefix
                );
                (image, true, legacy.registry_credentials.clone())
            }
        };
        let (sources_url, source_image, source_credentials) = match &spec.source {
            Source::Docker { image } => (String::new(), image.reference(), image.credentials.clone()),
            _ => (policy.sources_link_for_jenkins(signer, id, now_ms()), String::new(), None),
        };
        let (source_user, source_password) = source_credentials.map(|c| (c.username, c.password)).unwrap_or_default();
        let (push_user, push_password) = push_credentials.map(|c| (c.username, c.password)).unwrap_or_default();
        [
            (parameters::BUILD_UUID, id.to_string()),
            (parameters::SOURCES_URL, sources_url),
            (parameters::SOURCE_IMAGE, source_image),
            (parameters::SOURCE_REGISTRY_USER, source_user),
            (parameters::SOURCE_REGISTRY_PASSWORD, source_password),
            (parameters::DESTINATION_IMAGE, destination),
            (parameters::DESTINATION_LATEST, latest.to_string()),
            (parameters::REGISTRY_USER, push_user),
            (parameters::REGISTRY_PASSWORD, push_password),
            (parameters::BUILD_ARGS, serde_json::to_string(&arguments).expect("a map of strings serialises")),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }
}
