//! What every AWS client of the parent shares: the HTTPS client (rustls with ring, the same
//! TLS stack as the gRPC server) and where credentials come from.
//!
//! Production uses the instance role: the environment first (`AWS_ACCESS_KEY_ID`, ...,
//! for operators' shells and systemd `Environment=`), then the instance metadata service
//! (`IMDSv2`, token first). Local runs may put static keys in the configuration instead.

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The HTTPS client every SDK client uses.
#[must_use]
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Static keys if given, else the environment, then the instance role (`IMDSv2`).
#[must_use]
pub fn credentials(static_credentials: Option<&(String, String)>) -> SharedCredentialsProvider {
    if let Some((id, secret)) = static_credentials {
        return SharedCredentialsProvider::new(Credentials::new(id, secret, None, None, "static"));
    }
    let provider_config = ProviderConfig::without_region().with_http_client(https_client());
    let imds = ImdsCredentialsProvider::builder().configure(&provider_config).build();
    SharedCredentialsProvider::new(
        CredentialsProviderChain::first_try(
            "environment",
            EnvironmentVariableCredentialsProvider::new(),
        )
        .or_else("instance-role", imds),
    )
}

/// The configuration every client starts from: region, the HTTPS client, credentials and,
/// for local servers, an endpoint override.
#[must_use]
pub fn sdk_config(
    region: &str,
    endpoint: Option<&str>,
    static_credentials: Option<&(String, String)>,
) -> aws_types::SdkConfig {
    let mut config = aws_types::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(region.to_owned()))
        .http_client(https_client())
        .credentials_provider(credentials(static_credentials));
    if let Some(url) = endpoint {
        config = config.endpoint_url(url);
    }
    config.build()
}
