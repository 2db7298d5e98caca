//! Runs trigger-condition scripts and script triggers.
//!
//! * Interpreters as upstream: `python3 -c`, `node -e`; Bash scripts run under `bash -c` (upstream
//!   used `sh`, which rejects the bash-only syntax of its own examples).
//! * Input as upstream: one JSON document on stdin, `{"monitor_match": …, "args": […]}`, then EOF;
//!   the arguments are also passed on the command line.
//! * Isolation: an empty environment (no secrets of the worker leak into scripts), CPU time,
//!   address space, open files and file size limited with `prlimit`, its own session, and on timeout
//!   the whole process group is killed (upstream let timed-out scripts run on).
//! * Output: stdout and stderr are captured up to a limit.

use std::process::Stdio;
use std::time::Duration;

use chainwatch_core::monitor::ResolvedScript;
use chainwatch_crds::ScriptLanguage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Resource limits of one script run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptLimits {
    pub cpu_seconds: u64,
    pub memory_bytes: u64,
    pub open_files: u64,
    pub file_bytes: u64,
    pub output_bytes: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            cpu_seconds: 10,
            memory_bytes: 1 << 30,
            open_files: 64,
            file_bytes: 16 << 20,
            output_bytes: 64 << 10,
        }
    }
}

/// What a script did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptOutput {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Why a script run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

/// Runs scripts.
#[derive(Clone, Debug, Default)]
pub struct ScriptRunner {
    pub limits: ScriptLimits,
}

