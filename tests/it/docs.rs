//! The README's configuration table lists exactly the variables `ServiceConfig` reads.

use std::path::Path;

#[test]
fn readme_documents_every_config_variable() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md exists");
    for (var, default, _) in platform::config::ENV_VARS {
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
    assert_eq!(
        rows,
        platform::config::ENV_VARS.len(),
        "README has rows for unknown variables"
    );
}
