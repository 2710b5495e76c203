//! What one apiserver's TCP pass-through connections have done, for metrics and the status
//! page: counted by the splice as bytes move, read at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::balancer::Load;

/// Pass-through connections to one apiserver.
#[derive(Debug, Default)]
pub struct PassthroughStats {
    /// Open connections (in flight for the whole connection, so least-request balances
    /// connections), weighted by connect latency.
    pub(crate) load: Arc<Load>,
    opened: AtomicU64,
    failed: AtomicU64,
    to_apiserver: AtomicU64,
    to_client: AtomicU64,
}

impl PassthroughStats {
    pub(crate) fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts bytes the client sent on to the apiserver.
    pub fn sent_to_apiserver(&self, bytes: usize) {
        self.to_apiserver.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts bytes the apiserver sent on to the client.
    pub fn sent_to_client(&self, bytes: usize) {
        self.to_client.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> PassthroughCounts {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PassthroughCounts {
            open: self.load.in_flight() as u64,
            opened: load(&self.opened),
            failed: load(&self.failed),
            bytes_to_apiserver: load(&self.to_apiserver),
            bytes_to_client: load(&self.to_client),
        }
    }
}

/// A point-in-time copy of [`PassthroughStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassthroughCounts {
    pub open: u64,
    pub opened: u64,
    /// Connects that failed (each one moved on to the next apiserver).
    pub failed: u64,
    pub bytes_to_apiserver: u64,
    pub bytes_to_client: u64,
}
