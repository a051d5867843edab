//! Checks OpenAPI documents with `openapi-spec-validator` (PyPI).

use std::process::Command;

/// Runs `openapi-spec-validator` on `document` when it is installed, and
/// panics with its report if it rejects the document; says so and returns
/// `false` if it is not installed. With
/// `PISTACHIO_REQUIRE_OPENAPI_VALIDATOR=1` (set by `.ci/run`, which
/// installs it) a missing validator panics instead.
pub fn validate(document: &[u8]) -> bool {
    if !crate::tools::has_python_module(
        "openapi_spec_validator",
        "openapi-spec-validator",
        "PISTACHIO_REQUIRE_OPENAPI_VALIDATOR",
    ) {
        return false;
    }
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "pistachio-openapi-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::write(&path, document).expect("writing the document");
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("running openapi-spec-validator");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document:\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(document)
    );
    true
}
