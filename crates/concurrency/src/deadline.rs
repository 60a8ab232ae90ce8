//! Bounding a whole run in time.
//!
//! A run that cannot finish in time is better stopped than left to hold locks and connections
//! while everything queues behind it (the cascading failure of the case study). The inner
//! future is dropped when the deadline fires, which cancels it at its next await point and
//! releases whatever it holds (permits, transactions) through their destructors.

use std::future::Future;
use std::time::Duration;

/// The default cap on a billing run.
pub const DEFAULT_RUN_DEADLINE: Duration = Duration::from_secs(120);

/// The deadline passed before the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceededDeadline {
    pub limit: Duration,
}

impl std::fmt::Display for ExceededDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exceeded deadline of {:?}", self.limit)
    }
}

impl std::error::Error for ExceededDeadline {}

/// Runs `fut` for at most `limit`.
pub async fn with_deadline<F: Future>(
    limit: Duration,
    fut: F,
) -> Result<F::Output, ExceededDeadline> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ExceededDeadline { limit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct DropFlag(Arc<AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fires_and_cancels_the_work() {
        let dropped = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let (d, f) = (dropped.clone(), finished.clone());
        let r = with_deadline(Duration::from_secs(120), async move {
            let _guard = DropFlag(d);
            tokio::time::sleep(Duration::from_secs(600)).await;
            f.store(true, Ordering::SeqCst);
        })
        .await;
        assert_eq!(
            r,
            Err(ExceededDeadline {
                limit: DEFAULT_RUN_DEADLINE
            })
        );
        assert!(dropped.load(Ordering::SeqCst), "the work was dropped");
        assert!(!finished.load(Ordering::SeqCst), "and never completed");
        assert_eq!(r.unwrap_err().to_string(), "exceeded deadline of 120s");
    }

    #[tokio::test(start_paused = true)]
    async fn passes_results_of_work_that_finishes_in_time() {
        let r = with_deadline(Duration::from_secs(1), async {
            tokio::time::sleep(Duration::from_millis(999)).await;
            42
        })
        .await;
        assert_eq!(r, Ok(42));
    }
}
