//! Fetching the encrypted inputs: `s3://bucket/key` through the official `aws-sdk-s3`
//! client (endpoint override for local servers), or `file://` for local runs. The bytes
//! stay in memory; nothing is written to disk. Both inputs are ciphertext (the age file,
//! and KMS's `CiphertextBlob` of the identity); SSE-KMS on the objects is S3's business.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;

/// Where and how to reach S3.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// The region.
    pub region: String,
    /// An endpoint override (a local S3 server).
    pub endpoint: Option<String>,
    /// Static credentials (local runs); `None` for the instance role.
    pub static_credentials: Option<(String, String)>,
    /// Path-style addressing (`endpoint/bucket/key`), as local servers want.
    pub force_path_style: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("static_credentials", &self.static_credentials.as_ref().map(|_| "<set>"))
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

/// An S3 client over rustls (ring).
#[must_use]
pub fn client(settings: &S3Settings) -> Client {
    let shared = crate::clients::aws::sdk_config(
        &settings.region,
        settings.endpoint.as_deref(),
        settings.static_credentials.as_ref(),
    );
    // Local S3 servers want path-style addressing.
    let config =
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(settings.force_path_style);
    Client::from_conf(config.build())
}

/// Why an input could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The URL is neither `s3://bucket/key` nor `file://path`.
    BadUrl(String),
    /// The object or file does not exist.
    NotFound(String),
    /// S3 refused (`AccessDenied`, ...): its code and message.
    Refused(String),
    /// S3 or the file could not be read.
    Unreachable(String),
    /// The share file's manifest does not parse: where and why.
    BadManifest(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadUrl(u) => {
                write!(f, "unsupported input URL {u} (s3://bucket/key or file://path)")
            }
            Self::NotFound(u) => write!(f, "{u} does not exist"),
            Self::Refused(e) => write!(f, "S3 refused: {e}"),
            Self::Unreachable(e) => write!(f, "cannot fetch: {e}"),
            Self::BadManifest(e) => write!(f, "share manifest refused: {e}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// An input's bytes and, for S3 objects, their user metadata (`x-amz-meta-*`).
#[derive(Clone)]
pub struct Fetched {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// User metadata (e.g. `accounts`).
    pub metadata: HashMap<String, String>,
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fetched {{ {} bytes, metadata: {:?} }}", self.bytes.len(), self.metadata)
    }
}

/// `s3://bucket/key` through `client`, or `file://path`.
pub async fn fetch(client: &Client, url: &str) -> Result<Fetched, FetchError> {
    if let Some(path) = url.strip_prefix("file://") {
        return match std::fs::read(path) {
            Ok(bytes) => Ok(Fetched { bytes, metadata: HashMap::new() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(FetchError::NotFound(url.to_owned()))
            }
            Err(e) => Err(FetchError::Unreachable(format!("{url}: {e}"))),
        };
    }
    let (bucket, key) = bucket_and_key(url)?;
    let out =
        client.get_object().bucket(bucket).key(key).send().await.map_err(|e| get_error(url, &e))?;
    let metadata = out.metadata().cloned().unwrap_or_default();
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| FetchError::Unreachable(format!("{url}: {e}")))?
        .into_bytes()
        .to_vec();
    Ok(Fetched { bytes, metadata })
}

/// `s3://bucket/key` split.
pub(crate) fn bucket_and_key(url: &str) -> Result<(&str, &str), FetchError> {
    url.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| FetchError::BadUrl(url.to_owned()))
}

/// A failed `GetObject` of `url`, typed.
pub(crate) fn get_error<R: fmt::Debug>(
    url: &str,
    e: &aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError, R>,
) -> FetchError {
    match e.as_service_error() {
        Some(s) if s.is_no_such_key() => FetchError::NotFound(url.to_owned()),
        Some(s) => FetchError::Refused(format!(
            "{}: {}",
            s.code().unwrap_or("Unknown"),
            s.message().unwrap_or_default()
        )),
        None => FetchError::Unreachable(aws_sdk_s3::error::DisplayErrorContext(e).to_string()),
    }
}
