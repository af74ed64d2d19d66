//! Secrets at rest: envelope encryption with a KMS data key per sealed value, AES-256-GCM.
//!
//! Sealed layout: `0x01 | u16 BE length of the encrypted data key | encrypted data key |
//! 12-byte nonce | ciphertext with tag`. Only KMS can turn the encrypted data key back into
//! the key, so neither the table nor a backup holds anything readable.

use crate::built::Built;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_kms::Client;
use shuttle_core::error::ServiceError;
use shuttle_core::ports::Sealer;
use zeroize::Zeroizing;

const FORMAT_VERSION: u8 = 1;
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
    async fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let data_key = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        let key = Zeroizing::new(data_key.plaintext().ok_or_else(|| fail("no plaintext data key"))?.as_ref().to_vec());
        let encrypted_key = data_key.ciphertext_blob().ok_or_else(|| fail("no encrypted data key"))?.as_ref();
        let key_len = u16::try_from(encrypted_key.len()).map_err(|_| fail("encrypted data key too long"))?;
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = Self::cipher(&key)?.encrypt(&nonce, plaintext).map_err(|_| fail("encryption failed"))?;

        let mut sealed = Vec::with_capacity(3 + encrypted_key.len() + NONCE_LEN + ciphertext.len());
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&key_len.to_be_bytes());
        sealed.extend_from_slice(encrypted_key);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    async fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let malformed = || fail("sealed value is malformed");
        let (&version, rest) = sealed.split_first().ok_or_else(malformed)?;
        if version != FORMAT_VERSION || rest.len() < 2 {
            return Err(malformed());
        }
        let key_len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let rest = &rest[2..];
        if rest.len() < key_len + NONCE_LEN {
            return Err(malformed());
        }
        let (encrypted_key, rest) = rest.split_at(key_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let data_key = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(encrypted_key))
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e)))?;
        let key = Zeroizing::new(data_key.plaintext().ok_or_else(|| fail("no plaintext data key"))?.as_ref().to_vec());
        Self::cipher(&key)?
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| fail("decryption failed: the sealed value was altered"))
    }
}
