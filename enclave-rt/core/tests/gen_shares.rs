//! `signservice-offline deal` output, used as the system uses it: the enclave's file loads
//! through the real loader with the written identity, each account signs a session with
//! the engine and the gateway's shares, and the signature verifies independently under the
//! published group key (RFC 8032 key for Ed25519, BIP-340 x-only output key for Taproot).

mod common;

use base64ct::{Base64, Encoding};
use common::signing::{self, Grant, party, verify_independently};
use enclave_core::age_identity::Identity;
use enclave_core::share_loader::ShareLoader;
use enclave_core::trusted_time::Clock;
use frost_core::Ciphersuite;
use tests::share_gen::{Dealer, GenConfig, SchemeChoice, files, generate};
use wire::{Scheme, SignRequest};

const T0: u64 = 1_800_000_000;

/// `file` decrypted by the reference `age` crate with `identity`.
fn age_decrypt(file: &[u8], identity: &age::x25519::Identity) -> Vec<u8> {
    use std::io::Read as _;
    let mut plain = Vec::new();
    age::Decryptor::new(file)
        .unwrap()
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

/// The demo publisher, the escrow's recipient and, if given, the gateway co-signer's.
fn dealer(escrow: age::x25519::Recipient, gateway: Option<age::x25519::Recipient>) -> Dealer {
    Dealer { publisher: tests::gateway::publisher(), escrow, gateway }
}

#[test]
fn generated_files_load_and_sign_under_the_published_keys() {
    let dir = common::cms::workdir("gen-shares");
    // The default 2-of-3 layout: enclave 1, gateway 2, offline escrow 3.
    let config = GenConfig::new(6, SchemeChoice::Both, 2, 3);
    let escrow_identity = age::x25519::Identity::generate();
    let dealer = dealer(escrow_identity.to_public(), None);
    let mut calls = 0;
    let summary =
        generate(config, &dealer, &dir.0, &mut rand::rngs::OsRng, &mut |_| calls += 1).unwrap();
    assert_eq!(summary.accounts, 6);
    // The manifest next to the file names it, signed by the publisher.
    let file = std::fs::read(dir.0.join(files::SHARES)).unwrap();
    let written = std::fs::read_to_string(dir.0.join(files::MANIFEST)).unwrap();
    assert_eq!(written, summary.manifest.to_json());
    summary.manifest.verify().unwrap();
    summary.manifest.check_file(&file).unwrap();
    assert_eq!((summary.manifest.manifest.accounts, summary.manifest.manifest.epoch), (6, 1));
    let demo_key = tests::gateway::publisher().verifying_key().to_bytes();
    assert_eq!(summary.manifest.publisher_key, demo_key);
    assert!(calls >= 2);
    let mode = |f: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.0.join(f)).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(files::IDENTITY), 0o600);
    assert_eq!(mode(files::GATEWAY_SHARES), 0o600);
    assert_eq!(mode(files::ESCROW_SHARES), 0o600);
    let escrow: serde_json::Value = {
        let file = std::fs::read(dir.0.join(files::ESCROW_SHARES)).unwrap();
        serde_json::from_slice(&age_decrypt(&file, &escrow_identity)).unwrap()
    };

    // The enclave side: the real loader, the written identity.
    let identity_text = std::fs::read_to_string(dir.0.join(files::IDENTITY)).unwrap();
    let identity = Identity::parse(identity_text.trim().as_bytes()).unwrap();
    let file = std::fs::read(dir.0.join(files::SHARES)).unwrap();
    let mut loader = ShareLoader::new(&identity, file.len() as u64, 6, common::CONFIG).unwrap();
    loader.feed(&file).unwrap();
    let (store, stats) = loader.finish().unwrap();
    assert_eq!(stats.accounts, 6);

    let gateway: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.0.join(files::GATEWAY_SHARES)).unwrap()).unwrap();
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.0.join(files::GROUP_KEYS)).unwrap()).unwrap();
    let mut engine = signing::engine(1, signing::config());
    let holders = gateway.as_array().unwrap().iter().zip(escrow.as_array().unwrap());
    for (i, ((g, e), k)) in holders.zip(keys.as_array().unwrap()).enumerate() {
        assert_eq!(e["account_id"], g["account_id"]);
        let account = g["account_id"].as_str().unwrap();
        assert_eq!(account, k["account_id"].as_str().unwrap());
        let scheme = match g["scheme"].as_str().unwrap() {
            "ed25519" => Scheme::Ed25519,
            "secp256k1-tr" => Scheme::Secp256k1Tr,
            other => panic!("{other}"),
        };
        assert_eq!(scheme, if i % 2 == 0 { Scheme::Ed25519 } else { Scheme::Secp256k1Tr });
        let shares = g["shares"].as_array().unwrap();
        assert_eq!(shares.len(), 1, "the gateway holds party 2 only");
        let escrowed = e["shares"].as_array().unwrap();
        assert_eq!(escrowed.len(), 1, "the escrow holds party 3");
        // The gateway's share (party 2), or for odd sessions the escrow's (party 3: the
        // recovery path when the gateway's share is lost), without its envelope.
        let holder = if i % 3 == 2 { &escrowed[0] } else { &shares[0] };
        let theirs = Base64::decode_vec(holder.as_str().unwrap()).unwrap();
        assert_eq!(theirs[..2], [1, scheme as u8]);
        // Alone, the gateway cannot sign: FROST refuses a package of one signer.
        let gateway_share = Base64::decode_vec(shares[0].as_str().unwrap()).unwrap();
        assert!(signs_alone(scheme, &gateway_share[2..]).is_err(), "{account}");
        let pkp = Base64::decode_vec(k["public_key_package"].as_str().unwrap()).unwrap();
        let group_key = hex::decode(k["group_key"].as_str().unwrap()).unwrap();
        let message = format!("message for {account}").into_bytes();
        let session = u8::try_from(i).unwrap() + 1;
        let (sig, sec1) = match scheme {
            Scheme::Ed25519 => full::<frost_ed25519::Ed25519Sha512>(
                &mut engine,
                &store,
                scheme,
                account,
                session,
                &theirs[2..],
                &message,
                &pkp,
            ),
            Scheme::Secp256k1Tr => full::<frost_secp256k1_tr::Secp256K1Sha256TR>(
                &mut engine,
                &store,
                scheme,
                account,
                session,
                &theirs[2..],
                &message,
                &pkp,
            ),
        };
        // The published key is the standard encoding of the key the package holds.
        let published = if scheme == Scheme::Ed25519 { sec1.clone() } else { sec1[1..].to_vec() };
        assert_eq!(group_key, published, "{account}");
        assert!(verify_independently(scheme, &sec1, &message, &sig), "{account}");
    }
}

