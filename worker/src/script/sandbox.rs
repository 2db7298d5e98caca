//! How one script run is kept away from the platform.
//!
//! [`SandboxMode::Namespaces`] (the process can create namespaces: root, or `CAP_SYS_ADMIN`): the
//! script runs in new PID, mount, network, IPC and UTS namespaces, chrooted into a root of its
//! own — `/usr` and `/etc` read-only, a few device nodes, a fresh `/proc` that shows only its own
//! processes, and a private `/tmp` (a size-limited tmpfs that disappears with the run). It runs
//! under a user id of its tenant's (never the worker's), with no capabilities and
//! `no_new_privs`, CPU-time, address-space, open-file, file-size and process-count limits (the
//! count is per tenant user id, across that tenant's runs). Its network namespace has no
//! interface unless the Tenant allows scripts the network. When the run ends or times out, the
//! PID namespace's first process dies and the kernel kills every process left in it — `setsid`
//! and double-fork escapees included.
//!
//! [`SandboxMode::Processes`] (no namespaces: an unprivileged container — the per-tenant runner
//! pod, where the pod is the boundary): a cleared environment, its own session, the same limits,
//! a private working directory removed afterwards, and at the end every process of its session
//! and every descendant still found is killed. What it cannot give is said in
//! `docs/architecture.md`: an escapee that left both its session and its parent survives, files
//! are hidden only by their permissions, and the network is whatever the pod's policy allows.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use chainwatch_core::monitor::ResolvedScript;
use chainwatch_crds::ScriptLanguage;

use super::ScriptLimits;

/// How runs are isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    Namespaces,
    Processes,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Namespaces => "namespaces",
            SandboxMode::Processes => "processes",
        }
    }
}

/// Who a run is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunFor {
    /// The tenant (its user id, its share of processes).
    pub tenant: String,
    /// Whether the tenant allows its scripts the network.
    pub network: bool,
    /// The namespace of the tenant's runner pod (in a cluster).
    pub runner_namespace: Option<String>,
}

impl RunFor {
    pub fn tenant(tenant: &str) -> Self {
        Self { tenant: tenant.into(), network: false, runner_namespace: None }
    }
}

/// The user id a tenant's scripts run as: a stable number from the tenant's name, in a range no
/// system account uses.
pub fn tenant_uid(tenant: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in tenant.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    200_000 + h % 100_000
}

/// Sets up a run's root inside the new namespaces (as root there), then drops everything and
/// starts the interpreter. `$@` is the interpreter and its arguments.
const PRELUDE: &str = r#"set -eu
r="$CW_ROOT"
ro() { mkdir -p "$r$1"; mount --bind "$1" "$r$1"; mount -o remount,bind,ro,nosuid,nodev "$r$1"; }
mount -t tmpfs -o "mode=0755,size=$CW_TMP_BYTES" chainwatch-script "$r"
mkdir -p "$r/proc" "$r/dev" "$r/tmp" "$r/usr" "$r/etc"
chmod 1777 "$r/tmp"
ro /usr
ro /etc
[ -z "$CW_LINKS" ] || (cd "$r" && ln -s $CW_LINKS .)
for x in $CW_BINDS; do ro "$x"; done
cd "$r/dev" && touch null zero random urandom && cd /
for n in null zero random urandom; do mount --bind "/dev/$n" "$r/dev/$n"; done
mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
exec /usr/sbin/chroot "$r" /usr/bin/setpriv --reuid="$CW_UID" --regid="$CW_UID" --clear-groups \
  --inh-caps=-all --bounding-set=-all --no-new-privs --pdeathsig KILL -- \
  /usr/bin/prlimit --nproc="$CW_NPROC" --cpu="$CW_CPU" --as="$CW_AS" --nofile="$CW_NOFILE" --fsize="$CW_FSIZE" -- \
  /usr/bin/env -i -C /tmp PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/tmp "$@"
"#;

fn interpreter(l: ScriptLanguage) -> (&'static str, &'static str) {
    match l {
        ScriptLanguage::Python => ("python3", "-c"),
        ScriptLanguage::JavaScript => ("node", "-e"),
        ScriptLanguage::Bash => ("bash", "-c"),
    }
}

/// The interpreter and its arguments.
fn argv(script: &ResolvedScript) -> Vec<String> {
    let (program, flag) = interpreter(script.language);
    let mut v = vec![program.to_string(), flag.to_string(), script.source.clone()];
    match script.language {
        ScriptLanguage::Bash => v.push("chainwatch-script".into()), // $0
        ScriptLanguage::JavaScript => v.push("--".into()),          // what follows is the script's
        ScriptLanguage::Python => {}
    }
    v.extend(script.arguments.iter().cloned());
    v
}

/// The top-level directories a run's root needs besides `/usr` and `/etc`: symbolic links into
/// `/usr` (a merged-`/usr` system: `bin -> usr/bin`), made in one go, and real directories,
/// mounted read-only.
fn top_level() -> (Vec<String>, Vec<PathBuf>) {
    static FOUND: OnceLock<(Vec<String>, Vec<PathBuf>)> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let (mut links, mut dirs) = (Vec::new(), Vec::new());
            for d in ["bin", "lib", "lib32", "lib64", "libx32", "sbin"] {
                let p = Path::new("/").join(d);
                match std::fs::read_link(&p) {
                    // `ln -s usr/bin .` names the link `bin`
                    Ok(t) if t.file_name().is_some_and(|n| n == d) && t.is_relative() => {
                        links.push(t.display().to_string())
                    }
                    Ok(_) | Err(_) if p.is_dir() => dirs.push(p),
                    _ => {}
                }
            }
            dirs.extend(interpreter_dirs());
            (links, dirs)
        })
        .clone()
}

