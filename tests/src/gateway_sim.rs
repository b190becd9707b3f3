//! The Sign Gateway simulator: a gRPC client with its own client certificate (mutual TLS)
//! that checks the node's attestation, then coordinates FROST sessions with the other
//! parties' shares (from `signservice-offline deal`), checks every enclave answer against the attested
//! answer key, aggregates, and verifies each signature with an independent verifier under
//! the account's published group key.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use frost_core::Ciphersuite;
use parent_shim::serve::grpc_bridge::pb;
use parent_shim::serve::grpc_bridge::pb::sign_service_client::SignServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use wire::session_signatures as signed;
use wire::{Scheme, WireMessage};

use crate::gateway::{Grant, party, verify_independently};
use crate::share_gen::files;

/// One account as the gateway knows it.
#[derive(Clone)]
pub struct Account {
    /// The account id.
    pub account_id: String,
    /// Its scheme.
    pub scheme: Scheme,
    /// Party 2's key package (serialized, without the envelope).
    pub their_share: Vec<u8>,
    /// frost's public key package (for aggregation).
    pub public_key_package: Vec<u8>,
    /// The published group key (RFC 8032 / BIP-340 x-only).
    pub group_key: Vec<u8>,
    /// The newest share file epoch the gateway knows was published for it (the deal's,
    /// which its manifest signs):
    /// every grant carries it as the lowest epoch accepted.
    pub min_epoch: u64,
}

/// Reads `gateway_shares.json`, `group_keys.json` and `deal.json` (the epoch) from a
/// `signservice-offline deal` directory.
pub fn load_accounts(dir: &Path) -> Result<Vec<Account>, String> {
    let read = |f: &str| -> Result<serde_json::Value, String> {
        let bytes = std::fs::read(dir.join(f)).map_err(|e| format!("{f}: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{f}: {e}"))
    };
    let (shares, keys) = (read(files::GATEWAY_SHARES)?, read(files::GROUP_KEYS)?);
    // The newest epoch the gateway knows was published: the deal's (its manifest's).
    let min_epoch = read(files::DEAL)?["epoch"].as_u64().ok_or("the deal has no epoch")?;
    let (Some(shares), Some(keys)) = (shares.as_array(), keys.as_array()) else {
        return Err("expected JSON arrays".into());
    };
    shares
        .iter()
        .zip(keys)
        .map(|(s, k)| {
            let text = |v: &serde_json::Value, f: &str| {
                v[f].as_str().map(str::to_owned).ok_or_else(|| format!("missing {f}"))
            };
            let scheme = match text(s, "scheme")?.as_str() {
                "ed25519" => Scheme::Ed25519,
                "secp256k1-tr" => Scheme::Secp256k1Tr,
                other => return Err(format!("unknown scheme {other}")),
            };
            let share = s["shares"][0].as_str().ok_or("missing shares")?;
            let envelope = Base64::decode_vec(share).map_err(|e| e.to_string())?;
            Ok(Account {
                account_id: text(s, "account_id")?,
                scheme,
                their_share: envelope.get(2..).ok_or("short share")?.to_vec(),
                public_key_package: Base64::decode_vec(&text(k, "public_key_package")?)
                    .map_err(|e| e.to_string())?,
                group_key: hex_decode(&text(k, "group_key")?)?,
                min_epoch,
            })
        })
        .collect()
}

fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| "bad hex".to_owned())
        })
        .collect()
}

/// A gRPC client over mutual TLS.
pub async fn connect(
    endpoint: &str,
    server_ca_pem: &str,
    client: &crate::tls_certs::Pem,
) -> Result<SignServiceClient<Channel>, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca_pem))
        .identity(Identity::from_pem(&client.cert, &client.key))
        .domain_name("localhost");
    let channel = Channel::from_shared(endpoint.to_owned())
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    Ok(SignServiceClient::new(channel))
}

/// Asks for a fresh attestation over a random nonce, verifies it against `root_der` and the
/// pinned `pcrs` (`node_verify::relying_party`), and returns the enclave's answer key.
pub async fn attested_answer_key(
    api: &mut SignServiceClient<Channel>,
    root_der: &[u8],
    pcrs: &PcrPolicy,
) -> Result<[u8; 32], String> {
    let trust = node_verify::attestation_verifier::PinnedRoot(root_der.to_vec());
    attested_answer_key_with(api, &RelyingParty { trust: &trust, pcrs }).await
}

/// [`attested_answer_key`] for the relying party `rp`.
pub async fn attested_answer_key_with(
    api: &mut SignServiceClient<Channel>,
    rp: &RelyingParty<'_>,
) -> Result<[u8; 32], String> {
    let nonce: [u8; 32] = rand::random();
    let doc = api
        .get_attestation(pb::GetAttestationRequest { nonce: nonce.to_vec() })
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .document;
    rp.answer_key(&doc, &nonce, now_secs()).map_err(|e| e.to_string())
}

