//! The independent Python clients of `tests/it/py/`, run with the project's virtualenv.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `tests/it/py/<script>` with `args`; its standard output as JSON. Panics with the
/// script's complaint when it fails.
pub fn run(script: &str, args: &[&Path]) -> serde_json::Value {
    let python = std::env::var("PYTOOLS_PYTHON").expect(
        "PYTOOLS_PYTHON names the project's Python tools; `cargo xtask test` installs them and sets it",
    );
    let out = Command::new(python)
        .arg(path(script))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn path(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("it/py")
        .join(script)
}
