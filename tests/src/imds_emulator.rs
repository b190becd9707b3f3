//! The EC2 instance metadata service (`IMDSv2`), as much as an instance role needs: a session
//! token from `PUT /latest/api/token`, then the role's name and its temporary credentials,
//! refused without the token. The parent's credential chain is pointed at it with
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`, exactly as the SDK would reach the real one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

/// The role the emulated instance has.
pub const ROLE: &str = "sign-service-parent";
/// The access key id of the role's temporary credentials.
pub const ACCESS_KEY_ID: &str = "ASIAIMDSEMULATOR0001";
const TOKEN: &str = "imds-session-token-0001";

/// A running emulator; stops when dropped.
pub struct ImdsEmulator {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ImdsEmulator {
    /// Starts on a loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&log);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        std::future::ready(Ok::<_, std::convert::Infallible>(handle(&log, &req)))
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Ok(Self { addr, log, task })
    }

    /// The value for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One line per request: `METHOD path status`.
    #[must_use]
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for ImdsEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn handle(log: &Mutex<Vec<String>>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let has_token = req
        .headers()
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t == TOKEN);
    let creds_prefix = "/latest/meta-data/iam/security-credentials/";
    let (status, body) = match (req.method(), path.as_str()) {
        (&Method::PUT, "/latest/api/token")
            if req.headers().contains_key("x-aws-ec2-metadata-token-ttl-seconds") =>
        {
            (StatusCode::OK, TOKEN.to_owned())
        }
        (&Method::GET, _) if !has_token => (StatusCode::UNAUTHORIZED, String::new()),
        (&Method::GET, p) if p == creds_prefix => (StatusCode::OK, ROLE.to_owned()),
        (&Method::GET, p) if p.strip_prefix(creds_prefix) == Some(ROLE) => (
            StatusCode::OK,
            serde_json::json!({
                "Code": "Success",
                "LastUpdated": "2026-11-25T00:00:00Z",
                "Type": "AWS-HMAC",
                "AccessKeyId": ACCESS_KEY_ID,
                "SecretAccessKey": "imds-emulator-secret-access-key",
                "Token": "imds-emulator-session-token",
                "Expiration": "2099-01-01T00:00:00Z"
            })
            .to_string(),
        ),
        _ => (StatusCode::NOT_FOUND, String::new()),
    };
    if let Ok(mut l) = log.lock() {
        l.push(format!("{} {path} {}", req.method(), status.as_u16()));
    }
    Response::builder()
        .status(status)
        // The token's lifetime, which the SDK requires with the token.
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
