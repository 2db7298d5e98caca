//! Runs trigger-condition scripts and script triggers — tenant code, outside the platform's trust
//! domain.
//!
//! * Interpreters as upstream: `python3 -c`, `node -e`; Bash scripts run under `bash -c` (upstream
//!   used `sh`, which rejects the bash-only syntax of its own examples).
//! * Input as upstream: one JSON document on stdin, `{"monitor_match": …, "args": […]}`, then EOF;
//!   the arguments are also passed on the command line.
//! * Where: in a cluster, in the tenant's own runner pod ([`remote`]; the worker never runs tenant
//!   code next to its ServiceAccount token); on one machine (`chainwatch dev`, tests) and inside
//!   that runner pod, in a [`sandbox`] — its own namespaces, user id, root and limits where the
//!   process may create namespaces, limits and its own session where it may not.
//! * Each tenant runs at most [`ScriptLimits::per_tenant`] scripts at a time, so one tenant's slow
//!   or looping scripts wait on each other, not on other tenants'.
//! * Output: stdout and stderr are captured up to a limit.

pub mod remote;
pub mod sandbox;
pub mod server;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chainwatch_core::monitor::ResolvedScript;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

pub use sandbox::{RunFor, SandboxMode};

/// Resource limits of script runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptLimits {
    pub cpu_seconds: u64,
    pub memory_bytes: u64,
    pub open_files: u64,
    /// Largest file a script may write, and the size of its private `/tmp`.
    pub file_bytes: u64,
    /// Processes (and threads) at once, across all runs of one tenant.
    pub processes: u64,
    pub output_bytes: usize,
    /// Runs of one tenant at once.
    pub per_tenant: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            cpu_seconds: 10,
            memory_bytes: 1 << 30,
            open_files: 64,
            file_bytes: 16 << 20,
            processes: 64,
            output_bytes: 64 << 10,
            per_tenant: 4,
        }
    }
}

/// What a script did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptOutput {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Why a script run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ScriptError {
    #[error("could not start {interpreter}: {message}")]
    Spawn { interpreter: String, message: String },
    #[error("killed after the {0:?} timeout")]
    Timeout(Duration),
    #[error("exited with {code:?}: {stderr}")]
    Failed { code: Option<i32>, stderr: String },
    #[error("printed nothing; the last line must be true or false")]
    NoOutput,
    #[error("the last line printed is `{0}`, not true or false")]
    NotBoolean(String),
    #[error("the tenant's script runner is unavailable: {0}")]
    Unavailable(String),
}

impl ScriptError {
    /// Condition reason (on the Monitor or Trigger whose script it was).
    pub fn reason(&self) -> &'static str {
        match self {
            ScriptError::Spawn { .. } => "ScriptNotStarted",
            ScriptError::Timeout(_) => "ScriptTimedOut",
            ScriptError::Failed { .. } => "ScriptFailed",
            ScriptError::NoOutput | ScriptError::NotBoolean(_) => "ScriptOutputInvalid",
            ScriptError::Unavailable(_) => "ScriptRunnerUnavailable",
        }
    }
}

#[derive(Clone, Debug)]
enum Backend {
    /// Sandboxed processes of this one.
    Local(SandboxMode),
    /// The tenant's runner pod.
    Remote(remote::RemoteRunner),
}

