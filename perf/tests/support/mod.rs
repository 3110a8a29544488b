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

/// Runs `hiku-perf ARGS --hiku <hiku> --upstream <hiku-upstream> --json
/// <file>`, which must succeed; the report it wrote, its stdout and stderr.
#[allow(dead_code)] // Not every test uses it.
pub fn run_perf<T: serde::de::DeserializeOwned>(args: &[&str], name: &str) -> (T, String, String) {
    let dir = std::env::temp_dir().join(format!("hiku-perf-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hiku-perf"))
        .args(args)
        .arg("--hiku")
        .arg(hiku_binary())
        .arg("--upstream")
        .arg(env!("CARGO_BIN_EXE_hiku-upstream"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{}\n{stdout}\n{stderr}", output.status);
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (report, stdout, stderr)
}
