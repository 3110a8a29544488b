//! What the end-to-end tests need: the hiku binary to measure.

use std::path::PathBuf;

/// hiku's binary: `HIKU_BIN`, else `hiku` in the target directory this test
/// was built into (`target/<profile>/deps/<test>` -> `target/<profile>/hiku`).
pub fn hiku_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HIKU_BIN") {
        return PathBuf::from(path);
    }
    let test = std::env::current_exe().expect("the test's own path");
    let profile_dir = test.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let hiku = profile_dir.join("hiku");
    assert!(
        hiku.is_file(),
        "no hiku binary at {}: build it first (`cargo build -p hiku`, or run `cargo test --workspace`), \
         or point HIKU_BIN at one",
        hiku.display()
    );
    hiku
}
