use super::*;

fn cfg(vars: &[(&str, &str)]) -> Result<ServiceConfig, ConfigError> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ServiceConfig::from_lookup(ServiceName::Billing, |k| vars.get(k).cloned())
}

#[test]
fn defaults_point_at_localhost() {
    let c = cfg(&[]).unwrap();
    assert_eq!(c.listen_addr.port(), 50053);
    assert_eq!(
        c.database_url,
        "postgres://postgres@localhost:5432/saas_billing"
    );
    assert_eq!(c.max_workers, 8);
    assert_eq!(c.upstream(ServiceName::User), "http://127.0.0.1:50051");
    assert_eq!(c.log_format, LogFormat::Pretty);
    assert_eq!(c.event_stream_replicas, 1);
}

#[test]
fn debug_output_hides_connection_passwords() {
    let c = cfg(&[
        ("DATABASE_URL", "postgres://app:pg-pass-1@db/saas"),
        ("REDIS_URL", "redis://:redis-pass-2@r:6379"),
        (
            "NATS_URL",
            "nats://u:nats-pass-3@n1:4222,nats://u:nats-pass-4@n2:4222",
        ),
    ])
    .unwrap();
    let shown = format!("{c:?}");
    for pw in ["pg-pass-1", "redis-pass-2", "nats-pass-3", "nats-pass-4"] {
        assert!(!shown.contains(pw), "{shown}");
    }
    assert!(
        shown.contains("postgres://app:<redacted>@db/saas"),
        "{shown}"
    );
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value) in [
        ("MAX_WORKERS", "0"),
        ("MAX_WORKERS", "lots"),
        ("MAX_DB_JOBS", "-1"),
        ("LISTEN_ADDR", "localhost"),
        ("DATABASE_URL", "mysql://x"),
        ("REDIS_URL", "localhost:6379"),
        ("NATS_URL", "nats://"),
        ("LOG_FORMAT", "xml"),
        ("EVENT_PREFIX", "a.b"),
        ("USER_SERVICE_ADDR", "127.0.0.1:50051"),
        ("GRPC_TIMEOUT_MS", "0"),
        ("EVENT_STREAM_REPLICAS", "0"),
        ("EVENT_STREAM_REPLICAS", "7"),
    ] {
        let err = cfg(&[(var, value)]).unwrap_err();
        assert_eq!(err.var, var, "{value}");
        assert!(err.to_string().contains(var));
    }
}

#[test]
fn every_read_variable_is_documented() {
    // Collect what from_lookup asks for and compare with ENV_VARS (RUST_LOG is read by telemetry).
    let asked = std::cell::RefCell::new(Vec::<String>::new());
    ServiceConfig::from_lookup(ServiceName::Gateway, |k| {
        asked.borrow_mut().push(k.to_string());
        None
    })
    .unwrap();
    let mut asked = asked.into_inner();
    asked.push("RUST_LOG".into());
    asked.sort();
    asked.dedup();
    let mut documented: Vec<String> = ENV_VARS.iter().map(|(v, _, _)| v.to_string()).collect();
    documented.sort();
    assert_eq!(asked, documented);
}

#[test]
fn upstreams_may_be_lists_or_dns_names() {
    let c = cfg(&[
        ("USER_SERVICE_ADDR", "dns://user:50051"),
        ("SUBSCRIPTION_SERVICE_ADDR", "http://a:50052,http://b:50052"),
    ])
    .unwrap();
    assert_eq!(c.upstream(ServiceName::User), "dns://user:50051");
    assert_eq!(
        c.upstream(ServiceName::Subscription),
        "http://a:50052,http://b:50052"
    );
    let e = cfg(&[("USER_SERVICE_ADDR", "srv://user")]).unwrap_err();
    assert!(e.to_string().contains("USER_SERVICE_ADDR"), "{e}");
}
