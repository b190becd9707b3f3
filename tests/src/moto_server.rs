//! S3 and `CloudWatch` Logs on loopback: `moto` in server mode, a real implementation of
//! those protocols that this project did not write, driven by the official `aws-sdk-*`
//! clients exactly as production drives AWS. `cargo xtask test` and `cargo xtask demo`
//! install it (a virtualenv in the tool cache, [`crate::tool_cache`]); `MOTO_SERVER`
//! overrides the path.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The alias of the key S3 encrypts the inputs under (SSE-KMS), apart from the identity's.
pub const BUCKET_KEY_ALIAS: &str = "alias/sign-service-inputs";

/// A running `moto_server`, killed on drop.
pub struct MotoServer {
    child: Child,
    addr: SocketAddr,
    /// The bucket key's ARN, once looked up or created.
    bucket_key: tokio::sync::OnceCell<String>,
}

/// Where `moto_server` is: `$MOTO_SERVER`, else the virtualenv the xtask setup makes.
pub fn server_binary() -> Result<PathBuf, String> {
    let path = match std::env::var_os("MOTO_SERVER") {
        Some(p) => PathBuf::from(p),
        None => crate::tool_cache::moto_venv()
            .ok_or("no tool cache: set SIGN_SERVICE_CACHE or HOME, or MOTO_SERVER")?
            .join("bin/moto_server"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: `cargo xtask test` (or `cargo xtask demo`) installs moto, the S3 and \
             CloudWatch Logs stand-in",
            path.display()
        ))
    }
}

/// Whether the server at `addr` answers moto's own API (`/moto-api/data.json`) with 200.
fn answers_as_moto(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /moto-api/data.json HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

impl MotoServer {
    /// Starts [`server_binary`] on a free loopback port, see [`MotoServer::start_with`].
    pub fn start() -> Result<Self, String> {
        Self::start_with(&server_binary()?)
    }

    /// Starts `binary` on a free loopback port and waits until it accepts connections.
    pub fn start_with(binary: &Path) -> Result<Self, String> {
        let mut last = String::new();
        // The port is free when chosen; another process could take it before moto binds,
        // in which case moto exits and we try another.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let mut child = Command::new(binary)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_mins(1);
            loop {
                // Ready when moto itself answers there and is still running: a listener that
                // merely accepts may be another process that took the port first (moto then
                // exits), and tests would later find the port closed.
                if answers_as_moto(addr) && matches!(child.try_wait(), Ok(None)) {
                    return Ok(Self { child, addr, bucket_key: tokio::sync::OnceCell::new() });
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("moto_server exited: {status}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("moto_server did not start listening within 60 s".into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Err(last)
    }

    /// The endpoint URL for SDK clients.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The S3 settings a client (or `parent-shim`'s `[s3]` section) needs for this server.
    #[must_use]
    pub fn s3_settings(&self) -> parent_shim::boot::s3_fetch::S3Settings {
        parent_shim::boot::s3_fetch::S3Settings {
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint()),
            static_credentials: Some(("AKIDLOCAL".into(), "local-secret".into())),
            force_path_style: true,
        }
    }

    /// The bucket key (`BUCKET_KEY_ALIAS`, created in moto's KMS if missing): S3 encrypts
    /// the inputs under it (SSE-KMS), never under the identity's key. Looked up once.
    pub async fn bucket_key(&self) -> Result<String, String> {
        self.bucket_key.get_or_try_init(|| self.find_or_create_bucket_key()).await.cloned()
    }

    async fn find_or_create_bucket_key(&self) -> Result<String, String> {
        let kms =
            parent_shim::boot::kms_relay::client(&parent_shim::boot::kms_relay::KmsSettings {
                region: "us-east-1".into(),
                endpoint: Some(self.endpoint()),
                static_credentials: Some(("AKIDLOCAL".into(), "local-secret".into())),
            });
        let err = |e: &dyn std::fmt::Display| e.to_string();
        if let Ok(found) = kms.describe_key().key_id(BUCKET_KEY_ALIAS).send().await
            && let Some(arn) = found.key_metadata().and_then(|m| m.arn())
        {
            return Ok(arn.to_owned());
        }
        let created = kms
            .create_key()
            .description("sign-service inputs (S3 SSE-KMS bucket key)")
            .send()
            .await
            .map_err(|e| err(&aws_sdk_kms::error::DisplayErrorContext(&e)))?;
        let meta = created.key_metadata().ok_or("CreateKey returned no metadata")?;
        kms.create_alias()
            .alias_name(BUCKET_KEY_ALIAS)
            .target_key_id(meta.key_id())
            .send()
            .await
            .map_err(|e| err(&aws_sdk_kms::error::DisplayErrorContext(&e)))?;
        meta.arn().map(str::to_owned).ok_or_else(|| "CreateKey returned no ARN".into())
    }

    /// Creates `bucket` if needed and stores `bytes` at `key` with user metadata, as the
    /// runbook uploads the inputs: SSE-KMS under the bucket key, with an S3 Bucket Key.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        metadata: &[(&str, &str)],
    ) -> Result<(), String> {
        let bucket_key = self.bucket_key().await?;
        let s3 = parent_shim::boot::s3_fetch::client(&self.s3_settings());
        let exists = s3.head_bucket().bucket(bucket).send().await.is_ok();
        if !exists {
            s3.create_bucket()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())?;
        }
        let mut put = s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(bucket_key)
            .bucket_key_enabled(true)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes));
        for (k, v) in metadata {
            put = put.metadata(*k, *v);
        }
        put.send().await.map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())?;
        Ok(())
    }

    /// How `key` is stored: (server-side encryption, its KMS key, bucket key enabled), as
    /// `HeadObject` reports them.
    pub async fn encryption_of(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(Option<String>, Option<String>, Option<bool>), String> {
        let s3 = parent_shim::boot::s3_fetch::client(&self.s3_settings());
        let head = s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())?;
        Ok((
            head.server_side_encryption().map(|e| e.as_str().to_owned()),
            head.ssekms_key_id().map(str::to_owned),
            head.bucket_key_enabled(),
        ))
    }

    /// Deletes `key` from `bucket`.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), String> {
        let s3 = parent_shim::boot::s3_fetch::client(&self.s3_settings());
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(&e).to_string())?;
        Ok(())
    }
}

