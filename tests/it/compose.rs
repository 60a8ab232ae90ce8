//! `deployments/docker-compose.yml` cannot be run here (no Docker engine), so it is kept
//! right by reading: every service it builds is a binary of this workspace, and every
//! variable it sets is one `ServiceConfig` reads.

use std::path::Path;

use platform::ServiceName;
use serde_yaml::Value;

fn compose() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deployments/docker-compose.yml");
    let text = std::fs::read_to_string(&path).expect("deployments/docker-compose.yml exists");
    let mut doc: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML");
    doc.apply_merge().expect("YAML merge keys resolve");
    doc
}

/// Whether some service of the platform reads `var` (its README row says what for).
pub(crate) fn is_service_var(var: &str) -> bool {
    let settings: [&[(&str, &str, &str)]; 7] = [
        gateway::config::ENV_VARS,
        user_service::settings::ENV_VARS,
        subscription_service::settings::ENV_VARS,
        billing_service::settings::ENV_VARS,
        payment_service::settings::ENV_VARS,
        invoicing_service::settings::ENV_VARS,
        notification_service::settings::ENV_VARS,
    ];
    platform::config::is_known_var(var)
        || settings
            .iter()
            .flat_map(|s| s.iter())
            .any(|(v, _, _)| *v == var)
}

#[test]
fn every_platform_service_is_in_compose_with_known_variables() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services mapping");
    let mut built = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().expect("service names are strings");
        let Some(binary) = svc["build"]["args"]["BINARY"].as_str() else {
            continue; // infrastructure (postgres, redis, nats)
        };
        assert!(
            ServiceName::ALL.iter().any(|s| s.binary() == binary),
            "{name}: BINARY={binary} is not a binary of this workspace"
        );
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crates")
            .join(binary)
            .join("src/main.rs");
        assert!(manifest.exists(), "{name}: {} missing", manifest.display());
        let env = svc["environment"]
            .as_mapping()
            .expect("environment mapping");
        for (var, _) in env {
            let var = var.as_str().expect("variable names are strings");
            assert!(
                is_service_var(var),
                "{name}: {var} is not a variable the services read"
            );
        }
        built.push(binary.to_string());
    }
    built.sort();
    let mut all: Vec<String> = ServiceName::ALL
        .iter()
        .map(|s| s.binary().to_string())
        .collect();
    all.sort();
    assert_eq!(
        built, all,
        "compose must run each of the seven services once"
    );
}

#[test]
fn only_the_gateway_is_published_and_infrastructure_needs_credentials() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services mapping");
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        if name == "gateway" {
            assert!(svc.get("ports").is_some(), "the gateway is published");
        } else {
            assert!(
                svc.get("ports").is_none(),
                "{name} must stay on the compose network"
            );
        }
    }
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deployments/docker-compose.yml"),
    )
    .unwrap();
    assert!(
        !text.contains("trust"),
        "Postgres must not trust every connection"
    );
    assert!(text.contains("--requirepass"), "Redis needs a password");
    // Every ${VAR} the file uses is defined in the env file compose reads.
    let env =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deployments/.env"))
            .expect("deployments/.env exists");
    let defined: Vec<&str> = env
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    for part in text.split("${").skip(1) {
        let var = part
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap();
        assert!(defined.contains(&var), "{var} is not in deployments/.env");
    }
}