/// The PCR policy that pins exactly `pcrs`.
#[must_use]
pub fn pinned(pcrs: &BTreeMap<u64, Vec<u8>>) -> PcrPolicy {
    PcrPolicy::Pinned(pcrs.clone())
}

/// What a relying party learns from `GetStatus` once it has checked the enclave's signed
/// Loaded statement under `answer_key` (from an attestation it verified) and that its epoch
/// is at least `min_epoch`: the file's SHA-256 and the account count, as the enclave itself
/// computed them.
pub fn verified_load(
    status: &pb::GetStatusResponse,
    answer_key: &[u8; 32],
    min_epoch: u64,
) -> Result<([u8; 32], u64), String> {
    let sha: [u8; 32] = status
        .share_file_sha256
        .as_slice()
        .try_into()
        .map_err(|_| "share_file_sha256 is not 32 bytes".to_owned())?;
    let facts = signed::LoadedFacts {
        boot_nonce: &status.boot_nonce,
        ciphertext_sha256: sha,
        epoch: status.epoch,
        accounts: status.accounts,
        plaintext_bytes: status.plaintext_bytes,
        loaded_at_unix_ms: status.enclave_loaded_at_unix_ms,
    };
    node_verify::relying_party::check_loaded(answer_key, &facts, &status.loaded_signature)
        .and_then(|()| node_verify::relying_party::check_epoch(status.epoch, min_epoch))
        .map(|()| (sha, status.accounts))
        .map_err(|e| e.to_string())
}

pub use node_verify::relying_party::{PcrPolicy, RelyingParty};

/// A signature the gateway produced and checked.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The account.
    pub account_id: String,
    /// Its scheme.
    pub scheme: Scheme,
    /// The key it verifies under (standard encoding).
    pub group_key: Vec<u8>,
    /// The message.
    pub message: Vec<u8>,
    /// The signature (RFC 8032 / BIP-340, 64 bytes).
    pub signature: Vec<u8>,
    /// Whether the independent verifier accepted it.
    pub verified: bool,
    /// Time from the commit call to the sign answer.
    pub latency: Duration,
    /// The audit chain's anchors the two answers carried, signed by the enclave: what the
    /// gateway keeps (`parent-shim audit-verify --anchors`).
    pub anchors: [Anchor; 2],
}

pub use node_verify::audit_trail::Anchor;

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The gRPC scheme value of a wire scheme.
#[must_use]
pub fn pb_scheme(scheme: Scheme) -> i32 {
    match scheme {
        Scheme::Ed25519 => pb::Scheme::Ed25519 as i32,
        Scheme::Secp256k1Tr => pb::Scheme::Secp256k1Tr as i32,
    }
}

/// The gRPC round-1 request carrying `grant`.
#[must_use]
pub fn commit_request(grant: &Grant) -> pb::CommitRequest {
    pb::CommitRequest {
        scheme: pb_scheme(grant.scheme),
        account_id: grant.account_id.clone(),
        session_id: grant.session_id.to_vec(),
        message_sha256: grant.message_sha256.to_vec(),
        expires_at_unix: grant.expires_at_unix,
        authorization: grant.authorization.to_vec(),
        min_epoch: grant.min_epoch,
    }
}

/// One session: grant, round 1, the other party's round 1, package, round 2, aggregate,
/// verify. `session_id` must be fresh. The grant is signed with the demo gateway key.
pub async fn sign(
    api: &mut SignServiceClient<Channel>,
    answer_key: &[u8; 32],
    account: &Account,
    session_id: [u8; 16],
    message: &[u8],
) -> Result<Signed, String> {
    let via = &mut Via::Grpc(api);
    sign_via(via, &crate::gateway::gateway(), answer_key, account, session_id, message).await
}

/// [`sign`] with the grant signed by `gateway` (an image with a key of its own: the
/// production image refuses the demo key).
pub async fn sign_as(
    api: &mut SignServiceClient<Channel>,
    gateway: &ed25519_dalek::SigningKey,
    answer_key: &[u8; 32],
    account: &Account,
    session_id: [u8; 16],
    message: &[u8],
) -> Result<Signed, String> {
    sign_via(&mut Via::Grpc(api), gateway, answer_key, account, session_id, message).await
}

