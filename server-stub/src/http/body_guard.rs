//! Deadlines for request bodies on the device sites. The idle timeout resets on every byte and
//! the header timeout ends with the head, so without this a client sending one body byte every
//! few seconds held its connection slot forever (20 of them held all of `--max-connections
//! 20`). A [`Guarded`] body fails its next read, and the request is answered 408 with
//! `Connection: close`, once either
//! - the whole body has not arrived [`Limits::body_deadline`] after the head, or
//! - after [`Limits::body_rate_grace`], fewer than [`Limits::body_min_rate`] bytes per second
//!   (averaged since the head) have arrived.
//!
//! One timer per body, set to whichever of the two would fail first given the bytes so far,
//! and moved on as data arrives. The timer is made only when the body first has to wait: a
//! check's body usually arrives with its head, and registering (then moving to an earlier
//! deadline) a timer per request woke tokio's timer driver through its eventfd each time
//! (`Sleep::reset` 3 % of the stub's CPU per keep-alive check, docs/BENCHMARKS.md §4).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::Limits;
use crate::clock;

/// Set when a [`Guarded`] body gave up, so the answer can say 408 and close.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expired(Arc<AtomicBool>);

impl Expired {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A request body that fails when it arrives too slowly (see the module docs).
pub(crate) struct Guarded<B> {
    inner: B,
    start: Instant,
    taken: u64,
    deadline: Instant,
    min_rate: u64,
    grace: Duration,
    /// Armed at [`Guarded::fails_at`] the first time the inner body is pending.
    timer: Option<Pin<Box<Sleep>>>,
    expired: Expired,
    done: bool,
}

impl<B> Guarded<B> {
    pub(crate) fn new(inner: B, limits: &Limits) -> (Guarded<B>, Expired) {
        let start = clock::tokio_now();
        let deadline = start + limits.body_deadline;
        let expired = Expired::default();
        let body = Guarded {
            inner,
            start,
            taken: 0,
            deadline,
            min_rate: limits.body_min_rate,
            grace: limits.body_rate_grace,
            timer: None,
            expired: expired.clone(),
            done: false,
        };
        (body, expired)
    }

    /// When the body fails if no further byte arrives.
    fn fails_at(&self) -> Instant {
        if self.min_rate == 0 {
            return self.deadline;
        }
        // taken >= rate * elapsed holds until elapsed = taken / rate.
        let covered = Duration::from_secs_f64(self.taken as f64 / self.min_rate as f64);
        (self.start + covered.max(self.grace)).min(self.deadline)
    }

    /// Polls the timer, armed (or moved) to [`Guarded::fails_at`] for the bytes so far.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.fails_at();
        let timer = match &mut self.timer {
            Some(timer) => {
                // Only a changed deadline is re-registered.
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        timer.as_mut().poll(cx)
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.taken += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.poll_timer(cx).is_pending() {
                    return Poll::Pending;
                }
                this.done = true;
                this.expired.0.store(true, Ordering::Release);
                let why = if clock::tokio_now() >= this.deadline {
                    "request body deadline passed"
                } else {
                    "request body below the minimum rate"
                };
                Poll::Ready(Some(Err(why.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that never sends anything.
    struct Silent;

    impl Body for Silent {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Pending
        }
    }

    fn limits(deadline: u64, rate: u64, grace: u64) -> Limits {
        Limits {
            body_deadline: Duration::from_secs(deadline),
            body_min_rate: rate,
            body_rate_grace: Duration::from_secs(grace),
            ..Limits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_at_the_grace_period_then_the_deadline() {
        let start = clock::tokio_now();
        let (mut body, expired) = Guarded::new(Silent, &limits(30, 100, 5));
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(clock::tokio_now() - start, Duration::from_secs(5));
        assert!(expired.is_set());

        let start = clock::tokio_now();
        let (mut body, _) = Guarded::new(Silent, &limits(30, 0, 5));
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(clock::tokio_now() - start, Duration::from_secs(30));
    }

    /// A body fed by a channel.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_buy_time_at_the_minimum_rate_but_not_past_the_deadline() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let start = clock::tokio_now();
        let (mut body, _) = Guarded::new(Fed(rx), &limits(30, 100, 5));
        // 1000 bytes at once cover 10 s at 100 B/s.
        tx.send(Bytes::from(vec![0; 1000])).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(clock::tokio_now() - start, Duration::from_secs(10));

        // 100 kB cover 1000 s at that rate, but the deadline is 30 s.
        let start = clock::tokio_now();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (mut body, _) = Guarded::new(Fed(rx), &limits(30, 100, 5));
        tx.send(Bytes::from(vec![0; 100_000])).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(clock::tokio_now() - start, Duration::from_secs(30));
    }

    /// A body that has arrived whole never makes a timer; one that waits gets one.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_waits_arms_no_timer() {
        let whole = http_body_util::Full::new(Bytes::from_static(b"<x/>"));
        let (mut body, expired) = Guarded::new(whole, &limits(30, 100, 5));
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "<x/>"
        );
        assert!(body.frame().await.is_none());
        assert!(body.timer.is_none());
        assert!(!expired.is_set());

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (mut body, _) = Guarded::new(Fed(rx), &limits(30, 100, 5));
        let waiting = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)));
        assert!(waiting.await.is_pending());
        assert_eq!(
            body.timer.as_ref().map(|t| t.deadline()),
            Some(body.start + Duration::from_secs(5))
        );
        drop(tx);
    }
}
