//! Per-core device listeners ([`crate::ServerConfig::workers`] >= 1): each worker is an OS
//! thread running its own current-thread tokio runtime, with its own listener on every device
//! address (internal, internal TLS, external), the listeners of one address sharing the port
//! through `SO_REUSEPORT`, so the kernel spreads new connections over the workers. A
//! connection then lives on one thread from accept to close: no wake-ups across threads, which
//! cost about 14 % of the stub's CPU per keep-alive check in the multi-thread runtime
//! (docs/BENCHMARKS.md §4, third round). It is nginx's model (one event loop per worker).
//!
//! What the workers share is what one runtime's tasks shared already: the [`App`] and its
//! `Arc`'d context (state, metrics, the connection counters of both caps, the audit log). The
//! admin listener, the flush tick and the cleanup stay on the caller's runtime. Shutdown is the
//! same `watch` signal; each worker's [`conn::run`] drains its connections, then the thread
//! reports through a oneshot that [`crate::RunningServer::shutdown`] awaits.

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::app::{App, Site};
use crate::http::conn;

/// One device address to serve on every worker.
pub(crate) struct DeviceSite {
    /// The first listener, bound by the caller (its port is the one the server reports).
    pub listener: TcpListener,
    pub site: Site,
    pub tls: Option<TlsAcceptor>,
}

/// One worker's share: a listener per device address, not yet registered with a runtime.
struct Share {
    listeners: Vec<(std::net::TcpListener, Site, Option<TlsAcceptor>)>,
}

/// Binds `workers - 1` more listeners on each site's address (`SO_REUSEPORT`; the caller
/// bound the first with it set), starts the worker threads, and returns one task per worker
/// on the caller's runtime that ends when that worker has drained.
pub(crate) fn start(
    workers: usize,
    sites: Vec<DeviceSite>,
    app: &App,
    shutdown: &watch::Receiver<bool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let workers = workers.max(1);
    let mut shares: Vec<Share> = (0..workers)
        .map(|_| Share {
            listeners: Vec::new(),
        })
        .collect();
    for DeviceSite {
        listener,
        site,
        tls,
    } in sites
    {
        let addr = listener.local_addr()?;
        for share in shares.iter_mut().skip(1) {
            let more = crate::server::listen(addr, true)?.into_std()?;
            share.listeners.push((more, site, tls.clone()));
        }
        shares[0].listeners.push((listener.into_std()?, site, tls));
    }
    // Every runtime is built before any thread starts, so a failure leaves nothing running.
    let runtimes = (0..workers)
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut tasks = Vec::with_capacity(workers);
    for (index, (share, runtime)) in shares.into_iter().zip(runtimes).enumerate() {
        let (done, finished) = oneshot::channel::<()>();
        let (app, shutdown) = (app.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name(format!("ucupdate-worker-{index}"))
            .spawn(move || {
                runtime.block_on(serve(index, share, app, shutdown));
                let _ = done.send(());
            })?;
        tasks.push(tokio::spawn(async move {
            if finished.await.is_err() {
                tracing::error!(worker = index, "worker thread ended without draining");
            }
        }));
    }
    Ok(tasks)
}

/// One worker: its listeners' accept loops, on this thread's runtime, until all have drained.
async fn serve(index: usize, share: Share, app: App, shutdown: watch::Receiver<bool>) {
    let mut loops = tokio::task::JoinSet::new();
    for (listener, site, tls) in share.listeners {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker = index, error = %e, "cannot register a listener");
                continue;
            }
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::debug!(worker = index, %addr, ?site, "worker listening");
        }
        loops.spawn(conn::run(
            listener,
            site,
            tls,
            app.clone(),
            shutdown.clone(),
            Some(index),
        ));
    }
    while loops.join_next().await.is_some() {}
}
