//! Names the commit hiku is built from (`HIKU_COMMIT` for the code): the
//! one `HIKU_COMMIT` says when set (a build from a source tarball, say),
//! else git's HEAD, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=HIKU_COMMIT");
    let given = std::env::var("HIKU_COMMIT").ok().filter(|c| !c.trim().is_empty());
    let commit = given.or_else(|| git(&["rev-parse", "--short=7", "HEAD"])).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HIKU_COMMIT={commit}");
    // Built again when HEAD moves: HEAD itself, the branch it names, and
    // the packed refs (only files that exist: a missing one would rebuild
    // every time).
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
