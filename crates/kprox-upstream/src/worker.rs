//! Which worker thread the calling code runs on.
//!
//! kprox serves on one single-threaded runtime per core (the binary sets them up, the
//! listener spreads client connections over them). A request is cheapest when it never
//! leaves its thread: the pool (`pool.rs`) sends it on an HTTP/2 connection whose
//! driver runs on the same thread, so handing the request over and getting the answer back
//! wake a task on this thread, not another core (measured: a fifth of the CPU per small
//! request went to cross-thread wake-ups and context switches).
//!
//! Threads that are not workers (tests, tools) report no worker; everything still works
//! there, with no thread affinity.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// How many workers the process runs (1 until [`set_count`]).
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// Marks the calling thread as worker `index` for the rest of its life.
pub fn enter(index: usize) {
    CURRENT.with(|current| current.set(Some(index)));
}

/// The worker the calling thread is, if it is one.
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// Records how many workers the process runs; set once at start-up, before serving.
pub fn set_count(count: usize) {
    COUNT.store(count.max(1), Ordering::Relaxed);
}

/// How many workers the process runs.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_no_worker_until_it_enters_and_keeps_its_own_index() {
        let other = std::thread::spawn(|| {
            assert_eq!(current(), None);
            enter(3);
            current()
        });
        assert_eq!(other.join().ok().flatten(), Some(3));
        assert_eq!(current(), None, "another thread's index is not this one's");
        enter(0);
        assert_eq!(current(), Some(0));
    }
}
