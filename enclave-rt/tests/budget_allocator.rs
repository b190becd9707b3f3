//! The budget allocator installed as this test binary's global allocator: the budget is a
//! hard limit that fallible allocations see as a clean error, counters follow every
//! allocation, the 70% watermark fires once per crossing, and a share load that does not fit
//! fails with a typed error instead of aborting. One test function: the allocator is
//! process-wide, so checks run in sequence.

#[path = "../core/tests/common/mod.rs"]
mod common;

use enclave_core::share_loader::{LoadError, LoaderConfig, ShareLoader};
use enclave_core::share_store::StoreError;
use enclave_rt::budget_allocator::BudgetAllocator;

#[global_allocator]
static ALLOC: BudgetAllocator = BudgetAllocator::new();

#[test]
fn the_budget_is_enforced_and_counted() {
    // Prepare inputs before any budget is set.
    let keys = common::keys();
    let accounts = common::accounts(20_000, 11);
    let file = common::encrypt(&keys, &common::json(&accounts));
    drop(accounts);

    let base = ALLOC.stats().live;
    let budget = base + 8 * 1024 * 1024;
    ALLOC.set_budget(budget).unwrap();
    assert!(!ALLOC.take_watermark_alert());

    // Counting: a 1 MiB vector shows up in `live` and goes away.
    let v: Vec<u8> = Vec::with_capacity(1 << 20);
    assert!(ALLOC.stats().live >= base + (1 << 20));
    drop(v);
    assert!(ALLOC.stats().live < base + (1 << 20));

    // Over budget: a clean error from try_reserve, counted as refused.
    let refused = ALLOC.stats().refused;
    let mut big: Vec<u8> = Vec::new();
    assert!(big.try_reserve_exact(16 << 20).is_err());
    assert_eq!(ALLOC.stats().refused, refused + 1);

    // Crossing 70% raises the alert once.
    let mut ballast: Vec<u8> = Vec::new();
    ballast.try_reserve_exact(6 << 20).unwrap();
    assert!(ALLOC.take_watermark_alert());
    assert!(!ALLOC.take_watermark_alert());
    drop(ballast);

    // A share load whose store does not fit the budget fails cleanly; the limit check in
    // the loader is not what stops it (its own limit is unbounded here).
    let config = LoaderConfig { allow_empty: false, store_limit_bytes: u64::MAX };
    // 20,000 accounts need ~3.2 MB of store; leave 1 MiB.
    ALLOC.set_budget(ALLOC.stats().live + (1 << 20)).unwrap();
    let outcome = ShareLoader::new(&keys.ours, file.len() as u64, 20_000, config).map(|_| ());
    // Restore room before anything that may panic (a panic allocates).
    ALLOC.set_budget(base + 64 * 1024 * 1024).unwrap();
    match outcome {
        Err(LoadError::Store { error: StoreError::OutOfMemory { .. }, .. }) => {}
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    // With room, the same load succeeds, and the peak stays within the budget.
    let mut loader = ShareLoader::new(&keys.ours, file.len() as u64, 20_000, config).unwrap();
    loader.feed(&file).unwrap();
    let (store, stats) = loader.finish().unwrap();
    assert_eq!(stats.accounts, 20_000);
    let s = ALLOC.stats();
    assert!(s.peak <= s.budget && s.live >= base + usize::try_from(stats.store_bytes).unwrap());
    drop(store);

    // A budget below what is live is refused.
    assert!(ALLOC.set_budget(1).is_err());
}
