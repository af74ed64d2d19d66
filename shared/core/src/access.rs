//! Who may call the API (SPEC §7): callers' tokens, and the signed, expiring sources links
//! handed to Jenkins.
//!
//! A token is compared with every configured token, in constant time, through their SHA-256
//! digests: neither the position of the first differing byte nor the length of a configured
//! token shows in the time taken. A sources link is `{shuttle_host}/{source_id}?expires=…&signature=…`,
//! where the signature is an HMAC-SHA-256 of the source id and the expiry under
//! `SOURCES_SIGNING_KEY`, so the poller that signs and the function that checks share nothing
//! but the key.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString as Secret};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;
use uuid::Uuid;

/// The shortest token or signing key taken: anything shorter could be guessed.
pub const MIN_SECRET_CHARS: usize = 16;

/// Who may call the API: holders of one of the tokens, or anybody (`SHUTTLE_OPEN_MODE=true`).
#[derive(Clone, Debug)]
pub enum Access {
    /// `SHUTTLE_API_TOKENS`: several during a rotation.
    Tokens(Vec<Secret>),
    /// `SHUTTLE_OPEN_MODE=true`: no check at all; the API belongs on a private endpoint.
    Open,
}

impl Access {
    /// Whether `presented` is one of the tokens (always, in open mode).
    pub fn admits(&self, presented: Option<&str>) -> bool {
        match self {
            Access::Open => true,
            Access::Tokens(tokens) => {
                let Some(presented) = presented else { return false };
                let presented = Sha256::digest(presented.as_bytes());
                // Every token is compared, whichever matches: the time does not tell which.
                tokens
                    .iter()
                    .fold(subtle::Choice::from(0), |found, token| {
                        found | Sha256::digest(token.expose_secret().as_bytes()).as_slice().ct_eq(presented.as_slice())
                    })
                    .into()
            }
        }
    }
}

/// Signs and checks sources links with `SOURCES_SIGNING_KEY`.
#[derive(Clone, Debug)]
pub struct LinkSigner {
    key: Secret,
}

/// Why a sources link was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the sources link carries no signature")]
    Unsigned,
    #[error("the sources link's signature is not valid")]
    BadSignature,
    #[error("the sources link has expired")]
    Expired,
}

impl LinkSigner {
    pub fn new(key: Secret) -> Self {
        Self { key }
    }

    /// `{shuttle_host}/{source_id}?expires={unix seconds}&signature={hex}`, valid until
    /// `now_ms + valid_for`.
    pub fn link(&self, shuttle_host: &Url, source_id: Uuid, now_ms: u64, valid_for: Duration) -> String {
        let valid_for_ms = u64::try_from(valid_for.as_millis()).unwrap_or(u64::MAX);
        let expires = now_ms.saturating_add(valid_for_ms).div_ceil(1000);
        let signature = hex(&self.mac(source_id, expires).finalize().into_bytes());
        format!("{}?expires={expires}&signature={signature}", unsigned_link(shuttle_host, source_id))
    }

    /// Checks the `expires` and `signature` query parameters of a request for `source_id`.
    pub fn check(&self, source_id: Uuid, expires: Option<&str>, signature: Option<&str>, now_ms: u64) -> Result<(), LinkError> {
        let (Some(expires), Some(signature)) = (expires, signature) else { return Err(LinkError::Unsigned) };
        let expires: u64 = expires.parse().map_err(|_| LinkError::BadSignature)?;
        let signature = unhex(signature).ok_or(LinkError::BadSignature)?;
        self.mac(source_id, expires).verify_slice(&signature).map_err(|_| LinkError::BadSignature)?;
        if expires.saturating_mul(1000) <= now_ms {
            return Err(LinkError::Expired);
        }
        Ok(())
    }

    fn mac(&self, source_id: Uuid, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes()).expect("HMAC takes a key of any length");
        mac.update(format!("sources:{source_id}:{expires}").as_bytes());
        mac
    }
}

/// `{shuttle_host}/{source_id}`: the sources link without a signature (open mode without a
/// key), and the part of a signed link before its query.
pub fn unsigned_link(shuttle_host: &Url, source_id: Uuid) -> String {
    format!("{}/{source_id}", shuttle_host.as_str().trim_end_matches('/'))
}

/// `bytes` in lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn signer() -> LinkSigner {
        LinkSigner::new(Secret::from("a-signing-key-of-some-length"))
    }

    fn query(link: &str) -> (Option<String>, Option<String>) {
        let url = Url::parse(link).unwrap();
        let get = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        (get("expires"), get("signature"))
    }

    #[test]
    fn tokens_admit_each_configured_token_and_nothing_else() {
        let access = Access::Tokens(vec![Secret::from("old-token-0123456789"), Secret::from("new-token-0123456789")]);
        assert!(access.admits(Some("old-token-0123456789")));
        assert!(access.admits(Some("new-token-0123456789")));
        for wrong in [None, Some(""), Some("old-token-012345678"), Some("old-token-01234567890"), Some("OLD-TOKEN-0123456789")] {
            assert!(!access.admits(wrong), "{wrong:?}");
        }
        assert!(Access::Open.admits(None));
    }

    #[test]
    fn a_signed_link_is_taken_until_it_expires() {
        let id = Uuid::new_v4();
        let host = Url::parse("https://shuttle.example/base/").unwrap();
        let link = signer().link(&host, id, NOW_MS, Duration::from_secs(60));
        assert!(link.starts_with(&format!("https://shuttle.example/base/{id}?expires=")), "{link}");
        let (expires, signature) = query(&link);
        let check = |now| signer().check(id, expires.as_deref(), signature.as_deref(), now);
        assert_eq!(check(NOW_MS), Ok(()));
        assert_eq!(check(NOW_MS + 59_000), Ok(()));
        assert_eq!(check(NOW_MS + 60_000), Err(LinkError::Expired));
    }

    #[test]
    fn a_link_is_only_good_for_its_own_source_its_own_expiry_and_its_own_key() {
        let id = Uuid::new_v4();
        let host = Url::parse("https://shuttle.example").unwrap();
        let (expires, signature) = query(&signer().link(&host, id, NOW_MS, Duration::from_secs(60)));
        let (expires, signature) = (expires.unwrap(), signature.unwrap());
        assert_eq!(signer().check(Uuid::new_v4(), Some(&expires), Some(&signature), NOW_MS), Err(LinkError::BadSignature));
        let later = (expires.parse::<u64>().unwrap() + 3600).to_string();
        assert_eq!(signer().check(id, Some(&later), Some(&signature), NOW_MS), Err(LinkError::BadSignature));
        let other_key = LinkSigner::new(Secret::from("another-signing-key-entirely"));
        assert_eq!(other_key.check(id, Some(&expires), Some(&signature), NOW_MS), Err(LinkError::BadSignature));
        for bad in ["", "zz", "abc", "é1"] {
            assert_eq!(signer().check(id, Some(&expires), Some(bad), NOW_MS), Err(LinkError::BadSignature), "{bad}");
        }
        assert_eq!(signer().check(id, None, Some(&signature), NOW_MS), Err(LinkError::Unsigned));
        assert_eq!(signer().check(id, Some(&expires), None, NOW_MS), Err(LinkError::Unsigned));
    }
}
