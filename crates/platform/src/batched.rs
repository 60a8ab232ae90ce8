//! Connection tasks that let the runtime's other ready tasks go first, so that what many
//! calls queued on one HTTP/2 connection leaves in one write.
//!
//! Why: an HTTP/2 connection's frames are written by the task that drives the connection.
//! A call that queues a frame wakes that task, and tokio runs a task woken this way next (its
//! "LIFO slot"), so under load every call's frame went out in a write of its own — one
//! syscall, and on loopback the receiver's whole TCP path, per frame. Sent to the back of the
//! run queue first, the connection task runs after the other ready calls have queued theirs
//! and writes them all at once. When nothing else is ready it runs straight away: an idle
//! connection pays one extra poll, not a delay.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// `inner`, polled one scheduler turn after each wake-up.
    pub(crate) struct Batched<F> {
        #[pin]
        inner: F,
        requeued: bool,
    }
}

impl<F> Batched<F> {
    pub(crate) fn new(inner: F) -> Self {
        Batched {
            inner,
            requeued: false,
        }
    }
}

impl<F: Future> Future for Batched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !*this.requeued {
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Tasks already queued when the batched task is woken run before its inner future.
    #[tokio::test(flavor = "current_thread")]
    async fn ready_tasks_run_before_the_inner_future() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let o = order.clone();
        let batched = tokio::spawn(Batched::new(async move {
            rx.await.expect("sender kept");
            o.lock().unwrap().push("connection");
        }));
        tokio::task::yield_now().await;
        let ran = Arc::new(AtomicUsize::new(0));
        let mut others = Vec::new();
        tx.send(()).expect("receiver alive");
        for _ in 0..3 {
            let (o, ran) = (order.clone(), ran.clone());
            others.push(tokio::spawn(async move {
                ran.fetch_add(1, Ordering::SeqCst);
                o.lock().unwrap().push("call");
            }));
        }
        batched.await.unwrap();
        for t in others {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["call", "call", "call", "connection"]
        );
    }
}