/// Directories outside `/usr` and `/etc` the interpreters live in (made visible read-only).
fn interpreter_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for program in ["python3", "node", "bash"] {
        for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
            let p = Path::new(dir).join(program);
            if let Ok(real) = std::fs::canonicalize(&p) {
                if !real.starts_with("/usr") && !real.starts_with("/etc") {
                    // e.g. /opt/python/bin/python3 → /opt/python
                    if let Some(prefix) = real.parent().and_then(Path::parent) {
                        dirs.push(prefix.to_path_buf());
                    }
                }
                break;
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The isolation available to this process, found once: can it create the namespaces?
pub fn detect() -> SandboxMode {
    static MODE: OnceLock<SandboxMode> = OnceLock::new();
    *MODE.get_or_init(|| {
        let ok = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--mount", "--net", "--ipc", "--uts", "--", "/bin/true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && Path::new("/usr/sbin/chroot").exists()
            && Path::new("/usr/bin/setpriv").exists();
        let mode = if ok { SandboxMode::Namespaces } else { SandboxMode::Processes };
        match mode {
            SandboxMode::Namespaces => tracing::info!("scripts run in their own namespaces, under tenant user ids"),
            SandboxMode::Processes => tracing::warn!(
                "this process cannot create namespaces: scripts run with limits, a cleared environment and their own session only (see docs/architecture.md, Scripts)"
            ),
        }
        mode
    })
}

/// Builds the command of one run. `run_dir` is the run's own empty directory (the new root's
/// mount point, or the working directory in `Processes` mode).
pub fn command(
    mode: SandboxMode,
    script: &ResolvedScript,
    limits: &ScriptLimits,
    run_for: &RunFor,
    run_dir: &Path,
) -> tokio::process::Command {
    let argv = argv(script);
    match mode {
        SandboxMode::Namespaces => {
            let mut cmd = tokio::process::Command::new("unshare");
            cmd.args(["--pid", "--fork", "--kill-child", "--mount", "--ipc", "--uts"]);
            if !run_for.network {
                cmd.arg("--net");
            }
            let (links, dirs) = top_level();
            let binds: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            cmd.args(["--", "/bin/sh", "-c", PRELUDE, "chainwatch-sandbox"])
                .args(&argv)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("CW_ROOT", run_dir)
                .env("CW_BINDS", binds.join(" "))
                .env("CW_LINKS", links.join(" "))
                .env("CW_TMP_BYTES", limits.file_bytes.to_string())
                .env("CW_UID", tenant_uid(&run_for.tenant).to_string())
                .env("CW_NPROC", limits.processes.to_string())
                .env("CW_CPU", limits.cpu_seconds.to_string())
                .env("CW_AS", limits.memory_bytes.to_string())
                .env("CW_NOFILE", limits.open_files.to_string())
                .env("CW_FSIZE", limits.file_bytes.to_string())
                .current_dir("/");
            cmd
        }
        SandboxMode::Processes => {
            let mut cmd = tokio::process::Command::new("setsid");
            cmd.arg("prlimit")
                .arg(format!("--cpu={}", limits.cpu_seconds))
                .arg(format!("--as={}", limits.memory_bytes))
                .arg(format!("--nofile={}", limits.open_files))
                .arg(format!("--fsize={}", limits.file_bytes))
                .arg(format!("--nproc={}", limits.processes))
                .arg("--")
                .args(&argv)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("LANG", "C.UTF-8")
                .env("HOME", run_dir)
                .env("TMPDIR", run_dir)
                .current_dir(run_dir);
            cmd
        }
    }
}

/// `(pid, ppid, session)` of every process.
fn processes() -> Vec<(u32, u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // the command may contain spaces and parentheses: fields follow the last ')'
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        Some((pid, f.get(1)?.parse().ok()?, f.get(3)?.parse().ok()?))
    })
    .collect()
}

/// Kills what a `Processes`-mode run left: its session and every descendant of `leader` still
/// found (best effort: see the module documentation).
pub fn kill_leftovers(leader: u32) {
    let procs = processes();
    let mut doomed: Vec<u32> =
        procs.iter().filter(|(_, _, sid)| *sid == leader).map(|(p, _, _)| *p).collect();
    let mut frontier = vec![leader];
    while let Some(parent) = frontier.pop() {
        for (p, pp, _) in &procs {
            if *pp == parent && !doomed.contains(p) {
                doomed.push(*p);
                frontier.push(*p);
            }
        }
    }
    doomed.push(leader);
    for pid in doomed {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_get_distinct_stable_user_ids_out_of_the_system_range() {
        let (a, b) = (tenant_uid("acme"), tenant_uid("globex"));
        assert_ne!(a, b);
        assert_eq!(a, tenant_uid("acme"));
        assert!((200_000..300_000).contains(&a) && (200_000..300_000).contains(&b));
    }
}
