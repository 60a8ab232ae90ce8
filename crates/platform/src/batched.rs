//! Connection tasks that, while a connection is busy, let the runtime's other ready tasks go
//! first, so that what many calls queued on one HTTP/2 connection leaves in one write.
//!
//! Why: an HTTP/2 connection's frames are written by the task that drives the connection.
//! A call that queues a frame wakes that task, and tokio runs a task woken this way next (its
//! "LIFO slot"), so under load a call's frames often went out in a write of their own — one
//! syscall, and on loopback the receiver's whole TCP path, per call. Sent to the back of its
//! worker's run queue first, the connection task runs after the other ready calls have queued
//! theirs and writes them all at once.
//!
//! Only while more than one call is in flight on the connection: with one, there is nothing
//! to wait for, and the detour cost more than it saved (the self-wake also wakes an idle
//! worker to look for work). `tokio::task::yield_now` instead (deferred until the worker's
//! queue is empty) batched less and served fewer requests than no batching at all.
//! BENCHMARKS.md has the figures.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

#[derive(Default)]
struct Counts {
    now: AtomicUsize,
    started: AtomicU64,
}

/// How many calls are in flight on one connection (`enter` counts one until its guard
/// drops), and how many ever started (for the idle timeout).
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<Counts>);

impl InFlight {
    pub(crate) fn enter(&self) -> InFlightGuard {
        self.0.now.fetch_add(1, Ordering::Relaxed);
        self.0.started.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.0.clone())
    }

    fn busy(&self) -> bool {
        self.0.now.load(Ordering::Relaxed) > 1
    }

    /// Calls started so far.
    pub(crate) fn started(&self) -> u64 {
        self.0.started.load(Ordering::Relaxed)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.0.now.load(Ordering::Relaxed)
    }
}

/// One call in flight; dropping it ends the call.
pub(crate) struct InFlightGuard(Arc<Counts>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// `inner`, polled one scheduler turn after each wake-up while its connection is busy.
    pub(crate) struct Batched<F> {
        #[pin]
        inner: F,
        calls: InFlight,
        requeued: bool,
    }
}

impl<F> Batched<F> {
    pub(crate) fn new(inner: F, calls: InFlight) -> Self {
        Batched {
            inner,
            calls,
            requeued: false,
        }
    }

    /// The connection itself (to shut it down gracefully).
    pub(crate) fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().inner
    }
}

impl<F: Future> Future for Batched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !*this.requeued && this.calls.busy() {
            // A task that wakes itself while running goes to the back of its worker's queue.
            *this.requeued = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        *this.requeued = false;
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Runs a batched "connection" with `calls` in flight, wakes it, and queues three other
    /// tasks behind the wake-up; the order in which they all ran.
    async fn order_with(calls: usize) -> Vec<&'static str> {
        let order = Arc::new(Mutex::new(Vec::new()));
        let in_flight = InFlight::default();
        let _guards: Vec<_> = (0..calls).map(|_| in_flight.enter()).collect();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let o = order.clone();
        let conn = tokio::spawn(Batched::new(
            async move {
                rx.await.expect("sender kept");
                o.lock().unwrap().push("connection");
            },
            in_flight,
        ));
        tokio::task::yield_now().await;
        tx.send(()).expect("receiver alive");
        let others: Vec<_> = (0..3)
            .map(|_| {
                let o = order.clone();
                tokio::spawn(async move { o.lock().unwrap().push("call") })
            })
            .collect();
        conn.await.unwrap();
        for t in others {
            t.await.unwrap();
        }
        order.lock().unwrap().clone()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_connection_runs_after_the_ready_calls() {
        assert_eq!(order_with(2).await, ["call", "call", "call", "connection"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_with_one_call_runs_straight_away() {
        assert_eq!(order_with(1).await, ["connection", "call", "call", "call"]);
    }

    #[test]
    fn guards_count_calls_until_dropped() {
        let calls = InFlight::default();
        let one = calls.enter();
        assert!(!calls.busy());
        let two = calls.enter();
        assert!(calls.busy());
        drop(one);
        assert!(!calls.busy());
        drop(two);
        assert_eq!(calls.in_flight(), 0);
    }
}