/// [`sign_as`], with the rounds delivered either way.
pub async fn sign_via(
    via: &mut Via<'_>,
    gateway: &ed25519_dalek::SigningKey,
    answer_key: &[u8; 32],
    account: &Account,
    session_id: [u8; 16],
    message: &[u8],
) -> Result<Signed, String> {
    let session = (gateway, answer_key, account, session_id, message);
    match account.scheme {
        Scheme::Ed25519 => sign_with::<frost_ed25519::Ed25519Sha512>(via, session).await,
        Scheme::Secp256k1Tr => {
            sign_with::<frost_secp256k1_tr::Secp256K1Sha256TR>(via, session).await
        }
    }
}

/// How the gateway delivers a session's rounds to the enclave: gRPC through the parent, or
/// events on its SSE stream whose answers the enclave posts back (`session_events`).
pub enum Via<'a> {
    /// The gRPC API.
    Grpc(&'a mut SignServiceClient<Channel>),
    /// Session events published on this endpoint's stream.
    Events(&'a crate::gateway_health::HealthEndpoint),
}

impl Via<'_> {
    async fn commit(&mut self, r: pb::CommitRequest) -> Result<pb::CommitResponse, String> {
        let events = match self {
            Self::Grpc(api) => {
                return Ok(api.commit(r).await.map_err(|e| format!("commit: {e}"))?.into_inner());
            }
            Self::Events(events) => events,
        };
        let request = wire::CommitRequest {
            scheme: if r.scheme == pb::Scheme::Ed25519 as i32 {
                Scheme::Ed25519
            } else {
                Scheme::Secp256k1Tr
            },
            account_id: &r.account_id,
            session_id: fixed(&r.session_id)?,
            message_sha256: fixed(&r.message_sha256)?,
            expires_at_unix: r.expires_at_unix,
            min_epoch: r.min_epoch,
            authorization: fixed(&r.authorization)?,
        };
        match event_round(events, "commit", &wire::Message::CommitRequest(request)).await? {
            (wire::CommitResponse::KIND, payload) => {
                match wire::Message::decode(wire::CommitResponse::KIND, &payload) {
                    Ok(wire::Message::CommitResponse(c)) => Ok(pb::CommitResponse {
                        session_id: c.session_id.to_vec(),
                        commitments: c.commitments.to_vec(),
                        enclave_signature: c.enclave_signature.to_vec(),
                        audit_seq: c.audit_seq,
                        audit_head: c.audit_head.to_vec(),
                    }),
                    _ => Err("commit: undecodable answer".into()),
                }
            }
            (kind, payload) => Err(format!("commit: {}", refusal(kind, &payload))),
        }
    }

    async fn sign(&mut self, r: pb::SignRequest) -> Result<pb::SignResponse, String> {
        let events = match self {
            Self::Grpc(api) => {
                return Ok(api.sign(r).await.map_err(|e| format!("sign: {e}"))?.into_inner());
            }
            Self::Events(events) => events,
        };
        let request = wire::SignRequest {
            session_id: r.session_id.as_slice().try_into().map_err(|_| "bad session id")?,
            signing_package: &r.signing_package,
        };
        match event_round(events, "sign", &wire::Message::SignRequest(request)).await? {
            (wire::SignResponse::KIND, payload) => {
                match wire::Message::decode(wire::SignResponse::KIND, &payload) {
                    Ok(wire::Message::SignResponse(s)) => Ok(pb::SignResponse {
                        session_id: s.session_id.to_vec(),
                        signature_share: s.signature_share.to_vec(),
                        enclave_signature: s.enclave_signature.to_vec(),
                        audit_seq: s.audit_seq,
                        audit_head: s.audit_head.to_vec(),
                    }),
                    _ => Err("sign: undecodable answer".into()),
                }
            }
            (kind, payload) => Err(format!("sign: {}", refusal(kind, &payload))),
        }
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| format!("expected {N} bytes, got {}", bytes.len()))
}

/// Publishes `request` as a session event and returns the answer frame's kind and payload.
pub async fn event_round(
    events: &crate::gateway_health::HealthEndpoint,
    name: &str,
    request: &wire::Message<'_>,
) -> Result<(u16, Vec<u8>), String> {
    let mut payload = vec![0u8; request.payload_len()];
    let n = request.encode_payload(&mut payload).map_err(|e| e.to_string())?;
    let data = payload[..n].iter().fold(String::new(), |mut text, b| {
        use std::fmt::Write as _;
        let _ = write!(text, "{b:02x}");
        text
    });
    let id = events.publish(name, &data);
    let body = events
        .answer(&id, Duration::from_secs(30))
        .await
        .ok_or_else(|| format!("no answer to event {id}"))?;
    match wire::decode(&body) {
        Ok(Some((frame, used))) if used == body.len() => {
            Ok((frame.header.kind, frame.payload.to_vec()))
        }
        _ => Err(format!("the answer to event {id} is not one wire frame")),
    }
}

