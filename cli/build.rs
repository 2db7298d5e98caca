//! Stamps the commit into `chainwatch --version`: `CHAINWATCH_COMMIT` when the build sets it (an
//! image build without `.git`), else `git rev-parse`, else "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=CHAINWATCH_COMMIT");
    let commit = std::env::var("CHAINWATCH_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        // rebuilt when HEAD or the branch it points at moves
        if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
            println!("cargo:rerun-if-changed={dir}/HEAD");
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                println!("cargo:rerun-if-changed={dir}/{branch}");
            }
            println!("cargo:rerun-if-changed={dir}/packed-refs");
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!("cargo:rustc-env=CHAINWATCH_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
