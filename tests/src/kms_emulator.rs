//! A local stand-in for AWS KMS, enough of the KMS JSON 1.1 API for the official
//! `aws-sdk-kms` client: `Encrypt`, `Decrypt` (with and without `Recipient`) and
//! `GenerateRandom`, dispatched on `X-Amz-Target`, with KMS's error shapes
//! (`{"__type": "...Exception", "message": ...}`) and a request id on every answer.
//!
//! With `Recipient`, it does what KMS does for Nitro Enclaves: it verifies the attestation
//! document (with the same verifier as production, against the pinned root it was given),
//! enforces the key's policy on the document's PCRs (the `kms:RecipientAttestation:PCRn`
//! and `ImageSha384` = PCR0 condition keys), and answers with `CiphertextForRecipient`:
//! the plaintext sealed to the document's public key as CMS `EnvelopedData` (RSAES-OAEP
//! with SHA-256 and MGF1-SHA-256, AES-256-CBC), the format the enclave's `kms_unseal`
//! opens.
//!
//! A key made with [`KeySpec::enforcing`] has its whole key policy enforced, as KMS does:
//! each request's `SigV4` access key id is mapped to a principal ARN, and `Encrypt`,
//! `Decrypt`, `CreateGrant` and `PutKeyPolicy` are allowed only if the policy allows that
//! principal the action (`offline_tools::kms_policy::allows`, which the attestation's PCRs
//! feed). `PutKeyPolicy` replaces the policy. Grants are authorised and then not modelled
//! further: nothing honours them. Other keys enforce only the policy's PCR conditions.
//!
//! Ciphertext blobs are this emulator's own format: key id, nonce and AES-256-GCM under
//! the key's material, which lives in memory only (keys are made at start).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64ct::{Base64, Encoding};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use node_verify::attestation_verifier::DocumentTrust;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A KMS key and the policy on its recipients.
#[derive(Clone, Debug)]
pub struct KeySpec {
    /// The key id (the ARN is derived from it).
    pub key_id: String,
    /// PCRs a `Recipient` attestation document must carry (index -> value); empty: any
    /// attested recipient.
    pub recipient_pcrs: BTreeMap<u64, Vec<u8>>,
    /// The whole key policy, enforced on every caller ([`KeySpec::enforcing`]); `None`:
    /// only `recipient_pcrs`.
    pub policy: Option<EnforcedPolicy>,
}

/// A key policy enforced on every request, and who each access key id is.
#[derive(Clone, Debug)]
pub struct EnforcedPolicy {
    /// The policy document.
    pub document: Value,
    /// `SigV4` access key id -> principal ARN. An access key not listed is refused.
    pub principals: BTreeMap<String, String>,
}

impl KeySpec {
    /// The key as a generated key policy describes it (`offline_tools::kms_policy`): its
    /// attested `kms:Decrypt` statement's PCR conditions.
    pub fn from_policy(
        key_id: &str,
        policy: &Value,
    ) -> Result<Self, offline_tools::kms_policy::PolicyError> {
        if offline_tools::kms_policy::allows_unconditioned_decrypt(policy) {
            return Err(offline_tools::kms_policy::PolicyError(
                "the policy allows kms:Decrypt without an attestation condition".into(),
            ));
        }
        Ok(Self {
            key_id: key_id.to_owned(),
            recipient_pcrs: offline_tools::kms_policy::recipient_conditions(policy)?,
            policy: None,
        })
    }

    /// A key whose whole `policy` is enforced, callers identified by `principals`
    /// (access key id -> ARN).
    pub fn enforcing(
        key_id: &str,
        policy: &Value,
        principals: BTreeMap<String, String>,
    ) -> Result<Self, offline_tools::kms_policy::PolicyError> {
        let mut spec = Self::from_policy(key_id, policy)?;
        spec.policy = Some(EnforcedPolicy { document: policy.clone(), principals });
        Ok(spec)
    }
}

/// The emulator's configuration.
#[derive(Clone, Debug)]
pub struct KmsConfig {
    /// The keys.
    pub keys: Vec<KeySpec>,
    /// How `Recipient` documents are authenticated. What KMS does, and the only choice
    /// outside `cargo xtask qemu-boot`: [`pinned_root`], the chain from one root.
    pub attestation: Arc<dyn DocumentTrust>,
}

/// Documents must chain to `root_der` (the sim root locally; AWS's on Nitro).
#[must_use]
pub fn pinned_root(root_der: Vec<u8>) -> Arc<dyn DocumentTrust> {
    Arc::new(node_verify::attestation_verifier::PinnedRoot(root_der))
}

