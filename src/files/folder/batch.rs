//! What the files of one folder put or get share while several move at once: one progress
//! over the whole folder, and one rate limit.

use std::sync::atomic::{AtomicU64, Ordering};

use super::CONCURRENCY;
use crate::files::access::Access;
use crate::files::transfer::Progress;

/// Progress over a whole folder: each file's callback adds what it moved since its last call.
pub(super) struct Tally<'a> {
    pub(super) done: AtomicU64,
    pub(super) total: u64,
    pub(super) progress: Progress<'a>,
}

impl Tally<'_> {
    pub(super) fn add(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(p) = self.progress {
            p(done.min(self.total), self.total);
        }
    }

    /// A progress callback for one file.
    pub(super) fn file(&self) -> impl Fn(u64, u64) + Send + Sync + '_ {
        let seen = AtomicU64::new(0);
        move |done, _| {
            let before = seen.fetch_max(done, Ordering::Relaxed);
            if done > before {
                self.add(done - before);
            }
        }
    }
}

/// The access for a folder's transfers: [`CONCURRENCY`] of them share one rate limit.
pub(super) fn shared(access: &Access) -> Access {
    let mut shared = access.clone();
    shared.rate_limit = shared
        .rate_limit
        .map(|rate| (rate / CONCURRENCY as u64).max(1));
    shared
}
