//! Reliability: the invoicing service killed with SIGKILL in the middle of invoicing a
//! 10,000-tenant billing run, then restarted, makes every invoice exactly once — one per
//! subscription period, each charge on one invoice, numbers 1 to 10,000 with no gap and no
//! duplicate, every PDF stored and matching its SHA-256, every event once.
//!
//! The service runs as its real binary (so the kill is a real `kill -9`); billing runs
//! in-process and serves the run's charges from its real database.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Datelike;
use platform::ServiceName;
use sqlx::PgPool;
use test_support::TestDb;

const TENANTS: i64 = 10_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Invoicing {
    db_url: String,
    billing: String,
    blobs: std::path::PathBuf,
    prefix: String,
}

impl Invoicing {
    fn start(&self) -> (Child, u16) {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_invoicing-service"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &self.db_url)
            .env("REDIS_URL", test_support::redis_url())
            .env("NATS_URL", test_support::nats_url())
            .env("EVENT_PREFIX", &self.prefix)
            .env("BILLING_SERVICE_ADDR", &self.billing)
            .env("INVOICE_GRACE_SECS", "0")
            .env("SELLER_NAME", "Operator GmbH")
            .env("BLOB_STORE", &self.blobs)
            .env("OUTBOX_POLL_MS", "100")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("the invoicing-service binary starts");
        (child, port)
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Waits (at most `limit`) until `sql` counts at least `n`.
async fn wait_for(pool: &PgPool, sql: &str, n: i64, limit: Duration) -> i64 {
    let deadline = Instant::now() + limit;
    loop {
        let got = count(pool, sql).await;
        if got >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_batch_then_a_restart_invoices_everything_exactly_once() {
    test_support::init_logging();
    let prefix = test_support::unique_prefix();
    let (bdb, idb) = (TestDb::new().await, TestDb::new().await);
    let billing = test_support::spawn(
        billing_service::build_with(
            test_support::config(ServiceName::Billing, &bdb.url, &prefix, &[]),
            billing_service::settings::Settings::from_lookup(|k| {
                (k == "BILLING_CLOCK_SECS").then(|| "0".into())
            })
            .unwrap(),
        )
        .await
        .expect("billing starts"),
    )
    .await;
    // A completed run: for each tenant's subscription period, a fee in advance.
    let bpool = bdb.pool().await;
    let run = ids::RunId::generate();
    sqlx::query(
        "INSERT INTO billing_runs (id, period_start, period_end, tenant_ids, tenant_key, status, \
           deadline_seconds, finished_at) \
         VALUES ($1, '2026-11-01', '2026-12-01', '{}', 'crash', 'completed', 60, now())",
    )
    .bind(&run)
    .execute(&bpool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO charges (run_id, tenant_id, kind, price_id, quantity, amount_minor, \
           currency, plan_id, plan_version, subscription_id, period_start, period_end, part) \
         SELECT $1, 'ten_' || lpad(t::text, 6, '0'), 'flat', 'base', 1, 4900 + t, 'EUR', \
           'pro', 1, 'sub_' || t, '2026-11-01', '2026-12-01', 'advance' \
         FROM generate_series(1, $2::bigint) t",
    )
    .bind(&run)
    .bind(TENANTS)
    .execute(&bpool)
    .await
    .unwrap();

    let invoicing = Invoicing {
        db_url: idb.url.clone(),
        billing: billing.url(),
        blobs: std::env::temp_dir().join(format!("crash-blobs-{prefix}")),
        prefix: prefix.clone(),
    };
    let (mut first, _) = invoicing.start();
    let ipool = {
        // The service creates and migrates its database; wait for its table.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pool = idb.pool().await;
            if sqlx::query("SELECT 1 FROM invoicing_runs LIMIT 1")
                .execute(&pool)
                .await
                .is_ok()
            {
                break pool;
            }
            assert!(Instant::now() < deadline, "the service never migrated");
            pool.close().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The run handed over, as the billing.run.completed consumer does.
    sqlx::query("INSERT INTO invoicing_runs (run_id) VALUES ($1)")
        .bind(&run)
        .execute(&ipool)
        .await
        .unwrap();
    let numbered = "SELECT count(*) FROM invoices WHERE number IS NOT NULL";
    let mid = wait_for(&ipool, numbered, TENANTS / 4, Duration::from_secs(300)).await;
    assert!(mid >= TENANTS / 4, "only {mid} invoices numbered");
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    let at_kill = count(&ipool, numbered).await;
    assert!(
        at_kill < TENANTS,
        "the batch was over before the kill ({at_kill} numbered)"
    );

    let (mut second, _) = invoicing.start();
    let published = "SELECT count(*) FROM invoices WHERE pdf_key IS NOT NULL";
    let done = wait_for(&ipool, published, TENANTS, Duration::from_secs(900)).await;
    // Let the outbox relay drain what is left (events are counted in the table).
    second.kill().ok();
    second.wait().ok();
    assert_eq!(done, TENANTS, "every invoice published after the restart");

    // Exactly once: one invoice per period, each charge on one line, numbers 1..=N.
    assert_eq!(
        count(&ipool, "SELECT count(*) FROM invoices").await,
        TENANTS
    );
    assert_eq!(
        count(&ipool, "SELECT count(*) FROM invoice_lines").await,
        TENANTS
    );
    let year = chrono::Utc::now().year();
    let numbers: Vec<String> = sqlx::query_scalar("SELECT number FROM invoices ORDER BY number")
        .fetch_all(&ipool)
        .await
        .unwrap();
    let want: Vec<String> = (1..=TENANTS)
        .map(|n| format!("INV-{year}-{n:06}"))
        .collect();
    assert!(numbers == want, "numbers are not exactly 1..={TENANTS}");
    for (event, n) in [("invoice.created", TENANTS), ("invoice.ready", TENANTS)] {
        let sql = format!("SELECT count(*) FROM outbox WHERE payload->>'type' = '{event}'");
        assert_eq!(count(&ipool, &sql).await, n, "{event} once per invoice");
    }
    // Every PDF is there and is what the invoice says it is.
    let pdfs: Vec<(String, String)> =
        sqlx::query_as("SELECT pdf_key, pdf_sha256 FROM invoices ORDER BY number")
            .fetch_all(&ipool)
            .await
            .unwrap();
    for (key, sha) in &pdfs {
        let bytes = std::fs::read(invoicing.blobs.join(key)).expect("the PDF is stored");
        assert_eq!(&invoicing_service::pdf::sha256_hex(&bytes), sha, "{key}");
    }

    let _ = std::fs::remove_dir_all(&invoicing.blobs);
    ipool.close().await;
    bpool.close().await;
    billing.stop().await;
    idb.drop_db().await;
    bdb.drop_db().await;
    if let Ok(bus) = platform::events::EventBus::connect(&test_support::nats_url(), &prefix).await {
        let _ = bus.delete_streams().await;
    }
}
