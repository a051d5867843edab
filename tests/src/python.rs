//! Optional checks by Python programs (PyPI packages) that a test runs
//! when they are installed.

use std::process::{Command, Stdio};

/// Whether `python3` can import `module`. If it cannot, says so (naming the
/// PyPI `package` to install) and returns `false`, unless the environment
/// variable `require` is set (`.ci/run` sets it after installing the
/// package): then it panics, so a missing checker fails the test instead of
/// skipping it.
#[track_caller]
pub fn has_module(module: &str, package: &str, require: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os(require).is_none(),
            "{package} (PyPI) is required ({require}) but not installed"
        );
        eprintln!("{package} not installed (pip install {package}): skipped");
    }
    found
}
