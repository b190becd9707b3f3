//! HTTPS for the parent's own requests (health reports, the enclave's relay): one request
//! per fresh TLS 1.3 connection, HTTP/1.1, bounded waits, no redirects followed.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use rustls_pki_types::ServerName;

/// Why a request did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsError(pub String);

impl std::fmt::Display for HttpsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpsError {}

/// Splits `https://host[:port]/path`.
fn parse_url(url: &str) -> Result<(String, u16, String), HttpsError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| HttpsError(format!("{url}: only https:// URLs")))?;
    let (authority, path) =
        rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => {
            (h.to_owned(), p.parse().map_err(|_| HttpsError(format!("{url}: bad port")))?)
        }
        None => (authority.to_owned(), 443),
    };
    if host.is_empty() {
        return Err(HttpsError(format!("{url}: no host")));
    }
    Ok((host, port, path))
}

/// Checks a URL once, at configuration time.
pub fn check_url(url: &str) -> Result<(), HttpsError> {
    parse_url(url).map(|_| ())
}

/// The addresses `url`'s host resolves to (an IP literal is its own address).
pub async fn resolve(url: &str) -> Result<Vec<std::net::SocketAddr>, HttpsError> {
    let (host, port, _) = parse_url(url)?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let found = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::lookup_host((host.as_str(), port)),
    )
    .await
    .map_err(|_| HttpsError(format!("{host}: name resolution timed out")))?
    .map_err(|e| HttpsError(format!("{host}: {e}")))?;
    Ok(found.collect())
}

/// One HTTPS request over a fresh TLS 1.3 connection (HTTP/1.1); the response with its
/// body still to be read (a stream, for SSE). Connect and answer are bounded by 10 s each.
pub async fn request(
    tls: &Arc<rustls::ClientConfig>,
    url: &str,
    method: hyper::Method,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<hyper::Response<hyper::body::Incoming>, HttpsError> {
    request_at(tls, url, None, method, headers, body).await
}

/// [`request`] to a given address (already resolved and checked: the name is not looked
/// up again, so what was checked is what is reached); the URL's host still names the
/// server for TLS and `Host`.
pub async fn request_at(
    tls: &Arc<rustls::ClientConfig>,
    url: &str,
    address: Option<std::net::SocketAddr>,
    method: hyper::Method,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<hyper::Response<hyper::body::Incoming>, HttpsError> {
    let (host, port, path) = parse_url(url)?;
    let fail = |what: &str, e: &dyn std::fmt::Display| HttpsError(format!("{what}: {e}"));
    let connect = async {
        match address {
            Some(a) => tokio::net::TcpStream::connect(a).await,
            None => tokio::net::TcpStream::connect((host.as_str(), port)).await,
        }
    };
    let tcp = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| HttpsError(format!("{host}:{port}: connect timed out")))?
        .map_err(|e| fail(&format!("{host}:{port}"), &e))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| fail("server name", &e))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| fail("TLS", &e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| fail("HTTP", &e))?;
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder().method(method).uri(&path).header("host", &host);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(Full::new(body)).map_err(|e| fail("request", &e))?;
    tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .map_err(|_| HttpsError(format!("{host}:{port} did not answer within 10 s")))?
        .map_err(|e| fail("HTTP", &e))
}

/// A TLS 1.3 client trusting `ca`, with a client certificate if given.
pub fn client_tls(
    ca: &[rustls_pki_types::CertificateDer<'static>],
    client: Option<(
        Vec<rustls_pki_types::CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c.clone()).map_err(|e| format!("gateway CA: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((chain, key)) => {
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client cert: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://gw.internal:8443/v1/health").unwrap(),
            ("gw.internal".into(), 8443, "/v1/health".into())
        );
        assert_eq!(parse_url("https://gw").unwrap(), ("gw".into(), 443, "/".into()));
        for bad in ["http://gw/x", "https://:1/x", "https://gw:x/", "gw/x"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