struct Key {
    spec: KeySpec,
    material: LessSafeKey,
    /// The enforced policy's current document (`PutKeyPolicy` replaces it).
    policy: Mutex<Option<EnforcedPolicy>>,
}

/// What a request needs from the enforced policy of `key`, if it has one.
struct Ask<'a> {
    access_key_id: &'a str,
    action: &'a str,
    recipient_pcrs: Option<&'a BTreeMap<u64, Vec<u8>>>,
    bypass_lockout_check: bool,
}

/// `Ok` if `key` has no enforced policy or its policy allows the request.
fn authorize(key: &Key, ask: &Ask<'_>) -> Result<(), KmsError> {
    let guard = key.policy.lock().map_err(|_| KmsError::bad("KMSInternalException", ""))?;
    let Some(policy) = guard.as_ref() else { return Ok(()) };
    let denied = |who: &str| {
        KmsError::bad(
            "AccessDeniedException",
            format!("{who} is not authorized to perform {} on this key", ask.action),
        )
    };
    let principal =
        policy.principals.get(ask.access_key_id).ok_or_else(|| denied(ask.access_key_id))?;
    let request = offline_tools::kms_policy::Request {
        principal,
        action: ask.action,
        recipient_pcrs: ask.recipient_pcrs,
        bypass_lockout_check: ask.bypass_lockout_check,
    };
    if offline_tools::kms_policy::allows(&policy.document, &request) {
        Ok(())
    } else {
        Err(denied(principal))
    }
}

fn ask<'a>(access_key_id: &'a str, action: &'a str) -> Ask<'a> {
    Ask { access_key_id, action, recipient_pcrs: None, bypass_lockout_check: false }
}

struct State {
    keys: Vec<Key>,
    trust: Arc<dyn DocumentTrust>,
    requests: AtomicU64,
    unreachable: AtomicBool,
    log: Mutex<Vec<String>>,
}

/// A running emulator.
pub struct KmsEmulator {
    /// Where it listens (`http://` + this).
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl KmsEmulator {
    /// Starts listening on `127.0.0.1` (an ephemeral port). Needs a tokio runtime.
    pub async fn start(config: KmsConfig) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", config).await
    }

