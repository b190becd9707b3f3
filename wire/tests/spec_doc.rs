//! `docs/wire.md` cannot drift from the code: every hex example in it decodes to the kind
//! its heading names, re-encodes to the same bytes, and every kind has an example.

use std::collections::BTreeSet;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire.md");
    std::fs::read_to_string(path).expect("docs/wire.md exists")
}

/// (heading kind, heading name, example bytes) for every `hex` code block.
fn examples(doc: &str) -> Vec<(u16, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut heading: Option<(u16, String)> = None;
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("### `0x") {
            let (hex_kind, tail) = rest.split_once('`').expect("heading `0xKIND` NAME");
            let name = tail.split_whitespace().next().expect("a name").to_string();
            heading = Some((u16::from_str_radix(hex_kind, 16).expect("hex kind"), name));
        } else if line.trim() == "```hex" {
            let mut bytes = Vec::new();
            for l in lines.by_ref().take_while(|l| l.trim() != "```") {
                let data = l.split('#').next().unwrap_or("");
                for tok in data.split_whitespace() {
                    bytes.push(u8::from_str_radix(tok, 16).expect("hex byte"));
                }
            }
            let (kind, name) = heading.clone().expect("an example under a kind heading");
            out.push((kind, name, bytes));
        }
    }
    out
}

#[test]
fn every_example_in_the_spec_decodes_to_its_kind() {
    let doc = doc();
    let examples = examples(&doc);
    let mut covered = BTreeSet::new();
    for (kind, name, bytes) in &examples {
        let (frame, used) = wire::decode(bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: example is not a complete frame"));
        assert_eq!(used, bytes.len(), "{name}: bytes after the frame");
        assert_eq!(frame.header.kind, *kind, "{name}: header kind differs from the heading");
        let msg = frame.message().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(msg.name(), name, "{name}: decodes as another message");
        let mut again = vec![0u8; bytes.len()];
        let n = msg.encode(frame.header.stream, frame.header.flags, &mut again).unwrap();
        assert_eq!(&again[..n], bytes.as_slice(), "{name}: re-encodes differently");
        covered.insert(*kind);
    }
    for spec in wire::KINDS {
        assert!(covered.contains(&spec.kind), "docs/wire.md has no example of {}", spec.name);
    }
}

#[test]
fn the_header_table_states_the_real_constants() {
    let doc = doc();
    assert!(doc.contains("`53 57` (ASCII `SW`)") && wire::MAGIC == *b"SW");
    assert!(doc.contains("| 2 | 1 | version | `01` |") && wire::VERSION == 1);
    assert!(doc.contains("at most `MAX_PAYLOAD_LEN` = 65 536") && wire::MAX_PAYLOAD_LEN == 65_536);
    assert!(doc.contains("`VSOCK_WRITE_CHUNK` = 32 KiB") && wire::VSOCK_WRITE_CHUNK == 32 * 1024);
}

/// The hex of the `text` example that starts with the domain label `domain`, comments and
/// spaces removed.
fn statement_example(doc: &str, domain: &[u8]) -> Vec<u8> {
    let label = String::from_utf8(domain.to_vec()).unwrap().replace('\n', "\\n");
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```text" {
            continue;
        }
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        if block.first().is_some_and(|l| l.contains(&format!("# \"{label}\""))) {
            let hex: String = block
                .iter()
                .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
                .collect();
            return (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
        }
    }
    panic!("docs/wire.md has no example of {label}");
}

/// The signed statements' examples ("Signed statements") are the bytes the code signs.
#[test]
fn the_signed_statement_examples_are_what_the_code_writes() {
    use wire::session_signatures as signed;
    let doc = doc();
    let empty_sha256: [u8; 32] = [
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ];
    let nonce: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap());
    let facts = signed::LoadedFacts {
        boot_nonce: &nonce,
        ciphertext_sha256: empty_sha256,
        epoch: 7,
        accounts: 10_000,
        plaintext_bytes: 1_020_000,
        loaded_at_unix_ms: 1_800_000_000_000,
    };
    let mut buf = [0u8; signed::LOADED_MAX];
    let n = signed::loaded_statement(&facts, &mut buf).unwrap();
    assert_eq!(statement_example(&doc, signed::LOADED_DOMAIN), &buf[..n]);

    let manifest = signed::ShareManifest {
        ciphertext_len: 1_021_000,
        ciphertext_sha256: empty_sha256,
        accounts: 10_000,
        epoch: 7,
        created_at_unix: 1_800_000_000,
    };
    let bytes = signed::manifest_statement(&manifest);
    assert_eq!(statement_example(&doc, signed::MANIFEST_DOMAIN), bytes.as_slice());

    let bytes = signed::audit_checkpoint_statement(&signed::CheckpointFacts {
        attestation_sha256: empty_sha256,
        seq: 9,
        head: [0x11; 32],
        unix_ms: 1_800_000_000_000,
        nonce: [0x22; 32],
        closing: true,
    });
    assert_eq!(statement_example(&doc, signed::AUDIT_CHECKPOINT_DOMAIN), bytes.as_slice());

    // The grant (v3: with the lowest accepted epoch), for RFC 8032's first test public key.
    let grant = signed::SessionGrant {
        node: [
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ],
        scheme: wire::Scheme::Ed25519,
        account_id: "A0000001",
        session_id: [
            0x3a, 0x5c, 0x01, 0x77, 0x9e, 0x20, 0x44, 0xb1, 0x8d, 0x06, 0xfe, 0x12, 0x6c, 0x43,
            0xa9, 0x0b,
        ],
        message_sha256: empty_sha256,
        expires_at_unix: 1_800_000_000,
        min_epoch: 7,
    };
    let mut buf = [0u8; signed::AUTHORIZATION_MAX];
    let n = signed::authorization(&grant, &mut buf).unwrap();
    assert_eq!(n, 135, "the length the example states");
    assert_eq!(statement_example(&doc, signed::AUTHORIZATION_DOMAIN), &buf[..n]);
}
