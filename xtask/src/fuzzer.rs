//! schemathesis, the OpenAPI fuzzer the e2e suite drives the gateway with
//! (`tests/it/fuzz.rs`): installed from PyPI into a virtualenv under the target directory,
//! pinned, and reused while its version is right.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Checks, defaults and report formats move between releases: one version, on purpose.
const VERSION: &str = "4.32.5";

/// The `st` binary, installed if missing or of another version.
pub fn ensure() -> Result<PathBuf> {
    let venv = crate::stack::target_dir()?.join("xtask").join("venv");
    let st = venv.join("bin").join("st");
    let installed = Command::new(&st)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VERSION));
    if installed {
        return Ok(st);
    }
    println!(
        "xtask: installing schemathesis {VERSION} into {}",
        venv.display()
    );
    let made = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .context("running python3 (Debian: apt-get install python3 python3-venv)")?;
    if !made.success() {
        bail!("python3 -m venv failed (Debian: apt-get install python3-venv)");
    }
    let pip = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={VERSION}"))
        .status()
        .context("running pip")?;
    if !pip.success() {
        bail!("pip install schemathesis=={VERSION} failed");
    }
    Ok(st)
}
