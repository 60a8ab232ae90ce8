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
