//! Two budgets over semaphores: concurrent tasks and concurrent database sections.
//!
//! Permits are owned values (`OwnedSemaphorePermit`) moved into the task or held across the
//! awaited section, so a panic, an abort or a dropped future releases them like a normal
//! return does: a budget can never leak away.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// The two budgets (from `MAX_WORKERS` and `MAX_DB_JOBS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    pub max_workers: usize,
    pub max_db_jobs: usize,
}

/// A budget of zero would deadlock every caller; it is refused up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimiterError {
    ZeroBudget(&'static str),
    TooLarge(&'static str),
}

impl std::fmt::Display for LimiterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimiterError::ZeroBudget(which) => write!(f, "{which} must be at least 1"),
            LimiterError::TooLarge(which) => {
                write!(f, "{which} exceeds {}", Semaphore::MAX_PERMITS)
            }
        }
    }
}

impl std::error::Error for LimiterError {}

#[derive(Debug)]
struct Budget {
    sem: Arc<Semaphore>,
    max: usize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl Budget {
    fn new(max: usize, name: &'static str) -> Result<Self, LimiterError> {
        if max == 0 {
            return Err(LimiterError::ZeroBudget(name));
        }
        if max > Semaphore::MAX_PERMITS {
            return Err(LimiterError::TooLarge(name));
        }
        Ok(Budget {
            sem: Arc::new(Semaphore::new(max)),
            max,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    async fn acquire(self: &Arc<Self>) -> Permit {
        let permit = Arc::clone(&self.sem)
            .acquire_owned()
            .await
            .expect("the limiter never closes its semaphores");
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Permit {
            _permit: permit,
            budget: Arc::clone(self),
        }
    }
}

/// Held while a task runs or a section executes; dropping it frees the slot.
struct Permit {
    _permit: OwnedSemaphorePermit,
    budget: Arc<Budget>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Caps concurrent tasks and concurrent database sections. Cheap to clone; clones share the
/// budgets.
#[derive(Debug, Clone)]
pub struct Limiter {
    workers: Arc<Budget>,
    db_jobs: Arc<Budget>,
}

impl Limiter {
    pub fn new(cfg: LimiterConfig) -> Result<Self, LimiterError> {
        Ok(Limiter {
            workers: Arc::new(Budget::new(cfg.max_workers, "max_workers")?),
            db_jobs: Arc::new(Budget::new(cfg.max_db_jobs, "max_db_jobs")?),
        })
    }

    /// The async pool: waits for a worker slot, then spawns `fut`. The slot is held by the
    /// task until it ends (returns, panics or is aborted). Waiting here is the backpressure
    /// that keeps a producer from outrunning the workers.
    pub async fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let permit = self.workers.acquire().await;
        tokio::spawn(async move {
            let _permit = permit;
            fut.await
        })
    }

    /// The synchronous section: runs `fut` while holding a database slot. Cancelling the
    /// caller drops the future and the slot with it.
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        let _permit = self.db_jobs.acquire().await;
        fut.await
    }

    pub fn max_workers(&self) -> usize {
        self.workers.max
    }

    pub fn max_db_jobs(&self) -> usize {
        self.db_jobs.max
    }

    /// Tasks currently holding a worker slot.
    pub fn in_flight_workers(&self) -> usize {
        self.workers.in_flight.load(Ordering::SeqCst)
    }

    /// Sections currently holding a database slot.
    pub fn in_flight_db_jobs(&self) -> usize {
        self.db_jobs.in_flight.load(Ordering::SeqCst)
    }

    /// The most worker slots ever held at once.
    pub fn peak_workers(&self) -> usize {
        self.workers.peak.load(Ordering::SeqCst)
    }

    /// The most database slots ever held at once.
    pub fn peak_db_jobs(&self) -> usize {
        self.db_jobs.peak.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(w: usize, d: usize) -> Limiter {
        Limiter::new(LimiterConfig {
            max_workers: w,
            max_db_jobs: d,
        })
        .unwrap()
    }

    #[test]
    fn zero_budgets_are_refused() {
        let e = Limiter::new(LimiterConfig {
            max_workers: 0,
            max_db_jobs: 1,
        })
        .unwrap_err();
        assert_eq!(e, LimiterError::ZeroBudget("max_workers"));
        assert!(
            Limiter::new(LimiterConfig {
                max_workers: 1,
                max_db_jobs: 0
            })
            .is_err()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn in_flight_never_exceeds_either_budget_under_100k_tasks() {
        let l = limiter(16, 4);
        // Our own independent count, so the test does not only trust the limiter's gauges.
        let workers = Arc::new(AtomicUsize::new(0));
        let db = Arc::new(AtomicUsize::new(0));
        let max_workers_seen = Arc::new(AtomicUsize::new(0));
        let max_db_seen = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(100_000);
        for _ in 0..100_000 {
            let (l2, workers, db, mws, mds) = (
                l.clone(),
                workers.clone(),
                db.clone(),
                max_workers_seen.clone(),
                max_db_seen.clone(),
            );
            handles.push(
                l.spawn(async move {
                    let w = workers.fetch_add(1, Ordering::SeqCst) + 1;
                    mws.fetch_max(w, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    l2.run(async {
                        let d = db.fetch_add(1, Ordering::SeqCst) + 1;
                        mds.fetch_max(d, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        db.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await;
                    workers.fetch_sub(1, Ordering::SeqCst);
                })
                .await,
            );
        }
        for h in handles {
            h.await.unwrap();
        }
        let (mw, md) = (
            max_workers_seen.load(Ordering::SeqCst),
            max_db_seen.load(Ordering::SeqCst),
        );
        assert!(mw <= 16 && md <= 4, "workers {mw}, db {md}");
        assert!(l.peak_workers() <= 16 && l.peak_db_jobs() <= 4);
        // The budgets were actually used, so a limiter that serialised everything would fail.
        assert!(mw > 1 && md > 1, "workers {mw}, db {md}");
        assert_eq!(l.in_flight_workers(), 0);
        assert_eq!(l.in_flight_db_jobs(), 0);
    }

    #[tokio::test]
    async fn a_panicking_task_frees_its_permit() {
        let l = limiter(1, 1);
        let h = l.spawn(async { panic!("boom") }).await;
        assert!(h.await.unwrap_err().is_panic());
        assert_eq!(l.in_flight_workers(), 0);
        // The single slot is usable again.
        assert_eq!(l.spawn(async { 7 }).await.await.unwrap(), 7);
    }

    #[tokio::test]
    async fn an_aborted_task_frees_its_permit() {
        let l = limiter(1, 1);
        let h = l.spawn(std::future::pending::<()>()).await;
        assert_eq!(l.in_flight_workers(), 1);
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
        assert_eq!(l.in_flight_workers(), 0);
        assert_eq!(l.spawn(async { 1 }).await.await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_run_frees_its_db_permit() {
        let l = limiter(1, 1);
        let slow = l.run(tokio::time::sleep(Duration::from_secs(3600)));
        // Cancel it by timing out the caller.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), slow)
                .await
                .is_err()
        );
        assert_eq!(l.in_flight_db_jobs(), 0);
        assert_eq!(l.run(async { 5 }).await, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn spawn_waits_for_a_free_worker() {
        let l = limiter(1, 1);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let first = l
            .spawn(async move {
                let _ = rx.await;
            })
            .await;
        let l2 = l.clone();
        let second = tokio::spawn(async move { l2.spawn(async { 2 }).await.await.unwrap() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "second spawn must wait for the slot");
        tx.send(()).unwrap();
        first.await.unwrap();
        assert_eq!(second.await.unwrap(), 2);
    }
}
