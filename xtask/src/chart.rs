//! `cargo xtask check-chart`: the Helm chart checked by real Helm. Runs
//! `xtask/check_chart.py` in the interop virtualenv, where PyPI's
//! `helm-python-sdk` (Helm's Go SDK as a shared library) renders and lints
//! the chart and `kubernetes-validate` checks every rendered object against
//! the Kubernetes schemas; the chart's RBAC is compared with the list kept
//! next to the control plane's code.

use std::process::Command;

use anyhow::{Result, bail};

use crate::suite::interop_python;
use crate::{root, run};

/// The chart, and the API calls its RBAC must grant exactly.
const CHART: &str = "deploy/helm/ambient-control-plane";
const RBAC_LIST: &str = "crates/control-plane/rbac.yaml";
/// The chart's oldest supported Kubernetes (Chart.yaml `kubeVersion`) and
/// the one the control plane's `k8s-openapi` targets.
const KUBE_VERSIONS: [&str; 2] = ["1.27.0", "1.33.0"];

pub fn check_chart(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("check-chart takes no arguments");
    }
    let python = interop_python()?;
    let root = root();
    run(Command::new(python)
        .current_dir(&root)
        .arg(root.join("xtask/check_chart.py"))
        .args([CHART, RBAC_LIST])
        .args(KUBE_VERSIONS))
}
