//! Build facts for `jobwarden --version` and `jobwarden_build_info`: the git revision and the
//! rustc version that compiled the binary.
//!
//! The revision is `JOBWARDEN_REVISION` when the build environment sets it (a package built
//! from a source tarball), else `git rev-parse --short=12 HEAD`, else `unknown` (no git, or
//! not a checkout: git's complaint stays in its captured stderr).

use std::path::Path;
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| out.status.success() && !t.is_empty())
}

fn main() {
    let given = std::env::var("JOBWARDEN_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty());
    let revision = given
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=JOBWARDEN_REVISION={revision}");
    println!("cargo:rustc-env=JOBWARDEN_RUSTC={rustc_version}");
    // Run again when HEAD moves: HEAD itself (a checkout), the branch refs (a commit) and
    // packed-refs, wherever git keeps them (a worktree's HEAD is not under `.git/`). Only
    // paths that exist are named: a missing one would rerun this script on every build.
    println!("cargo:rerun-if-changed=build.rs");
    for name in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(path) = output("git", &["rev-parse", "--git-path", name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!("cargo:rerun-if-env-changed=JOBWARDEN_REVISION");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