fn interpreter(l: ScriptLanguage) -> (&'static str, &'static str) {
    match l {
        ScriptLanguage::Python => ("python3", "-c"),
        ScriptLanguage::JavaScript => ("node", "-e"),
        ScriptLanguage::Bash => ("bash", "-c"),
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

impl ScriptRunner {
    /// Runs `script` with `input` on stdin.
    pub async fn run(&self, script: &ResolvedScript, input: &str) -> Result<ScriptOutput, ScriptError> {
        let (program, flag) = interpreter(script.language);
        let l = &self.limits;
        let mut cmd = tokio::process::Command::new("setsid");
        cmd.arg("prlimit")
            .arg(format!("--cpu={}", l.cpu_seconds))
            .arg(format!("--as={}", l.memory_bytes))
            .arg(format!("--nofile={}", l.open_files))
            .arg(format!("--fsize={}", l.file_bytes))
            .arg("--")
            .arg(program)
            .arg(flag)
            .arg(&script.source);
        match script.language {
            ScriptLanguage::Bash => {
                cmd.arg("chainwatch-script"); // $0
            }
            ScriptLanguage::JavaScript => {
                cmd.arg("--"); // what follows is the script's, not node's
            }
            ScriptLanguage::Python => {}
        }
        cmd.args(&script.arguments)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("HOME", std::env::temp_dir())
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| ScriptError::Spawn { interpreter: program.into(), message: e.to_string() })?;
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("piped");
        let input = input.as_bytes().to_vec();
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
        let stdout = tokio::spawn(read_limited(child.stdout.take().expect("piped"), l.output_bytes));
        let stderr = tokio::spawn(read_limited(child.stderr.take().expect("piped"), l.output_bytes));
        let timeout = Duration::from_millis(script.timeout_ms.max(1));
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(s) => {
                s.map_err(|e| ScriptError::Spawn { interpreter: program.into(), message: e.to_string() })?
            }
            Err(_) => {
                if let Some(pid) = pid {
                    // the script leads its own process group: kill the group, children included
                    let _ = tokio::process::Command::new("kill")
                        .args(["-KILL", "--", &format!("-{pid}")])
                        .status()
                        .await;
                }
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
    pub async fn condition(&self, script: &ResolvedScript, input: &str) -> Result<bool, ScriptError> {
        let out = self.run(script, input).await?;
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
mod tests {
    use super::*;

    fn script(language: ScriptLanguage, source: &str, timeout_ms: u64) -> ResolvedScript {
        ResolvedScript { language, source: source.into(), arguments: vec!["--verbose".into()], timeout_ms }
    }

    #[tokio::test]
    async fn conditions_read_the_last_line_and_get_the_match_on_stdin() {
        let r = ScriptRunner::default();
        let input = script_input(&serde_json::json!({"EVM": {"block": 10}}), &["--verbose".into()]);
        let py = script(
            ScriptLanguage::Python,
            "import json,sys\nd=json.load(sys.stdin)\nprint('log line')\nprint('TRUE' if d['args']==['--verbose'] and sys.argv[1]=='--verbose' else 'false')",
            5000,
        );
        assert_eq!(r.condition(&py, &input).await, Ok(true));
        let bash = script(
            ScriptLanguage::Bash,
            "read -r line; grep -q '\"block\":10' <<< \"$line\" && echo false || echo true",
            5000,
        );
        assert_eq!(r.condition(&bash, &input).await, Ok(false), "bash-only syntax (<<<) works");
        let js = script(
            ScriptLanguage::JavaScript,
            "let s='';process.stdin.on('data',c=>s+=c).on('end',()=>console.log(JSON.parse(s).monitor_match.EVM.block===10))",
            5000,
        );
        assert_eq!(r.condition(&js, &input).await, Ok(true));
        assert!(matches!(
            r.condition(&script(ScriptLanguage::Bash, "echo maybe", 5000), "{}").await,
            Err(ScriptError::NotBoolean(_))
        ));
        assert!(matches!(
            r.condition(&script(ScriptLanguage::Bash, "exit 3", 5000), "{}").await,
            Err(ScriptError::Failed { code: Some(3), .. })
        ));
        assert!(matches!(
            r.condition(&script(ScriptLanguage::Bash, "true", 5000), "{}").await,
            Err(ScriptError::NoOutput)
        ));
    }

    #[tokio::test]
    async fn a_looping_script_and_its_children_are_killed_at_the_timeout() {
        let r = ScriptRunner::default();
        let marker = std::env::temp_dir().join(format!("cw-script-{}", std::process::id()));
        let src = format!("(sleep 3; touch {}) & while true; do :; done", marker.display());
        let started = std::time::Instant::now();
        let err = r.run(&script(ScriptLanguage::Bash, &src, 300), "").await.unwrap_err();
        assert_eq!(err, ScriptError::Timeout(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!marker.exists(), "the background child was killed with its group");
    }

    #[tokio::test]
    async fn scripts_see_no_secrets_in_their_environment() {
        // under `just test` this process has KUBECONFIG, KAFKA_BOOTSTRAP, … set
        let r = ScriptRunner::default();
        let out = r.run(&script(ScriptLanguage::Bash, "env | sort", 5000), "").await.unwrap();
        let names: Vec<&str> = out.stdout.lines().filter_map(|l| l.split('=').next()).collect();
        for leaked in ["KUBECONFIG", "KAFKA_BOOTSTRAP", "CARGO_HOME", "RUST_LOG"] {
            assert!(!names.contains(&leaked), "{leaked} leaked into the script environment: {names:?}");
        }
        assert!(
            names.iter().all(|n| ["PATH", "LANG", "HOME", "PWD", "SHLVL", "_", "OLDPWD"].contains(n)),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn memory_is_limited() {
        let r = ScriptRunner { limits: ScriptLimits { memory_bytes: 200 << 20, ..Default::default() } };
        let out = r
            .run(
                &script(
                    ScriptLanguage::Python,
                    "x = bytearray(500 * 1024 * 1024)\nprint('allocated')",
                    10_000,
                ),
                "",
            )
            .await
            .unwrap();
        assert_ne!(out.exit_code, Some(0), "allocating 500 MiB under a 200 MiB limit must fail: {out:?}");
        assert!(out.stderr.contains("MemoryError"), "{}", out.stderr);
    }
}
