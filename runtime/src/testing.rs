//! Support for tests and benchmarks of the runtime and the agent (not used at run time).

use std::path::{Path, PathBuf};

/// The project's test image `flotilla.local/busybox:1`: `$FLOTILLA_TEST_IMAGE` when set (the
/// test command builds it once), else built by `scripts/test-image.sh` into `dir`.
pub fn test_image(dir: &Path) -> PathBuf {
    if let Ok(p) = std::env::var("FLOTILLA_TEST_IMAGE") {
        return PathBuf::from(p);
    }
    let out = dir.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image.sh");
    let st = std::process::Command::new(script)
        .arg(&out)
        .output()
        .expect("running scripts/test-image.sh");
    assert!(
        st.status.success(),
        "test-image.sh failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}
