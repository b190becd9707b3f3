//! The parent's KMS call: `Decrypt` of the sealed age identity with `Recipient` (the
//! enclave's attestation document, `RSAES_OAEP_SHA_256`), through the official
//! `aws-sdk-kms` client. The answer, `CiphertextForRecipient`, is opaque to the parent and
//! forwarded untouched; the parent never sees the identity. The request id is kept for the
//! boot record.

use std::fmt;

use aws_sdk_kms::Client;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyEncryptionMechanism, RecipientInfo};

/// Where and how to reach KMS.
#[derive(Clone)]
pub struct KmsSettings {
    /// The AWS region.
    pub region: String,
    /// An endpoint override (`http://127.0.0.1:PORT` for the local emulator); `None` for
    /// the regional endpoint.
    pub endpoint: Option<String>,
    /// Static credentials (local runs); `None` for the instance role (production).
    pub static_credentials: Option<(String, String)>,
}

impl fmt::Debug for KmsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsSettings")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("static_credentials", &self.static_credentials.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A KMS client over rustls (ring), as the parent uses it.
#[must_use]
pub fn client(settings: &KmsSettings) -> Client {
    Client::new(&crate::clients::aws::sdk_config(
        &settings.region,
        settings.endpoint.as_deref(),
        settings.static_credentials.as_ref(),
    ))
}

/// Why KMS did not seal the identity to the enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsRelayError {
    /// KMS refused: its error code (`AccessDeniedException`, ...) and message.
    Refused {
        /// KMS's error code.
        code: String,
        /// KMS's message.
        message: String,
        /// The request id, when KMS gave one.
        request_id: Option<String>,
    },
    /// KMS could not be reached or answered something unusable.
    Unreachable(String),
    /// KMS answered without `CiphertextForRecipient` (it would have returned plaintext).
    NoCiphertextForRecipient,
}

impl fmt::Display for KmsRelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { code, message, request_id } => write!(
                f,
                "KMS refused: {code}: {message} (request id {})",
                request_id.as_deref().unwrap_or("none")
            ),
            Self::Unreachable(e) => write!(f, "KMS unreachable: {e}"),
            Self::NoCiphertextForRecipient => {
                f.write_str("KMS answered without CiphertextForRecipient")
            }
        }
    }
}

impl std::error::Error for KmsRelayError {}

/// KMS's answer for the enclave.
#[derive(Clone)]
pub struct SealedForEnclave {
    /// `CiphertextForRecipient`, to forward untouched.
    pub ciphertext_for_recipient: Vec<u8>,
    /// The request id, for the boot record.
    pub request_id: Option<String>,
    /// The key that decrypted.
    pub key_id: Option<String>,
}

impl fmt::Debug for SealedForEnclave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedForEnclave {{ {} bytes, request_id: {:?}, key_id: {:?} }}",
            self.ciphertext_for_recipient.len(),
            self.request_id,
            self.key_id
        )
    }
}

/// `Decrypt` of `sealed_identity` (the KMS ciphertext blob of the age identity) for the
/// enclave that produced `attestation_document`.
pub async fn decrypt_for_enclave(
    client: &Client,
    key_id: Option<&str>,
    sealed_identity: &[u8],
    attestation_document: &[u8],
) -> Result<SealedForEnclave, KmsRelayError> {
    let recipient = RecipientInfo::builder()
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .attestation_document(Blob::new(attestation_document))
        .build();
    let mut request =
        client.decrypt().ciphertext_blob(Blob::new(sealed_identity)).recipient(recipient);
    if let Some(id) = key_id {
        request = request.key_id(id);
    }
    match request.send().await {
        Ok(out) => {
            let request_id = out.request_id().map(str::to_owned);
            let key_id = out.key_id().map(str::to_owned);
            let ciphertext_for_recipient = out
                .ciphertext_for_recipient()
                .map(|b| b.as_ref().to_vec())
                .ok_or(KmsRelayError::NoCiphertextForRecipient)?;
            Ok(SealedForEnclave { ciphertext_for_recipient, request_id, key_id })
        }
        Err(e) => match e.as_service_error() {
            Some(service) => Err(KmsRelayError::Refused {
                code: service.code().unwrap_or("Unknown").to_owned(),
                message: service.message().unwrap_or_default().to_owned(),
                request_id: service.request_id().map(str::to_owned),
            }),
            None => Err(KmsRelayError::Unreachable(
                aws_sdk_kms::error::DisplayErrorContext(&e).to_string(),
            )),
        },
    }
}
