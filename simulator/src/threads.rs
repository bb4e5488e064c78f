//! `--threads N`: the runtime a run's requests (and the embedded server) execute on.
//!
//! The engine is one task on the process's main thread; each request is a short task. With
//! tokio's multi-thread runtime (the default, one worker per core) every completed request
//! wakes the engine across threads, and the kernel's connect and close, TLS and the embedded
//! server spread over the cores: the most checks per wall second on a machine with cores to
//! spare. With one thread everything, the engine included, runs on the main thread: no
//! hand-offs, no work stealing, the least CPU per check (10-13 % less over loopback HTTP and
//! HTTPS on the 2-core bench machine, at the same rate: docs/BENCHMARKS.md §3b, session 8),
//! which is what a load generator sharing a machine with the server under test wants.

use std::num::NonZeroUsize;

use tokio::runtime::{Builder, Runtime};

/// The runtime for `--threads`: `None` is one worker per core, `1` a current-thread runtime,
/// `N` that many workers.
pub fn runtime(threads: Option<NonZeroUsize>) -> std::io::Result<Runtime> {
    let mut builder = match threads.map(NonZeroUsize::get) {
        Some(1) => Builder::new_current_thread(),
        Some(n) => {
            let mut b = Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// Threads the current runtime runs tasks on: 1 for a current-thread runtime, else its
/// workers (what a report records, whoever built the runtime); `None` outside a runtime.
pub fn current() -> Option<u32> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let threads = match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => 1,
        _ => handle.metrics().num_workers(),
    };
    Some(u32::try_from(threads).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_thread_is_the_current_thread_and_more_are_workers() {
        let flavor = |t: Option<usize>| {
            let rt = runtime(t.and_then(NonZeroUsize::new)).expect("runtime");
            let flavor = rt.handle().runtime_flavor();
            let workers = rt.metrics().num_workers();
            (flavor, workers)
        };
        assert_eq!(flavor(Some(1)), (RuntimeFlavor::CurrentThread, 1));
        let threads = |t: usize| {
            let rt = runtime(NonZeroUsize::new(t)).expect("runtime");
            rt.block_on(async { current() })
        };
        assert_eq!((threads(1), threads(3)), (Some(1), Some(3)));
        assert_eq!(current(), None, "outside a runtime there is none to count");
        assert_eq!(flavor(Some(3)), (RuntimeFlavor::MultiThread, 3));
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert_eq!(flavor(None), (RuntimeFlavor::MultiThread, cores));
    }

    #[test]
    fn a_run_on_one_thread_never_leaves_it() {
        // Every request task and the embedded server's connections run where the engine
        // runs: nothing is handed to another thread.
        let rt = runtime(NonZeroUsize::new(1)).expect("runtime");
        let main = std::thread::current().id();
        let seen = rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|_| tokio::spawn(async { std::thread::current().id() }))
                .collect();
            let mut seen = Vec::new();
            for t in tasks {
                seen.push(t.await.expect("task"));
            }
            seen
        });
        assert!(seen.iter().all(|id| *id == main), "{seen:?} vs {main:?}");
    }
}
