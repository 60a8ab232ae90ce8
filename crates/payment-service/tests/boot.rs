//! The service assembles in a process where nothing installed a TLS provider beforehand, as
//! in its own binary (the other tests' harness installs one, which once hid a start-up panic).

use payment_service::settings::Settings;
use platform::ServiceName;
use test_support::TestDb;

#[tokio::test]
async fn builds_without_a_preinstalled_tls_provider() {
    let db = TestDb::new().await;
    let cfg = test_support::config(
        ServiceName::Payment,
        &db.url,
        &test_support::unique_prefix(),
        &[],
    );
    let settings =
        Settings::from_lookup(|k| (k == "SANDBOX_PSP_ADDR").then(|| "127.0.0.1:0".into())).unwrap();
    let app = payment_service::build_with(cfg, settings).await;
    assert!(app.is_ok(), "{:?}", app.err());
    drop(app);
    db.drop_db().await;
}
