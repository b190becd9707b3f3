//! `cargo xtask wire-doc [--check]`: writes the message reference of `docs/wire.md` from
//! `wire::KINDS` and one example per kind, so the spec cannot drift from the code. The
//! examples are annotated hex that `wire/tests/spec_doc.rs` decodes back.

use std::fmt::Write as _;
use std::path::Path;

use wire::{
    BootFailReason, BootState, FieldType, Flags, LogFields, LogLevel, Message, RelayErrorCode,
    RpcErrorCode, Scheme,
};

use crate::generated_section;
use crate::run::{Failure, Result};

/// One example of every kind, with the stream id it is shown with.
#[allow(clippy::too_many_lines)] // a table of data, one line per kind
fn examples() -> Vec<(u32, Message<'static>)> {
    const NONCE: [u8; 32] = *b"\x8f\x1c\x2a\x90\x55\x03\x7e\xd1\x44\x10\x6b\xc2\x39\xee\x07\x5d\x13\xa8\x61\x2f\xb4\x0c\x97\x58\xe3\x26\x7a\x81\x0d\xf5\x4b\x99";
    const SESSION: [u8; 16] = *b"\x3a\x5c\x01\x77\x9e\x20\x44\xb1\x8d\x06\xfe\x12\x6c\x43\xa9\x0b";
    const SHA: [u8; 32] = *b"\xe3\xb0\xc4\x42\x98\xfc\x1c\x14\x9a\xfb\xf4\xc8\x99\x6f\xb9\x24\x27\xae\x41\xe4\x64\x9b\x93\x4c\xa4\x95\x99\x1b\x78\x52\xb8\x55";
    const SIG: [u8; 64] = [0xab; 64];
    const FIELDS: [(&str, &str); 2] = [("accounts", "100000"), ("load_ms", "1830")];
    vec![
        (0, Message::Hello(wire::Hello { nonce: &NONCE, shim_version: "parent-shim 0.1.0" })),
        (0, Message::Attestation(wire::Attestation { document: b"\x84\x44\xa1\x01\x38\x22\xa0" })),
        (
            0,
            Message::SealedKey(wire::SealedKey {
                ciphertext_for_recipient: b"\x30\x80\x06\x09\x2a\x86\x48",
            }),
        ),
        (
            0,
            Message::ShareFileBegin(wire::ShareFileBegin {
                total_len: 1_048_576,
                sha256: SHA,
                accounts: 10_000,
                epoch: 7,
                created_at_unix: 1_800_000_000,
                publisher_signature: SIG,
            }),
        ),
        (
            0,
            Message::ShareFileChunk(wire::ShareFileChunk {
                offset: 32_768,
                data: b"age-encryption.org/v1\n",
            }),
        ),
        (0, Message::ShareFileEnd(wire::ShareFileEnd {})),
        (
            0,
            Message::Loaded(wire::Loaded {
                accounts: 10_000,
                plaintext_bytes: 1_020_000,
                ciphertext_sha256: SHA,
                epoch: 7,
                load_micros: 183_000,
                memory_in_use: 2_400_000,
                memory_budget: 268_435_456,
                loaded_at_unix_ms: 1_800_000_000_000,
                signature: SIG,
            }),
        ),
        (
            0,
            Message::BootFailed(wire::BootFailed {
                reason: BootFailReason::DUPLICATE_ACCOUNT,
                detail: "entry 17 at byte 2211",
            }),
        ),
        (
            42,
            Message::CommitRequest(wire::CommitRequest {
                scheme: Scheme::Ed25519,
                account_id: "A001",
                session_id: SESSION,
                message_sha256: SHA,
                expires_at_unix: 1_795_000_000,
                min_epoch: 7,
                authorization: SIG,
            }),
        ),
        (
            42,
            Message::CommitResponse(wire::CommitResponse {
                session_id: SESSION,
                commitments: &[0x01; 8],
                audit_seq: 7,
                audit_head: [0x44; 32],
                enclave_signature: SIG,
            }),
        ),
        (
            43,
            Message::SignRequest(wire::SignRequest {
                session_id: SESSION,
                signing_package: &[0x02; 8],
            }),
        ),
        (
            43,
            Message::SignResponse(wire::SignResponse {
                session_id: SESSION,
                signature_share: &[0x03; 8],
                audit_seq: 8,
                audit_head: [0x45; 32],
                enclave_signature: SIG,
            }),
        ),
        (44, Message::AbortRequest(wire::AbortRequest { session_id: SESSION })),
        (44, Message::AbortResponse(wire::AbortResponse { session_id: SESSION })),
        (
            45,
            Message::RpcError(wire::RpcError {
                code: RpcErrorCode::RESOURCE_EXHAUSTED,
                detail: "session table full",
            }),
        ),
        (
            3,
            Message::SseOpen(wire::SseOpen {
                url: "https://gateway.example/v1/events",
                last_event_id: "",
            }),
        ),
        (3, Message::SseEvent(wire::SseEvent { id: "1042", event: "session", data: "{\"s\":1}" })),
        (
            3,
            Message::SseClose(wire::SseClose {
                code: RelayErrorCode::NOT_ALLOWED,
                detail: "host not allowlisted",
            }),
        ),
        (3, Message::SseReconnect(wire::SseReconnect { last_event_id: "1042" })),
        (
            9,
            Message::HttpPost(wire::HttpPost {
                url: "https://gateway.example/v1/results",
                content_type: "application/json",
                body: b"{}",
            }),
        ),
        (9, Message::HttpResponse(wire::HttpResponse { status: 204, content_type: "", body: b"" })),
        (
            9,
            Message::HttpError(wire::HttpError {
                code: RelayErrorCode::TIMEOUT,
                detail: "no answer in 10s",
            }),
        ),
        (
            0,
            Message::Log(wire::Log {
                level: LogLevel::Info,
                target: "loader",
                message: "shares loaded",
                fields: LogFields::new(&FIELDS),
            }),
        ),
        (0, Message::LogsDropped(wire::LogsDropped { count: 12 })),
        (
            0,
            Message::AuditEntry(wire::AuditEntry {
                seq: 2,
                prev: [0x11; 32],
                kind: wire::AuditKind::Sign,
                session_id: [0x3a; 16],
                account_id: "",
                grant_sha256: [0; 32],
                message_sha256: [0; 32],
                expires_at_unix: 0,
                package_sha256: [0x22; 32],
                share_sha256: [0x33; 32],
                code: 0,
                request_kind: 0,
            }),
        ),
        (
            0,
            Message::AuditCheckpoint(wire::AuditCheckpoint {
                seq: 2,
                head: [0x44; 32],
                attestation_sha256: [0x55; 32],
                unix_ms: 1_800_000_000_000,
                nonce: [0x77; 32],
                closing: false,
                signature: [0x66; 64],
            }),
        ),
        (0, Message::Ping(wire::Ping { nonce: 0x0102_0304_0506_0708 })),
        (0, Message::Pong(wire::Pong { nonce: 0x0102_0304_0506_0708 })),
        (0, Message::StatusRequest(wire::StatusRequest {})),
        (
            0,
            Message::Status(wire::Status {
                state: BootState::Serving,
                accounts: 10_000,
                memory_in_use: 2_400_000,
                memory_peak: 3_100_000,
                memory_budget: 268_435_456,
                watermark_alert: false,
                sessions_in_use: 3,
                session_cap: 256,
                uptime_ms: 60_000,
                session_ttl_secs: 30,
            }),
        ),
        (9, Message::AttestRequest(wire::AttestRequest { nonce: &NONCE })),
        (9, Message::AuditHeadRequest(wire::AuditHeadRequest { nonce: [0x77; 32], close: false })),
    ]
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn le_len(b: &[u8]) -> usize {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn type_name(ty: FieldType) -> String {
    match ty {
        FieldType::U8 => "u8".into(),
        FieldType::U16 => "u16".into(),
        FieldType::U32 => "u32".into(),
        FieldType::U64 => "u64".into(),
        FieldType::Bool => "bool (u8: 0 or 1)".into(),
        FieldType::Enum8(v) => {
            let vals: Vec<String> = v.iter().map(|(n, name)| format!("{n} = {name}")).collect();
            format!("u8: {}", vals.join(", "))
        }
        FieldType::Fixed(n) => format!("[u8; {n}]"),
        FieldType::Bytes { max } => format!("bytes, max {max}"),
        FieldType::Str { max } => format!("UTF-8, max {max}"),
        FieldType::LogFields => format!(
            "u32 count (max {}) + pairs of UTF-8 key (max {}), UTF-8 value (max {})",
            wire::LOG_FIELDS_MAX,
            wire::LOG_FIELD_KEY_MAX,
            wire::LOG_FIELD_VALUE_MAX
        ),
    }
}

/// Annotated hex: the header on one line, then one line per field.
fn annotate(spec: &wire::KindSpec, frame: &[u8]) -> String {
    let mut out = String::new();
    let stream = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]);
    let _ = writeln!(
        out,
        "{}  # header: \"SW\" v1 flags=0 kind={:#06x} stream={stream} len={}",
        hex(&frame[..16]),
        spec.kind,
        frame.len() - 16
    );
    let mut rest = &frame[16..];
    for (field, _) in spec.fields {
        let len = match field.ty {
            FieldType::U8 | FieldType::Bool | FieldType::Enum8(_) => 1,
            FieldType::U16 => 2,
            FieldType::U32 => 4,
            FieldType::U64 => 8,
            FieldType::Fixed(n) => n,
            FieldType::Bytes { .. } | FieldType::Str { .. } => 4 + le_len(rest),
            FieldType::LogFields => {
                let mut at = 4;
                for _ in 0..le_len(rest) * 2 {
                    at += 4 + le_len(&rest[at..]);
                }
                at
            }
        };
        let (bytes, tail) = rest.split_at(len);
        for (i, line) in bytes.chunks(16).enumerate() {
            if i == 0 {
                let _ = writeln!(out, "{}  # {}", hex(line), field.name);
            } else {
                let _ = writeln!(out, "{}", hex(line));
            }
        }
        if bytes.is_empty() {
            let _ = writeln!(out, "# {} (empty)", field.name);
        }
        rest = tail;
    }
    debug_assert!(rest.is_empty(), "{}: annotation did not consume the payload", spec.name);
    out
}

