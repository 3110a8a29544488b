//! What the subcommands' command lines share: where the binaries are when
//! not given, the baseline's label, durations in seconds, and the exit
//! status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// A binary installed beside this one (cargo puts every binary of a
/// workspace in the same target directory).
pub fn sibling(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    me.parent().unwrap_or(Path::new(".")).join(name)
}

/// The baseline's label: its file name, unless that would read as hiku.
pub fn baseline_label(path: &Path) -> String {
    match path.file_name().and_then(|n| n.to_str()) {
        Some(name) if !name.is_empty() && name != "hiku" => name.to_string(),
        _ => "baseline".to_string(),
    }
}

/// `value` seconds, or what is wrong with it as `what`.
pub fn seconds(value: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{what} must be a number of seconds, not {value}"))
}

/// A usage error, on stderr: exit status 2.
pub fn usage_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("hiku-perf: {e}");
    ExitCode::from(2)
}

/// The exit status for how a command ended, with the error on stderr.
pub fn exit(outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hiku-perf: {e}");
            ExitCode::FAILURE
        }
    }
}