/// A signature share from one party alone: the holder of `key_package` (the gateway) tries
/// to sign with no other signer. FROST refuses it (fewer commitments than the threshold).
fn signs_alone(scheme: Scheme, key_package: &[u8]) -> Result<(), String> {
    fn alone<C: Ciphersuite>(key_package: &[u8]) -> Result<(), String> {
        let (nonces, commitments, kp) = party::round1::<C>(key_package, 99);
        let package = party::package::<C>(
            &[(*kp.identifier(), commitments.serialize().map_err(|e| e.to_string())?)],
            b"the gateway alone",
        );
        let parsed =
            frost_core::SigningPackage::<C>::deserialize(&package).map_err(|e| e.to_string())?;
        frost_core::round2::sign(&parsed, &nonces, &kp).map(|_| ()).map_err(|e| e.to_string())
    }
    match scheme {
        Scheme::Ed25519 => alone::<frost_ed25519::Ed25519Sha512>(key_package),
        Scheme::Secp256k1Tr => alone::<frost_secp256k1_tr::Secp256K1Sha256TR>(key_package),
    }
}

/// `signservice-offline deal` refuses a layout that gives the gateway a quorum, unless told by name, and
/// writes nothing then.
#[test]
fn a_layout_where_the_gateway_signs_alone_is_refused() {
    let mut config = GenConfig::new(1, SchemeChoice::Ed25519, 2, 3);
    assert_eq!((config.gateway_parties, config.escrow_parties()), (1, 1));
    config.gateway_parties = 2;
    let e = config.check().unwrap_err().to_string();
    assert!(e.contains("could sign without the enclave"), "{e}");
    let dir = common::cms::workdir("gen-shares-quorum");
    let out = dir.0.join("out");
    let refused = generate(
        config,
        &tests::share_gen::demo_dealer(),
        &out,
        &mut rand::rngs::OsRng,
        &mut |_| {},
    );
    assert!(refused.is_err());
    assert!(!out.exists(), "nothing written");
    config.allow_online_quorum = true;
    config.check().unwrap();
    // 3-of-5: the gateway gets 2 by default, never 3.
    let five = GenConfig::new(1, SchemeChoice::Ed25519, 3, 5);
    assert_eq!((five.gateway_parties, five.escrow_parties()), (2, 2));
    five.check().unwrap();
    let zero = GenConfig { gateway_parties: 0, ..five };
    assert!(zero.check().is_err());
}

