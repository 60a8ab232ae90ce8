//! `deployments/kubernetes/` cannot be applied here (no cluster), so it is checked three ways:
//! by reading (every service deployed, probed and configured with variables it reads; only
//! the gateway reachable from outside), by kubectl's own kustomize rendering both the base and
//! the production overlay, and by two independent checkers of what was rendered:
//! kubernetes-validate (the Kubernetes API's schemas, strict: an unknown field fails) and
//! checkov (a policy scanner: non-root, read-only, probes, limits, …; no failed check allowed,
//! each skip annotated with its reason). `cargo xtask test` installs both (`KUBERNETES_VALIDATE`,
//! `CHECKOV`); kubectl comes from the system (Debian: kubernetes-client; `KUBECTL` overrides).

use std::path::{Path, PathBuf};
use std::process::Command;

use platform::ServiceName;
use serde::Deserialize;
use serde_yaml::Value;

use crate::compose::is_service_var;

/// The oldest Kubernetes the manifests are promised to work on.
const KUBERNETES_VERSION: &str = "1.30.0";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deployments/kubernetes")
}

/// Every object of the base, as written (no rendering needed).
fn base_objects() -> Vec<Value> {
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(dir().join("base")).expect("base/ exists") {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "kustomization.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            objects.push(v);
        }
    }
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deployments/kubernetes/base"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn every_service_is_deployed_probed_on_its_port_and_configured_with_variables_it_reads() {
    let objects = base_objects();
    let config = find(&objects, "ConfigMap", "platform");
    for (var, _) in config["data"]
        .as_mapping()
        .expect("platform ConfigMap data")
    {
        let var = str_of(var);
        assert!(
            is_service_var(var) || var.starts_with("AWS_"),
            "ConfigMap platform: {var} is not a variable the services read"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    for service in ServiceName::ALL {
        let name = service.short();
        let port = u64::from(service.default_port());
        let deployment = find(&objects, "Deployment", name);
        let pod = &deployment["spec"]["template"]["spec"];
        let containers = pod["containers"].as_sequence().unwrap();
        assert_eq!(containers.len(), 1, "{name}: one container");
        let c = &containers[0];
        assert_eq!(
            str_of(&c["image"]),
            format!("saas-platform/{}:{version}", service.binary()),
            "{name}: the image of its binary, at the workspace's version"
        );
        assert_eq!(
            c["ports"][0]["containerPort"].as_u64(),
            Some(port),
            "{name}"
        );
        for (probe, path) in [
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ] {
            assert_eq!(str_of(&c[probe]["httpGet"]["path"]), path, "{name} {probe}");
            assert_eq!(
                c[probe]["httpGet"]["port"].as_u64(),
                Some(port),
                "{name} {probe}"
            );
        }
        for env in c["env"].as_sequence().unwrap() {
            let var = str_of(&env["name"]);
            assert!(
                is_service_var(var) || var.starts_with("AWS_"),
                "{name}: {var} is not a variable the services read"
            );
            if var == "LISTEN_ADDR" {
                assert_eq!(str_of(&env["value"]), format!("0.0.0.0:{port}"), "{name}");
            } else {
                // Everything else set per service is a secret: referenced, never written here.
                assert_eq!(
                    str_of(&env["valueFrom"]["secretKeyRef"]["name"]),
                    "platform-secrets",
                    "{name}: {var} must come from the platform-secrets Secret"
                );
            }
        }
        let svc = find(&objects, "Service", name);
        assert_eq!(
            svc["spec"]["ports"][0]["port"].as_u64(),
            Some(port),
            "{name}"
        );
        let hpa = find(&objects, "HorizontalPodAutoscaler", name);
        assert!(
            hpa["spec"]["minReplicas"].as_u64() >= Some(2),
            "{name}: two replicas at least, so one can go"
        );
        find(&objects, "PodDisruptionBudget", name);
    }
    assert!(
        !objects.iter().any(|o| o["kind"] == "Secret"),
        "no Secret (and so no secret value) belongs in the repository"
    );
}

#[test]
fn only_the_gateway_takes_traffic_from_outside_the_platform() {
    let objects = base_objects();
    for svc in objects.iter().filter(|o| o["kind"] == "Service") {
        let kind = &svc["spec"]["type"];
        assert!(
            kind.is_null() || kind == "ClusterIP",
            "Service {} must stay inside the cluster (the Ingress reaches the gateway)",
            str_of(&svc["metadata"]["name"])
        );
    }
    let policies: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .collect();
    assert!(
        policies.iter().any(|p| {
            p["spec"]["podSelector"]
                .as_mapping()
                .is_some_and(|m| m.is_empty())
                && p["spec"]["ingress"].is_null()
        }),
        "a default-deny ingress policy over every pod"
    );
    let mut open = Vec::new();
    for p in &policies {
        for rule in p["spec"]["ingress"].as_sequence().into_iter().flatten() {
            if rule["from"].is_null() {
                open.push(str_of(
                    &p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
                ));
            }
        }
    }
    assert_eq!(open, ["gateway"], "rules open to any source");
    for service in ServiceName::ALL {
        assert!(
            policies.iter().any(|p| {
                p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == service.short()
            }),
            "{}: no policy lets its callers in",
            service.short()
        );
    }
}

/// `kubectl kustomize <dir>`: the manifests a cluster would be given.
fn render(overlay: &str) -> String {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = Command::new(&kubectl)
        .arg("kustomize")
        .arg(dir().join(overlay))
        .output()
        .unwrap_or_else(|e| {
            panic!("{kubectl}: {e} (Debian: apt-get install kubernetes-client; .ci/run does)")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A directory of its own under the system's temporary one, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("k8s-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Both renderings, as files in a fresh directory.
fn rendered(name: &str) -> Scratch {
    let dir = Scratch::new(name);
    for (file, overlay) in [
        ("base.yaml", "base"),
        ("production.yaml", "overlays/production"),
    ] {
        let text = render(overlay);
        assert!(
            text.contains("kind: Deployment"),
            "{overlay} renders Deployments"
        );
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    dir
}

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} names the checker; `cargo xtask test` installs it and sets it")
    })
}

fn kubernetes_validate(files: &[PathBuf]) -> std::process::Output {
    Command::new(tool("KUBERNETES_VALIDATE"))
        .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
        .args(files)
        .output()
        .expect("kubernetes-validate runs")
}

#[test]
fn rendered_manifests_match_the_kubernetes_api_schemas_strictly() {
    let dir = rendered("schemas");
    let files = vec![
        dir.path().join("base.yaml"),
        dir.path().join("production.yaml"),
    ];
    let out = kubernetes_validate(&files);
    assert!(
        out.status.success(),
        "kubernetes-validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The control: the same checker refuses a field the API does not have.
    let production = std::fs::read_to_string(&files[1]).unwrap();
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        production.replacen("revisionHistoryLimit:", "revisionHistoryLimt:", 1),
    )
    .unwrap();
    let out = kubernetes_validate(&[typo]);
    assert!(
        !out.status.success(),
        "an unknown field must fail strict validation"
    );
}

/// checkov's summary of a directory: (passed, failed, the failed checks).
fn checkov(dir: &Path) -> (u64, u64, String) {
    let out = Command::new(tool("CHECKOV"))
        .args([
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
            "-d",
        ])
        .arg(dir)
        .output()
        .expect("checkov runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's JSON: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"]))
        .collect();
    (
        report["summary"]["passed"].as_u64().unwrap_or(0),
        report["summary"]["failed"].as_u64().unwrap_or(0),
        failed.join("\n"),
    )
}

#[test]
fn rendered_manifests_pass_the_policy_scan_with_no_failed_check() {
    let dir = rendered("policy");
    let (passed, failed, which) = checkov(dir.path());
    assert_eq!(failed, 0, "checkov findings:\n{which}");
    assert!(
        passed > 500,
        "checkov ran its Kubernetes checks ({passed} passed)"
    );
    // The control: a pod with none of the hardening fails the same scan.
    let bare = Scratch::new("bare");
    std::fs::write(
        bare.path().join("bare.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  namespace: saas-platform\n\
         spec:\n  containers:\n    - name: app\n      image: saas-platform/gateway:0.1.0\n",
    )
    .unwrap();
    let (_, failed, _) = checkov(bare.path());
    assert!(
        failed > 5,
        "a bare pod must fail many checks, failed {failed}"
    );
}
