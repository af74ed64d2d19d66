//! Secrets at rest: envelope encryption with a KMS data key per sealed value, AES-256-GCM.
//!
//! Sealed layout: `0x02 | u16 BE length of the encrypted data key | encrypted data key |
//! 12-byte nonce | ciphertext with tag`. Only KMS can turn the encrypted data key back into
//! the key, so neither the table nor a backup holds anything readable.
//!
//! A value is bound to its build: the data key is made with the KMS encryption context
//! `{"source_id": …}` (KMS decrypts it only with the same context, and CloudTrail shows the build
//! of every decrypt), and the build's id is the AES-GCM associated data. A value sealed for one
//! build does not open for another. Values of format `0x01`, sealed before the binding, still
//! open (without it) until their builds expire.

use crate::built::Built;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_kms::Client;
use shuttle_core::error::ServiceError;
use shuttle_core::ports::{OpenError, Sealer};
use uuid::Uuid;
use zeroize::Zeroizing;

const FORMAT_VERSION: u8 = 2;
/// Sealed before values were bound to their build.
const UNBOUND_VERSION: u8 = 1;
/// The KMS encryption context's key.
const CONTEXT_KEY: &str = "source_id";
const NONCE_LEN: usize = 12;

pub struct KmsSealer {
    client: Built<Client>,
    key_id: String,
}

fn fail(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::new("kms", error)
}

impl KmsSealer {
    pub fn new(client: impl Into<Built<Client>>, key_id: &str) -> Self {
        Self { client: client.into(), key_id: key_id.to_owned() }
    }

    /// Creates a symmetric key and returns its id (tests and the local stack).
    pub async fn create_key(client: &Client) -> Result<String, ServiceError> {
        let output = client.create_key().description("build shuttle secrets").send().await.map_err(|e| fail(DisplayErrorContext(e)))?;
        output.key_metadata().map(|m| m.key_id().to_owned()).ok_or_else(|| fail("create_key returned no key"))
    }

    fn cipher(key: &[u8]) -> Result<Aes256Gcm, ServiceError> {
        Aes256Gcm::new_from_slice(key).map_err(|_| fail("the data key is not 256 bits"))
    }
}

#[async_trait]
impl Sealer for KmsSealer {
    async fn seal(&self, plaintext: &[u8], source_id: Uuid) -> Result<Vec<u8>, ServiceError> {
        let build = source_id.to_string();
        let data_key = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(CONTEXT_KEY, &build)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        let key = Zeroizing::new(data_key.plaintext().ok_or_else(|| fail("no plaintext data key"))?.as_ref().to_vec());
        let encrypted_key = data_key.ciphertext_blob().ok_or_else(|| fail("no encrypted data key"))?.as_ref();
        let key_len = u16::try_from(encrypted_key.len()).map_err(|_| fail("encrypted data key too long"))?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let payload = Payload { msg: plaintext, aad: build.as_bytes() };
        let ciphertext = Self::cipher(&key)?.encrypt(&nonce, payload).map_err(|_| fail("encryption failed"))?;

        let mut sealed = Vec::with_capacity(3 + encrypted_key.len() + NONCE_LEN + ciphertext.len());
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&key_len.to_be_bytes());
        sealed.extend_from_slice(encrypted_key);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    async fn open(&self, sealed: &[u8], source_id: Uuid) -> Result<Vec<u8>, OpenError> {
        let malformed = || OpenError::Refused("the sealed value is malformed".into());
        let (&version, rest) = sealed.split_first().ok_or_else(malformed)?;
        let bound = match version {
            FORMAT_VERSION => true,
            UNBOUND_VERSION => false,
            _ => return Err(malformed()),
        };
        if rest.len() < 2 {
            return Err(malformed());
        }
        let build = source_id.to_string();
        let key_len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let rest = &rest[2..];
        if rest.len() < key_len + NONCE_LEN {
            return Err(malformed());
        }
        let (encrypted_key, rest) = rest.split_at(key_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let mut decrypt = self.client.decrypt().key_id(&self.key_id).ciphertext_blob(Blob::new(encrypted_key));
        if bound {
            decrypt = decrypt.encryption_context(CONTEXT_KEY, &build);
        }
        let data_key = decrypt.send().await.map_err(|e| {
            // KMS' answer for a data key altered, or asked for under another build's context.
            match e.as_service_error().filter(|e| e.is_invalid_ciphertext_exception() || e.is_incorrect_key_exception()) {
                Some(refusal) => OpenError::Refused(format!("KMS refused the data key ({refusal}): altered, or sealed for another build")),
                None => fail(DisplayErrorContext(e)).into(),
            }
        })?;
        let key = Zeroizing::new(data_key.plaintext().ok_or_else(|| fail("no plaintext data key"))?.as_ref().to_vec());
        let aad: &[u8] = if bound { build.as_bytes() } else { b"" };
        Self::cipher(&key)?
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
            .map_err(|_| OpenError::Refused("decryption failed: the sealed value was altered, or sealed for another build".into()))
    }
}
