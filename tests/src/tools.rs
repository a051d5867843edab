//! Optional outside programs (Debian or PyPI packages) that a test uses
//! when they are installed.

use std::process::{Command, Stdio};

/// Whether `program` runs and succeeds with the arguments `probe`. If it
/// does not, says so (with `install`, how to get it) and returns `false`,
/// unless the environment variable `require` is set (`.ci/run` sets it
/// after installing the package): then it panics, so a missing program
/// fails the test instead of skipping it.
#[track_caller]
pub fn runs(program: &str, probe: &[&str], install: &str, require: &str) -> bool {
    let runs = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        let command = format!("{program} {}", probe.join(" "));
        assert!(
            std::env::var_os(require).is_none(),
            "`{command}` failed, and {require} is set: {install}"
        );
        eprintln!("`{command}` failed ({install}): skipped");
    }
    runs
}

/// Whether `python3` can import `modules` (one, or several separated by
/// commas), from the PyPI `package`; see [`runs`] for `require`.
#[track_caller]
pub fn has_python_module(modules: &str, package: &str, require: &str) -> bool {
    runs(
        "python3",
        &["-c", &format!("import {modules}")],
        &format!("pip install {package}"),
        require,
    )
}
