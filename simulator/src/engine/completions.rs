//! The way back from the request tasks to the engine, and when a finished request wakes it.
//! A task queues its [`Completion`] without waking anybody; it wakes the engine only once as
//! many completions are waiting as the engine asked for ([`Completions::arrived`]). With its
//! requests at the in-flight cap the engine asks for a batch, so it sleeps and wakes once per
//! batch instead of once per request: each wake-up was a futex call on the worker that
//! finished the request and a thread switch on the engine's side, about 5 % of a run's CPU
//! (docs/BENCHMARKS.md §3b, fourth round). What a device sees does not change: the engine
//! still serves every item at its own virtual instant.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use super::perform::Completion;

/// What the request tasks and the engine share.
struct Gate {
    /// Completions sent and not yet taken by the engine.
    waiting: AtomicUsize,
    /// How many waiting completions wake the engine.
    want: AtomicUsize,
    wake: Notify,
}

/// A request task's end of the way back (cheap to clone).
#[derive(Clone)]
pub(super) struct CompletionSender {
    tx: mpsc::UnboundedSender<Completion>,
    gate: Arc<Gate>,
}

impl CompletionSender {
    /// Queues `c` and wakes the engine if it now has what it waits for. A closed channel
    /// means the engine is gone (it outlives every request it started), so nothing is lost.
    pub(super) fn send(&self, c: Completion) {
        // Counted before the send: whatever the engine takes has been counted, so its
        // count never goes below zero. Sequentially consistent with the engine's store of
        // `want` and load of `waiting`: of a task counting and the engine starting a wait,
        // at least one sees the other, so no wake-up is lost.
        let waiting = self.gate.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.tx.send(c);
        if waiting >= self.gate.want.load(Ordering::SeqCst) {
            self.gate.wake.notify_one();
        }
    }
}

/// The engine's end.
pub(super) struct Completions {
    rx: mpsc::UnboundedReceiver<Completion>,
    gate: Arc<Gate>,
}

impl Completions {
    pub(super) fn new() -> (CompletionSender, Completions) {
        let (tx, rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Gate {
            waiting: AtomicUsize::new(0),
            want: AtomicUsize::new(1),
            wake: Notify::new(),
        });
        let sender = CompletionSender {
            tx,
            gate: gate.clone(),
        };
        (sender, Completions { rx, gate })
    }

    /// A completion that has arrived, if any (never waits).
    pub(super) fn try_next(&mut self) -> Option<Completion> {
        let c = self.rx.try_recv().ok()?;
        self.gate.waiting.fetch_sub(1, Ordering::SeqCst);
        Some(c)
    }

    /// Resolves once at least `want` completions (at least 1) are waiting. The caller must
    /// have that many requests out, or it waits for ever (it bounds every wait anyway).
    pub(super) async fn arrived(&self, want: usize) {
        let want = want.max(1);
        self.gate.want.store(want, Ordering::SeqCst);
        loop {
            // Registered before the count is read: a task that counts after the read
            // finds the engine waiting and wakes it (or leaves a permit for this wait).
            let woken = self.gate.wake.notified();
            if self.gate.waiting.load(Ordering::SeqCst) >= want {
                return;
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use ucupdate_agent::machine::Event;
    use ucupdate_agent::perform::{Done, Kind};

    use super::*;

    fn completion(slot: u32) -> Completion {
        let done = Done {
            event: Event::CheckNow,
            stats: Default::default(),
            error: None,
        };
        Completion::for_test(slot, Kind::Check, done)
    }

    fn is_ready(f: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        f.poll(&mut cx).is_ready()
    }

    /// A wait for three completions does not end at two and ends at the third; the engine
    /// takes them in the order they were sent, and a wait for one then needs a new one.
    #[test]
    fn the_engine_is_woken_once_its_batch_has_arrived() {
        let (tx, mut rx) = Completions::new();
        tx.send(completion(1));
        tx.send(completion(2));
        {
            let mut wait = pin!(rx.arrived(3));
            assert!(!is_ready(wait.as_mut()), "two of three");
            tx.send(completion(3));
            assert!(is_ready(wait.as_mut()), "the third wakes it");
        }
        let slots: Vec<u32> = std::iter::from_fn(|| rx.try_next().map(|c| c.slot())).collect();
        assert_eq!(slots, [1, 2, 3]);
        let mut wait = pin!(rx.arrived(1));
        assert!(!is_ready(wait.as_mut()), "all three were taken");
        tx.send(completion(4));
        assert!(is_ready(wait.as_mut()));
    }
}
