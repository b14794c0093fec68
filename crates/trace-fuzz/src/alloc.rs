//! A global allocator that counts the live bytes of each thread, so that the
//! fuzzer can bound the memory one input takes.
//!
//! The program registers it (`#[global_allocator]`); without that the
//! counters stay at zero. Memory freed on another thread than the one that
//! allocated it lowers that other thread's count, which is why counts are
//! signed; the fuzzer only looks at the peak of the thread reading an input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting.
pub struct CountingAlloc;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: a thread being torn down has no counters left.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counting
// touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let res = unsafe { System.alloc(layout) };
        if !res.is_null() {
            add(layout.size() as isize);
        }
        res
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let res = unsafe { System.alloc_zeroed(layout) };
        if !res.is_null() {
            add(layout.size() as isize);
        }
        res
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let res = unsafe { System.realloc(ptr, layout, new_size) };
        if !res.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        res
    }
}

/// Starts a measurement on this thread: the peak is reset to what is live.
pub fn start_measure() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(live));
    live
}

/// The most bytes this thread had live since [`start_measure`] returned
/// `base`, above `base`.
pub fn peak_since(base: isize) -> u64 {
    (PEAK.with(Cell::get) - base).max(0) as u64
}