    /// Starts listening on `addr`.
    pub async fn start_on(addr: &str, config: KmsConfig) -> std::io::Result<Self> {
        let rng = SystemRandom::new();
        let mut keys = Vec::new();
        for spec in config.keys {
            let mut material = [0u8; 32];
            rng.fill(&mut material).map_err(|_| std::io::Error::other("no randomness"))?;
            let unbound = UnboundKey::new(&AES_256_GCM, &material)
                .map_err(|_| std::io::Error::other("bad key"))?;
            let policy = Mutex::new(spec.policy.clone());
            keys.push(Key { spec, material: LessSafeKey::new(unbound), policy });
        }
        let state = Arc::new(State {
            keys,
            trust: config.attestation,
            requests: AtomicU64::new(0),
            unreachable: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`, for an endpoint override.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The ARN of `key_id`.
    #[must_use]
    pub fn arn(key_id: &str) -> String {
        format!("arn:aws:kms:us-east-1:111122223333:key/{key_id}")
    }

    /// Makes every request fail as if KMS could not be reached (the connection is closed
    /// without an answer), or back.
    pub fn set_unreachable(&self, on: bool) {
        self.state.unreachable.store(on, Ordering::Release);
    }

    /// One line per request handled: `operation outcome request_id by access-key-id`.
    #[must_use]
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for KmsEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            if state.unreachable.load(Ordering::Acquire) {
                return; // dropped unanswered
            }
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&state), req));
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// A KMS error: HTTP status, `__type`, message.
struct KmsError(StatusCode, &'static str, String);

impl KmsError {
    fn bad(kind: &'static str, message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, kind, message.into())
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    if state.unreachable.load(Ordering::Acquire) {
        // hyper closes the connection without an answer.
        return Err(std::io::Error::other("unreachable"));
    }
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("00000000-0000-4000-8000-{n:012x}");
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let authorization =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let signed = authorization.starts_with("AWS4-HMAC-SHA256 Credential=");
    // Who signed: the access key id, for tests that check where credentials came from.
    let access_key_id = authorization
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .and_then(|c| c.split('/').next())
        .unwrap_or("-")
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let operation = target.strip_prefix("TrentService.").unwrap_or(&target).to_owned();
    let result = if signed {
        serde_json::from_slice::<Value>(&body)
            .map_err(|_| KmsError::bad("SerializationException", "the body is not JSON"))
            .and_then(|input| match operation.as_str() {
                "Encrypt" => encrypt(&state, &input, &access_key_id),
                "Decrypt" => decrypt(&state, &input, &access_key_id),
                "CreateGrant" => create_grant(&state, &input, &access_key_id),
                "PutKeyPolicy" => put_key_policy(&state, &input, &access_key_id),
                "GenerateRandom" => generate_random(&input),
                _ => Err(KmsError::bad("UnknownOperationException", target.clone())),
            })
    } else {
        Err(KmsError::bad("MissingAuthenticationTokenException", "request is not signed (SigV4)"))
    };
    let (status, body, outcome) = match result {
        Ok(v) => (StatusCode::OK, v, "ok".to_owned()),
        Err(KmsError(status, kind, message)) => {
            (status, json!({"__type": kind, "message": message}), kind.to_owned())
        }
    };
    if let Ok(mut log) = state.log.lock() {
        log.push(format!("{operation} {outcome} {request_id} by {access_key_id}"));
    }
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", &request_id)
        .body(Full::new(Bytes::from(body.to_string())));
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

fn b64_field(input: &Value, name: &str) -> Result<Vec<u8>, KmsError> {
    let text = input
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| KmsError::bad("ValidationException", format!("{name} is required")))?;
    Base64::decode_vec(text)
        .map_err(|_| KmsError::bad("ValidationException", format!("{name} is not base64")))
}

fn find_key<'a>(state: &'a State, key_id: &str) -> Result<&'a Key, KmsError> {
    let id = key_id.rsplit('/').next().unwrap_or(key_id);
    state
        .keys
        .iter()
        .find(|k| k.spec.key_id == id)
        .ok_or_else(|| KmsError::bad("NotFoundException", format!("Key '{key_id}' does not exist")))
}

fn encrypt(state: &State, input: &Value, caller: &str) -> Result<Value, KmsError> {
    let key_id = input.get("KeyId").and_then(Value::as_str).unwrap_or_default();
    let key = find_key(state, key_id)?;
    authorize(key, &ask(caller, "kms:Encrypt"))?;
    let plaintext = b64_field(input, "Plaintext")?;
    if plaintext.is_empty() || plaintext.len() > 4096 {
        return Err(KmsError::bad("ValidationException", "Plaintext must be 1 to 4096 bytes"));
    }
    let mut nonce = [0u8; 12];
    SystemRandom::new().fill(&mut nonce).map_err(|_| {
        KmsError(StatusCode::INTERNAL_SERVER_ERROR, "KMSInternalException", String::new())
    })?;
    let id = key.spec.key_id.as_bytes();
    let mut sealed = plaintext;
    key.material
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(id), &mut sealed)
        .map_err(|_| {
            KmsError(StatusCode::INTERNAL_SERVER_ERROR, "KMSInternalException", String::new())
        })?;
    let mut blob = vec![u8::try_from(id.len()).unwrap_or(u8::MAX)];
    blob.extend_from_slice(id);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    Ok(json!({
        "CiphertextBlob": Base64::encode_string(&blob),
        "KeyId": KmsEmulator::arn(&key.spec.key_id),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

fn open_blob<'a>(state: &'a State, blob: &[u8]) -> Result<(&'a Key, Vec<u8>), KmsError> {
    let invalid = || KmsError::bad("InvalidCiphertextException", "");
    let (&len, rest) = blob.split_first().ok_or_else(invalid)?;
    let (id, rest) = rest.split_at_checked(usize::from(len)).ok_or_else(invalid)?;
    let (nonce, sealed) = rest.split_at_checked(12).ok_or_else(invalid)?;
    let id = std::str::from_utf8(id).map_err(|_| invalid())?;
    let key = find_key(state, id).map_err(|_| invalid())?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| invalid())?;
    let mut buf = sealed.to_vec();
    let plain = key
        .material
        .open_in_place(nonce, Aad::from(id.as_bytes()), &mut buf)
        .map_err(|_| invalid())?
        .to_vec();
    Ok((key, plain))
}

/// `CreateGrant`: authorised against the policy, then only acknowledged.
fn create_grant(state: &State, input: &Value, caller: &str) -> Result<Value, KmsError> {
    let key_id = input.get("KeyId").and_then(Value::as_str).unwrap_or_default();
    let key = find_key(state, key_id)?;
    authorize(key, &ask(caller, "kms:CreateGrant"))?;
    let n = state.requests.load(Ordering::Relaxed);
    Ok(json!({"GrantId": format!("grant-{n:08x}"), "GrantToken": format!("token-{n:08x}")}))
}

/// `PutKeyPolicy`: authorised against the current policy, then replaces it.
fn put_key_policy(state: &State, input: &Value, caller: &str) -> Result<Value, KmsError> {
    let key_id = input.get("KeyId").and_then(Value::as_str).unwrap_or_default();
    let key = find_key(state, key_id)?;
    let bypass = input.get("BypassPolicyLockoutSafetyCheck").and_then(Value::as_bool);
    let request =
        Ask { bypass_lockout_check: bypass == Some(true), ..ask(caller, "kms:PutKeyPolicy") };
    authorize(key, &request)?;
    let text = input.get("Policy").and_then(Value::as_str).unwrap_or_default();
    let document: Value = serde_json::from_str(text)
        .map_err(|_| KmsError::bad("MalformedPolicyDocumentException", "the policy is not JSON"))?;
    let mut guard = key.policy.lock().map_err(|_| KmsError::bad("KMSInternalException", ""))?;
    if let Some(policy) = guard.as_mut() {
        policy.document = document;
    }
    Ok(json!({}))
}

fn decrypt(state: &State, input: &Value, caller: &str) -> Result<Value, KmsError> {
    let blob = b64_field(input, "CiphertextBlob")?;
    let (key, plaintext) = open_blob(state, &blob)?;
    if let Some(asked) = input.get("KeyId").and_then(Value::as_str)
        && find_key(state, asked)?.spec.key_id != key.spec.key_id
    {
        return Err(KmsError::bad("IncorrectKeyException", "the ciphertext is for another key"));
    }
    let arn = KmsEmulator::arn(&key.spec.key_id);
    let enforced =
        key.policy.lock().map_err(|_| KmsError::bad("KMSInternalException", ""))?.is_some();
    let Some(recipient) = input.get("Recipient") else {
        // A key whose policy pins PCRs releases its plaintext to attested recipients only:
        // without a document the condition keys are absent and the condition fails.
        authorize(key, &ask(caller, "kms:Decrypt"))?;
        if !key.spec.recipient_pcrs.is_empty() {
            return Err(KmsError::bad(
                "AccessDeniedException",
                "the key policy allows kms:Decrypt only with a Recipient attestation document",
            ));
        }
        return Ok(json!({
            "KeyId": arn,
            "Plaintext": Base64::encode_string(&plaintext),
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }));
    };
    if recipient.get("KeyEncryptionAlgorithm").and_then(Value::as_str) != Some("RSAES_OAEP_SHA_256")
    {
        return Err(KmsError::bad(
            "ValidationException",
            "KeyEncryptionAlgorithm must be RSAES_OAEP_SHA_256",
        ));
    }
    let document = b64_field(recipient, "AttestationDocument")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expect = node_verify::attestation_verifier::Expectations::default();
    let doc = state.trust.verify(&document, now, &expect).map_err(|e| {
        KmsError::bad("ValidationException", format!("invalid attestation document: {e}"))
    })?;
    let pcrs: BTreeMap<u64, Vec<u8>> = doc.pcrs.iter().map(|(i, v)| (*i, v.clone())).collect();
    authorize(key, &Ask { recipient_pcrs: Some(&pcrs), ..ask(caller, "kms:Decrypt") })?;
    // Without an enforced policy, the key's PCR list stands in for the policy's conditions.
    for (index, want) in key.spec.recipient_pcrs.iter().filter(|_| !enforced) {
        if doc.pcrs.get(index) != Some(want) {
            return Err(KmsError::bad(
                "AccessDeniedException",
                format!(
                    "the key policy's kms:RecipientAttestation:PCR{index} condition does not match"
                ),
            ));
        }
    }
    let public_key = doc.public_key.ok_or_else(|| {
        KmsError::bad("ValidationException", "the attestation document has no public key")
    })?;
    let sealed = seal_for_recipient(&public_key, &plaintext)
        .map_err(|e| KmsError::bad("ValidationException", e))?;
    Ok(json!({
        "KeyId": arn,
        "CiphertextForRecipient": Base64::encode_string(&sealed),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

fn generate_random(input: &Value) -> Result<Value, KmsError> {
    let n = input.get("NumberOfBytes").and_then(Value::as_u64).unwrap_or(0);
    if !(1..=1024).contains(&n) {
        return Err(KmsError::bad("ValidationException", "NumberOfBytes must be 1 to 1024"));
    }
    let mut out = vec![0u8; usize::try_from(n).unwrap_or(0)];
    SystemRandom::new().fill(&mut out).map_err(|_| {
        KmsError(StatusCode::INTERNAL_SERVER_ERROR, "KMSInternalException", String::new())
    })?;
    Ok(json!({ "Plaintext": Base64::encode_string(&out) }))
}

// ---- CMS EnvelopedData (DER) ------------------------------------------------------------------

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

const OID_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
const OID_MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

/// `plaintext` sealed to the RSA public key `spki_der` the way KMS seals
/// `CiphertextForRecipient`.
pub fn seal_for_recipient(spki_der: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
    let rng = SystemRandom::new();
    let mut cek = [0u8; 32];
    let mut iv = [0u8; 16];
    rng.fill(&mut cek).map_err(|_| "no randomness")?;
    rng.fill(&mut iv).map_err(|_| "no randomness")?;
    let content = cbc::Encryptor::<aes::Aes256>::new(&cek.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let blob = seal_parts(spki_der, &cek, &iv, &content);
    zeroize::Zeroize::zeroize(&mut cek);
    blob
}

/// KMS's CMS layout around parts the caller chooses: `cek` encrypted to `spki_der` with
/// RSAES-OAEP-SHA-256, and `content` (already AES-256-CBC ciphertext under `iv`) as is.
/// A hostile parent's tool: it can put anything in the unauthenticated CBC layer.
pub fn seal_parts(
    spki_der: &[u8],
    cek: &[u8],
    iv: &[u8; 16],
    content: &[u8],
) -> Result<Vec<u8>, String> {
    use rsa::pkcs8::DecodePublicKey;
    let public = rsa::RsaPublicKey::from_public_key_der(spki_der)
        .map_err(|e| format!("the attestation public key is not RSA: {e}"))?;
    let encrypted_key = public
        .encrypt(&mut rand::rngs::OsRng, rsa::Oaep::new::<sha2::Sha256>(), cek)
        .map_err(|e| format!("RSA-OAEP: {e}"))?;
    let sha256 = seq(&[&der(0x06, OID_SHA256)]);
    let oaep_params =
        seq(&[&der(0xa0, &sha256), &der(0xa1, &seq(&[&der(0x06, OID_MGF1), &sha256]))]);
    let key_alg = seq(&[&der(0x06, OID_RSAES_OAEP), &oaep_params]);
    let ski = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let recipient = seq(&[
        &der(0x02, &[2]),                // version 2: subjectKeyIdentifier
        &der(0x80, &ski.as_ref()[..20]), // [0] IMPLICIT SubjectKeyIdentifier
        &key_alg,
        &der(0x04, &encrypted_key),
    ]);
    let content_info = seq(&[
        &der(0x06, OID_DATA),
        &seq(&[&der(0x06, OID_AES256_CBC), &der(0x04, iv)]),
        &der(0x80, content), // [0] IMPLICIT encryptedContent
    ]);
    let enveloped = seq(&[&der(0x02, &[2]), &der(0x31, &recipient), &content_info]);
    Ok(seq(&[&der(0x06, OID_ENVELOPED_DATA), &der(0xa0, &enveloped)]))
}

/// The parent's own KMS client (`aws-sdk-kms`), pointed at an emulator with the local keys.
#[must_use]
pub fn sdk_client(endpoint: &str) -> aws_sdk_kms::Client {
    sdk_client_as(endpoint, "AKIDLOCAL")
}

/// [`sdk_client`] signing with another access key id (a principal of an enforced policy).
#[must_use]
pub fn sdk_client_as(endpoint: &str, access_key_id: &str) -> aws_sdk_kms::Client {
    parent_shim::boot::kms_relay::client(&parent_shim::boot::kms_relay::KmsSettings {
        region: "us-east-1".into(),
        endpoint: Some(endpoint.to_owned()),
        static_credentials: Some((access_key_id.into(), "local-secret".into())),
    })
}

/// What an operator does once per share set: encrypt the age identity under the KMS key
/// (`aws kms encrypt`), here through the official SDK against `endpoint`. Returns the
/// `CiphertextBlob`.
pub async fn encrypt_with_sdk(
    endpoint: &str,
    key_id: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, String> {
    let client = sdk_client(endpoint);
    let out = client
        .encrypt()
        .key_id(key_id)
        .plaintext(aws_sdk_kms::primitives::Blob::new(plaintext))
        .send()
        .await
        .map_err(|e| aws_sdk_kms::error::DisplayErrorContext(&e).to_string())?;
    out.ciphertext_blob().map(|b| b.as_ref().to_vec()).ok_or_else(|| "no CiphertextBlob".into())
}