impl MotoServer {
    /// `CloudWatch` Logs settings for this server.
    #[must_use]
    pub fn logs_settings(
        &self,
        log_group: &str,
        log_stream: &str,
    ) -> parent_shim::report::cloudwatch_logs::CloudWatchSettings {
        parent_shim::report::cloudwatch_logs::CloudWatchSettings {
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint()),
            static_credentials: Some(("AKIDLOCAL".into(), "local-secret".into())),
            log_group: log_group.into(),
            log_stream: log_stream.into(),
            audit_log_stream: format!("{log_stream}/audit"),
            queue_capacity: 1000,
            flush_interval: std::time::Duration::from_secs(1),
        }
    }

    /// Creates a log group, as the instance's provisioning would.
    pub async fn create_log_group(&self, name: &str) -> Result<(), String> {
        let logs = parent_shim::report::cloudwatch_logs::client(&self.logs_settings(name, "-"));
        logs.create_log_group()
            .log_group_name(name)
            .send()
            .await
            .map_err(|e| aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e).to_string())?;
        Ok(())
    }

    /// Every message in a log stream, oldest first.
    pub async fn log_messages(&self, group: &str, stream: &str) -> Result<Vec<String>, String> {
        let logs = parent_shim::report::cloudwatch_logs::client(&self.logs_settings(group, stream));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = logs
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&e).to_string())?;
            let before = out.len();
            out.extend(page.events().iter().filter_map(|e| e.message().map(str::to_owned)));
            let next = page.next_forward_token().map(str::to_owned);
            if out.len() == before || next == token {
                return Ok(out);
            }
            token = next;
        }
    }
}

impl MotoServer {
    /// The server's process id (for a caller that must end it from a signal handler).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
