//! `enclave-rt`: the only program in the enclave image (`/init`). The modules live in the
//! library (`src/lib.rs`); this binary will drive them from one `poll` loop.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Every allocation of the enclave goes through the budget (set from the measured
/// configuration at boot) and is wiped when freed.
#[global_allocator]
static ALLOC: enclave_rt::budget_allocator::BudgetAllocator =
    enclave_rt::budget_allocator::BudgetAllocator::new();

fn main() {
    eprintln!(
        "enclave-rt {}: the boot loop is not built yet (see the open issues)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
