//! Catalog verdicts remembered for many devices that share one [`CatalogTrust`](super::CatalogTrust):
//! the simulator's fleet downloads the same few catalogs thousands of times, and each
//! verification (DER decode, the signer's chain, the signature) was the largest single item of
//! a simulated week's CPU (12 %, docs/BENCHMARKS.md §3b). A verdict is kept by the catalog's
//! exact bytes, and only where it depends on nothing else: the same anchors and policy (the
//! memo belongs to one `CatalogTrust`) and no trusted clock (with one, the verdict also depends
//! on the time of the check, so it is not remembered). A real device has no memo.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Refusal, VerifiedCatalog};

/// Distinct catalogs remembered at most (a run offers a handful; the oldest goes first).
const KEPT: usize = 32;

type Verdict = Arc<Result<VerifiedCatalog, Refusal>>;

/// The memo: catalog bytes and the verdict reached on them.
#[derive(Debug, Default)]
pub struct CatalogMemo {
    verdicts: Mutex<Vec<(Vec<u8>, Verdict)>>,
    hits: AtomicU64,
}

impl CatalogMemo {
    pub fn new() -> Self {
        CatalogMemo::default()
    }

    /// Verdicts answered from the memo so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The verdict on `bytes`: remembered, or `verify`'s (which runs outside the lock, so
    /// devices verifying different catalogs do not wait for each other).
    pub(super) fn verdict(
        &self,
        bytes: &[u8],
        verify: impl FnOnce() -> Result<VerifiedCatalog, Refusal>,
    ) -> Verdict {
        if let Some(known) = self.find(bytes) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return known;
        }
        let verdict = Arc::new(verify());
        let mut verdicts = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        if !verdicts.iter().any(|(b, _)| b == bytes) {
            if verdicts.len() == KEPT {
                verdicts.remove(0);
            }
            verdicts.push((bytes.to_vec(), verdict.clone()));
        }
        verdict
    }

    fn find(&self, bytes: &[u8]) -> Option<Verdict> {
        let verdicts = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        verdicts
            .iter()
            .find(|(b, _)| b == bytes)
            .map(|(_, v)| v.clone())
    }
}