/// Runs scripts; cheap to clone (clones share the per-tenant limits).
#[derive(Clone, Debug)]
pub struct ScriptRunner {
    backend: Backend,
    pub limits: ScriptLimits,
    slots: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Default for ScriptRunner {
    fn default() -> Self {
        Self::local(ScriptLimits::default())
    }
}

async fn read_limited<R: tokio::io::AsyncRead + Unpin>(mut r: R, limit: usize) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if buf.len() < limit {
                    let take = n.min(limit - buf.len());
                    buf.extend_from_slice(&chunk[..take]);
                }
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A run's own directory, removed (with what the script left) when dropped.
struct RunDir(std::path::PathBuf);

impl RunDir {
    fn new() -> std::io::Result<Self> {
        let base = std::env::temp_dir().join("chainwatch-scripts");
        std::fs::create_dir_all(&base)?;
        let dir = base.join(
            chainwatch_platform::codec::now_ms().to_string() + "-" + &rand::random::<u64>().to_string(),
        );
        std::fs::create_dir(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ScriptRunner {
    /// Runs scripts here, in the best sandbox this process can make.
    pub fn local(limits: ScriptLimits) -> Self {
        Self::local_with(sandbox::detect(), limits)
    }

    /// Runs scripts here in a given sandbox mode (tests of the fallback).
    pub fn local_with(mode: SandboxMode, limits: ScriptLimits) -> Self {
        Self { backend: Backend::Local(mode), limits, slots: Arc::default() }
    }

    /// Runs scripts in the tenants' runner pods (`url` has `{namespace}` for the runner's).
    pub fn remote(url: &str, limits: ScriptLimits) -> Self {
        Self { backend: Backend::Remote(remote::RemoteRunner::new(url)), limits, slots: Arc::default() }
    }

    /// Where scripts run: `namespaces`, `processes` or `remote`.
    pub fn mode(&self) -> &'static str {
        match &self.backend {
            Backend::Local(m) => m.as_str(),
            Backend::Remote(_) => "remote",
        }
    }

    fn slots(&self, tenant: &str) -> Arc<Semaphore> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_tenant.max(1))))
            .clone()
    }

    /// Runs `script` with `input` on stdin, for `run_for`'s tenant.
    pub async fn run(
        &self,
        script: &ResolvedScript,
        input: &str,
        run_for: &RunFor,
    ) -> Result<ScriptOutput, ScriptError> {
        let _slot = self.slots(&run_for.tenant).acquire_owned().await.expect("never closed");
        match &self.backend {
            Backend::Local(mode) => self.run_here(*mode, script, input, run_for).await,
            Backend::Remote(r) => r.run(script, input, run_for).await,
        }
    }

    async fn run_here(
        &self,
        mode: SandboxMode,
        script: &ResolvedScript,
        input: &str,
        run_for: &RunFor,
    ) -> Result<ScriptOutput, ScriptError> {
        let program = || format!("{:?}", script.language);
        let spawn_err =
            |e: std::io::Error| ScriptError::Spawn { interpreter: program(), message: e.to_string() };
        let dir = RunDir::new().map_err(spawn_err)?;
        let mut cmd = sandbox::command(mode, script, &self.limits, run_for, &dir.0);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("piped");
        let input = input.as_bytes().to_vec();
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
        let limit = self.limits.output_bytes;
        let stdout = tokio::spawn(read_limited(child.stdout.take().expect("piped"), limit));
        let stderr = tokio::spawn(read_limited(child.stderr.take().expect("piped"), limit));
        let timeout = Duration::from_millis(script.timeout_ms.max(1));
        let waited = tokio::time::timeout(timeout, child.wait()).await;
        // in a PID namespace, everything died with its first process; otherwise, what is left
        if mode == SandboxMode::Processes
            && let Some(pid) = pid
        {
            sandbox::kill_leftovers(pid);
        }
        let status = match waited {
            Ok(s) => s.map_err(spawn_err)?,
            Err(_) => {
                let _ = child.kill().await;
                writer.abort();
                return Err(ScriptError::Timeout(timeout));
            }
        };
        let _ = writer.await;
        let stdout = stdout.await.unwrap_or_default();
        let stderr = stderr.await.unwrap_or_default();
        Ok(ScriptOutput { exit_code: status.code(), stdout, stderr })
    }

    /// A trigger condition: `Ok(true)` drops the match (the last line of stdout, trimmed and
    /// lower-cased, is `true`); a non-zero exit, no output or another last line is an error, and
    /// errors keep the match, as upstream.
    pub async fn condition(
        &self,
        script: &ResolvedScript,
        input: &str,
        run_for: &RunFor,
    ) -> Result<bool, ScriptError> {
        let out = self.run(script, input, run_for).await?;
        if out.exit_code != Some(0) {
            return Err(ScriptError::Failed {
                code: out.exit_code,
                stderr: out.stderr.chars().take(300).collect(),
            });
        }
        let last = out.stdout.lines().rev().find(|l| !l.trim().is_empty()).ok_or(ScriptError::NoOutput)?;
        match last.trim().to_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(ScriptError::NotBoolean(other.chars().take(80).collect())),
        }
    }
}

/// The stdin document of a script: `{"monitor_match": …, "args": […] | null}`.
pub fn script_input(monitor_match: &serde_json::Value, args: &[String]) -> String {
    let args = if args.is_empty() { serde_json::Value::Null } else { serde_json::json!(args) };
    serde_json::json!({"monitor_match": monitor_match, "args": args}).to_string()
}

#[cfg(test)]
mod tests;