/// The generated reference section.
pub(crate) fn render() -> Result<String> {
    let examples = examples();
    let mut out = String::new();
    for spec in wire::KINDS {
        let (stream, msg) = examples
            .iter()
            .find(|(_, m)| m.kind() == spec.kind)
            .ok_or_else(|| Failure(format!("no example for {}", spec.name)))?;
        let mut frame = vec![0u8; wire::MAX_FRAME_LEN];
        let n = msg.encode(*stream, Flags::NONE, &mut frame)?;
        let _ = writeln!(out, "### `{:#06x}` {} ({})\n", spec.kind, spec.name, spec.direction);
        let _ = writeln!(out, "{}\n", spec.doc.trim());
        if spec.fields.is_empty() {
            let _ = writeln!(out, "No fields: the payload is empty.\n");
        } else {
            let _ = writeln!(out, "| field | type | meaning |\n| --- | --- | --- |");
            for (field, doc) in spec.fields {
                let doc = doc.trim().replace('\n', " ");
                let _ = writeln!(out, "| `{}` | {} | {doc} |", field.name, type_name(field.ty));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "```hex\n{}```\n", annotate(spec, &frame[..n]));
    }
    out.pop(); // the blank line before the section's end marker
    Ok(out)
}

/// Rewrites (or with `check`, verifies) the generated section of `docs/wire.md`.
pub(crate) fn run(root: &Path, check: bool) -> Result {
    generated_section::update(root, "docs/wire.md", "cargo xtask wire-doc", &render()?, check)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_has_exactly_one_example() {
        let examples = super::examples();
        for spec in wire::KINDS {
            assert_eq!(
                examples.iter().filter(|(_, m)| m.kind() == spec.kind).count(),
                1,
                "{}",
                spec.name
            );
        }
        assert_eq!(examples.len(), wire::KINDS.len());
    }
}
