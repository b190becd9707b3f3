//! A boot's inputs, step 1 of the daemon: the publisher's manifest and the KMS-sealed
//! identity read whole (both small), and the share file's stream opened against the
//! manifest's length ([`crate::boot::share_stream`]). Nothing here is plaintext.

use crate::boot::s3_fetch::{self, FetchError, S3Settings};
use crate::boot::share_stream::ShareStream;
use crate::daemon::config::Config;
use crate::share_manifest::SignedManifest;

/// The encrypted inputs and the share file's manifest, in memory only.
pub struct Inputs {
    /// The encrypted share file, arriving (the request is made; the bytes come as the
    /// boot takes them).
    pub share_file: ShareStream,
    /// The KMS-encrypted age identity.
    pub sealed_identity: Vec<u8>,
    /// The publisher's signed manifest of the share file (its signature is the enclave's
    /// to check).
    pub manifest: SignedManifest,
}

/// Step 1: the manifest and the sealed identity, from S3 or files, and the share file's
/// stream opened (its length checked against the manifest). A share file without a manifest,
/// or with one that does not parse, is refused here: the enclave would refuse it anyway.
pub async fn fetch_inputs(config: &Config) -> Result<Inputs, FetchError> {
    let s3 = s3_fetch::client(&S3Settings {
        region: config.s3.region.clone(),
        endpoint: config.s3.endpoint.clone(),
        static_credentials: config
            .s3
            .access_key_id
            .clone()
            .zip(config.s3.secret_access_key.clone()),
        force_path_style: config.s3.force_path_style,
    });
    let manifest_url = config.shares.manifest_url();
    let manifest = s3_fetch::fetch(&s3, &manifest_url).await?;
    let manifest = SignedManifest::parse(&manifest.bytes)
        .map_err(|e| FetchError::BadManifest(format!("{manifest_url}: {e}")))?;
    let sealed_identity = s3_fetch::fetch(&s3, &config.shares.sealed_identity).await?;
    let expected_len = manifest.manifest.ciphertext_len;
    let share_file = ShareStream::open(&s3, &config.shares.share_file, expected_len).await?;
    Ok(Inputs { share_file, sealed_identity: sealed_identity.bytes, manifest })
}
