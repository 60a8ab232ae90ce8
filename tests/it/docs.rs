//! The README's configuration tables list exactly the variables the services read.

use std::path::Path;

#[test]
fn readme_documents_every_config_variable() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md exists");
    let all: Vec<_> = platform::config::ENV_VARS
        .iter()
        .chain(gateway::config::ENV_VARS)
        .chain(subscription_service::settings::ENV_VARS)
        .chain(user_service::settings::ENV_VARS)
        .chain(billing_service::settings::ENV_VARS)
        .chain(invoicing_service::settings::ENV_VARS)
        .chain(payment_service::settings::ENV_VARS)
        .chain(notification_service::settings::ENV_VARS)
        .collect();
    for (var, default, _) in &all {
        let row = format!("| `{var}` | `{default}` |");
        assert!(
            readme.contains(&row),
            "README.md lacks the row for {var}: {row}"
        );
    }
    let rows = readme
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains("` | `"))
        .filter(|l| l.chars().nth(3).is_some_and(|c| c.is_ascii_uppercase()))
        .count();
    assert_eq!(rows, all.len(), "README has rows for unknown variables");
}

/// Every event type a service names in its code is a typed contract in `event-types`, so a
/// new event cannot be published without a payload type its consumers can read.
#[test]
fn every_event_type_in_the_code_has_a_typed_payload() {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&crates).unwrap().flatten() {
        if krate.file_name() != "event-types" && krate.file_name() != "platform" {
            walk(&krate.path().join("src"), &mut files);
        }
    }
    let mut named = std::collections::BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for prefix in ["\"user.", "\"tenant.", "\"subscription.", "\"billing.run."] {
            for (at, _) in text.match_indices(prefix) {
                let lit: String = text[at + 1..].chars().take_while(|c| *c != '"').collect();
                if lit
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                {
                    named.insert(lit);
                }
            }
        }
    }
    assert!(named.len() >= 15, "{named:?}");
    for t in &named {
        assert!(
            event_types::TYPES.iter().any(|(known, _, _)| known == t),
            "{t} is published without a payload type in crates/event-types"
        );
    }
}
