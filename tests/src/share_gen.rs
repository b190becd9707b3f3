//! The trusted dealer as the tests, the benchmarks and the demo use it: the production
//! dealer ([`offline_tools::dealer`], re-exported) with the demo publisher key and an
//! escrow nobody keeps.

pub use offline_tools::dealer::*;

/// The demo publisher key and a fresh escrow recipient whose identity is dropped (for
/// tests and the demo, which never use the escrow share).
#[must_use]
pub fn demo_dealer() -> Dealer {
    Dealer {
        publisher: crate::gateway::publisher(),
        escrow: age::x25519::Identity::generate().to_public(),
        gateway: None,
    }
}

/// [`generate`] for tests and benchmarks: the demo dealer ([`demo_dealer`]), the OS RNG,
/// no progress.
///
/// # Panics
/// If generation fails (a test setup error).
pub fn generate_for_tests(config: GenConfig, dir: &std::path::Path) -> GenSummary {
    generate(config, &demo_dealer(), dir, &mut rand::rngs::OsRng, &mut |_| {})
        .unwrap_or_else(|e| panic!("generating shares in {}: {e}", dir.display()))
}
