//! The enclave's side for the signing tests: an engine with the test gateway key, and a
//! store loaded through the real loader. The gateway's side is `tests::gateway`.

pub use tests::gateway::*;

use enclave_core::share_store::ShareStore;
use enclave_core::signing_engine::{AnswerKey, EngineConfig, SigningEngine};
use rand::SeedableRng;
use rand::rngs::StdRng;
use wire::Scheme;

pub fn engine(store_rng_seed: u64, config: EngineConfig) -> SigningEngine<StdRng> {
    let mut rng = StdRng::seed_from_u64(store_rng_seed);
    let key = AnswerKey::generate(&mut rng);
    SigningEngine::new(config, key, rng).unwrap()
}

pub fn config() -> EngineConfig {
    EngineConfig::with_gateway_key(gateway().verifying_key())
}

/// Loads `accounts` (id, scheme, key package) into a store through the real loader.
pub fn store(accounts: &[(String, Scheme, Vec<u8>)]) -> ShareStore {
    let entries: Vec<(String, Vec<u8>)> = accounts
        .iter()
        .map(|(id, scheme, kp)| (id.clone(), super::envelope(*scheme as u8, kp)))
        .collect();
    super::load_plain(&super::json(&entries), entries.len() as u64).unwrap().0
}
