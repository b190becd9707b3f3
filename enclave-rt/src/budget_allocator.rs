//! The enclave's global allocator: the system allocator behind a hard byte budget, with live
//! counters, a 70% watermark flag, and every freed block wiped before it is returned.
//!
//! This is the only module of `enclave-rt` with `unsafe` code: implementing `GlobalAlloc`
//! is unsafe by definition. Every block is annotated with its `// SAFETY:` argument.
//!
//! Over-budget requests return null. Fallible allocations (`try_reserve`, used for the
//! share store and every size that comes from input) turn that into a clean error; the
//! budget's headroom is sized so infallible small allocations do not hit it (an infallible
//! one that did would abort, which the parent sees as an enclave exit and fails closed).
//! The event loop reads [`BudgetAllocator::stats`] for health and polls
//! [`BudgetAllocator::take_watermark_alert`] to log the alert; an allocator cannot log.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

// The counters' type and the watermark are the serving core's (it reports them).
pub use enclave_core::boot_state_machine::MemoryStats;
pub use enclave_core::serving::WATERMARK_PERCENT;

/// The allocator; see the module documentation. Install it with `#[global_allocator]`.
pub struct BudgetAllocator {
    budget: AtomicUsize,
    live: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicU64,
    watermark_alert: AtomicBool,
}

impl BudgetAllocator {
    /// An allocator with no budget yet (unlimited until [`Self::set_budget`]).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            budget: AtomicUsize::new(usize::MAX),
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            watermark_alert: AtomicBool::new(false),
        }
    }

    /// Sets the budget (from the measured configuration, once at boot). Fails if more than
    /// that is already live.
    pub fn set_budget(&self, bytes: usize) -> Result<(), MemoryStats> {
        if self.live.load(Relaxed) > bytes {
            return Err(self.stats());
        }
        self.budget.store(bytes, Relaxed);
        Ok(())
    }

    /// Current counters.
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            live: self.live.load(Relaxed),
            peak: self.peak.load(Relaxed),
            budget: self.budget.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }

    /// Whether the watermark was crossed since the last call (then cleared).
    pub fn take_watermark_alert(&self) -> bool {
        self.watermark_alert.swap(false, Relaxed)
    }

    /// Counts `size` more bytes if the budget allows; false if it does not.
    fn reserve(&self, size: usize) -> bool {
        let budget = self.budget.load(Relaxed);
        let mut live = self.live.load(Relaxed);
        loop {
            let Some(next) = live.checked_add(size).filter(|&n| n <= budget) else {
                self.refused.fetch_add(1, Relaxed);
                return false;
            };
            match self.live.compare_exchange_weak(live, next, Relaxed, Relaxed) {
                Ok(_) => {
                    self.peak.fetch_max(next, Relaxed);
                    let mark = budget / 100 * WATERMARK_PERCENT;
                    if budget != usize::MAX && live <= mark && next > mark {
                        self.watermark_alert.store(true, Relaxed);
                    }
                    return true;
                }
                Err(now) => live = now,
            }
        }
    }
}

impl Default for BudgetAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every method forwards to `System` with the caller's layout unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; the counters do not touch memory.
// `realloc` is not overridden: the trait's default (alloc, copy, dealloc) goes through
// `dealloc` below, so the old block is wiped too.
unsafe impl GlobalAlloc for BudgetAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.reserve(layout.size()) {
            return core::ptr::null_mut();
        }
        // SAFETY: the caller guarantees `layout` has a non-zero size, as `System` requires.
        let ptr = unsafe { System.alloc(layout) };
        if ptr.is_null() {
            self.live.fetch_sub(layout.size(), Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.reserve(layout.size()) {
            return core::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if ptr.is_null() {
            self.live.fetch_sub(layout.size(), Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` is a live block of `layout.size()` bytes
        // allocated by us; writing zeros over it before freeing is within bounds. The
        // volatile writes keep the wipe from being optimized away as a dead store.
        unsafe {
            for i in 0..layout.size() {
                core::ptr::write_volatile(ptr.add(i), 0);
            }
        }
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        // SAFETY: same block and layout as allocated by `System` in `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        self.live.fetch_sub(layout.size(), Relaxed);
    }
}