/// An `RpcError` answer as text (its code's name and detail).
#[must_use]
pub fn refusal(kind: u16, payload: &[u8]) -> String {
    match wire::Message::decode(kind, payload) {
        Ok(wire::Message::RpcError(e)) => format!("{} {}", e.code, e.detail),
        Ok(m) => format!("unexpected answer {}", m.name()),
        Err(e) => format!("undecodable answer: {e}"),
    }
}

fn check_answer(key: &[u8; 32], statement: &[u8], signature: &[u8]) -> Result<(), String> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(key).map_err(|e| e.to_string())?;
    let sig = ed25519_dalek::Signature::from_slice(signature).map_err(|e| e.to_string())?;
    key.verify_strict(statement, &sig)
        .map_err(|_| "an answer is not signed by the attested enclave".to_owned())
}

async fn sign_with<C: Ciphersuite>(
    api: &mut Via<'_>,
    (gateway, answer_key, account, session_id, message): (
        &ed25519_dalek::SigningKey,
        &[u8; 32],
        &Account,
        [u8; 16],
        &[u8],
    ),
) -> Result<Signed, String> {
    let started = Instant::now();
    let mut grant =
        Grant::new(*answer_key, account.scheme, &account.account_id, 0, message, now_secs() + 60);
    grant.session_id = session_id;
    grant.min_epoch = account.min_epoch;
    grant.sign_with(gateway);
    let request = commit_request(&grant);
    let c = api.commit(request).await?;
    let mut buf = [0u8; signed::COMMIT_ANSWER_MAX];
    let commit_anchor = anchor_of(c.audit_seq, &c.audit_head)?;
    let n = signed::commit_answer(&grant.grant(), &commit_anchor, &c.commitments, &mut buf)
        .map_err(|e| e.to_string())?;
    check_answer(answer_key, &buf[..n], &c.enclave_signature)?;
    // The dealer gives the enclave party 1 and the gateway party 2.
    let ours = frost_core::Identifier::<C>::try_from(1u16).map_err(|e| e.to_string())?;
    let (nonces, theirs, kp) = party::round1::<C>(&account.their_share, rand::random());
    let their_commitments = theirs.serialize().map_err(|e| e.to_string())?;
    let package = party::package::<C>(
        &[(ours, c.commitments.clone()), (*kp.identifier(), their_commitments)],
        message,
    );
    let s = api
        .sign(pb::SignRequest { session_id: session_id.to_vec(), signing_package: package.clone() })
        .await?;
    let latency = started.elapsed();
    let digest = ring::digest::digest(&ring::digest::SHA256, &package);
    let digest: [u8; 32] = digest.as_ref().try_into().map_err(|_| "digest")?;
    let sign_anchor = anchor_of(s.audit_seq, &s.audit_head)?;
    let n = signed::sign_answer(&session_id, &digest, &sign_anchor, &s.signature_share, &mut buf)
        .map_err(|e| e.to_string())?;
    check_answer(answer_key, &buf[..n], &s.enclave_signature)?;
    let parsed =
        frost_core::SigningPackage::<C>::deserialize(&package).map_err(|e| e.to_string())?;
    let their_share =
        frost_core::round2::sign(&parsed, &nonces, &kp).map_err(|e| e.to_string())?.serialize();
    let (signature, sec1) = party::aggregate::<C>(
        &package,
        &[(ours, s.signature_share), (*kp.identifier(), their_share)],
        &account.public_key_package,
    )
    .map_err(|e| format!("aggregate: {e}"))?;
    let verified = verify_independently(account.scheme, &sec1, message, &signature)
        && group_key_matches(account, &sec1);
    Ok(Signed {
        account_id: account.account_id.clone(),
        scheme: account.scheme,
        group_key: account.group_key.clone(),
        message: message.to_vec(),
        signature,
        verified,
        latency,
        anchors: [commit_anchor, sign_anchor].map(|a| Anchor {
            answer_key: *answer_key,
            seq: a.seq,
            head: a.head,
        }),
    })
}

/// The anchor an answer carries (its signature, checked by the caller, covers it).
fn anchor_of(seq: u64, head: &[u8]) -> Result<signed::AuditAnchor, String> {
    let head = head.try_into().map_err(|_| "audit_head is not 32 bytes".to_owned())?;
    Ok(signed::AuditAnchor { seq, head })
}

/// The published key is the standard encoding of the package's key.
fn group_key_matches(account: &Account, sec1: &[u8]) -> bool {
    match account.scheme {
        Scheme::Ed25519 => account.group_key == sec1,
        Scheme::Secp256k1Tr => sec1.get(1..) == Some(account.group_key.as_slice()),
    }
}