/// A whole session: the engine as party 1, `theirs` as party 2 or 3; the aggregated signature
/// and the group key (SEC1 / RFC 8032 bytes) from the public key package.
#[allow(clippy::too_many_arguments)]
fn full<C: Ciphersuite>(
    engine: &mut enclave_core::signing_engine::SigningEngine<rand::rngs::StdRng>,
    store: &enclave_core::share_store::ShareStore,
    scheme: Scheme,
    account: &str,
    session: u8,
    theirs: &[u8],
    message: &[u8],
    public_key_package: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let grant = Grant::new(engine.answer_public_key(), scheme, account, session, message, T0 + 60);
    let now = Clock { instant: std::time::Instant::now(), unix_micros: T0 * 1_000_000 };
    let ours = engine.commit(now, &grant.request(), store, &mut signing::unaudited).unwrap();
    let stored = store.get(account).unwrap();
    let ours_id = frost_core::Identifier::<C>::deserialize(
        enclave_core::share_format::parse_stored(stored.bytes).unwrap().identifier,
    )
    .unwrap();
    let (nonces, their_c, kp) = party::round1::<C>(theirs, u64::from(session));
    let package = party::package::<C>(
        &[(ours_id, ours.commitments), (*kp.identifier(), their_c.serialize().unwrap())],
        message,
    );
    let req = SignRequest { session_id: grant.session_id, signing_package: &package };
    let share = engine.sign(now, &req, &mut signing::unaudited).unwrap().signature_share;
    let parsed = frost_core::SigningPackage::<C>::deserialize(&package).unwrap();
    let their_share = frost_core::round2::sign(&parsed, &nonces, &kp).unwrap().serialize();
    party::aggregate::<C>(
        &package,
        &[(ours_id, share), (*kp.identifier(), their_share)],
        public_key_package,
    )
    .unwrap()
}

/// Given the gateway co-signer's recipient, its shares are written only age-encrypted to it
/// (0600), never in plaintext, and decrypt to the same layout.
#[test]
fn the_gateway_shares_are_sealed_to_its_recipient_when_one_is_given() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::cms::workdir("gen-shares-sealed");
    let config = GenConfig::new(3, SchemeChoice::Ed25519, 2, 3);
    let gateway_identity = age::x25519::Identity::generate();
    let escrow = age::x25519::Identity::generate().to_public();
    let dealer = dealer(escrow, Some(gateway_identity.to_public()));
    generate(config, &dealer, &dir.0, &mut rand::rngs::OsRng, &mut |_| {}).unwrap();
    assert!(!dir.0.join(files::GATEWAY_SHARES).exists(), "plaintext gateway shares written");
    let sealed = dir.0.join(files::GATEWAY_SHARES_AGE);
    assert_eq!(std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777, 0o600);
    let file = std::fs::read(&sealed).unwrap();
    assert!(!file.windows(12).any(|w| w == b"\"account_id\""), "not encrypted");
    let plain = age_decrypt(&file, &gateway_identity);
    let shares: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let shares = shares.as_array().unwrap();
    assert_eq!(shares.len(), 3);
    assert_eq!(shares[0]["account_id"], "A0000000");
    assert_eq!(shares[0]["shares"].as_array().unwrap().len(), 1);
}
