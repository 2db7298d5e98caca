//! Scripts as tenant code: what they get (upstream's input and verdicts), and what a hostile one
//! tries and cannot do. The hostile cases run in the sandbox this process can make: as root (CI,
//! this machine) that is [`SandboxMode::Namespaces`], and the tests insist on it.

use std::time::{Duration, Instant};

use chainwatch_crds::ScriptLanguage;

use super::*;

fn acme() -> RunFor {
    RunFor::tenant("acme")
}

fn script(language: ScriptLanguage, source: &str, timeout_ms: u64) -> ResolvedScript {
    ResolvedScript { language, source: source.into(), arguments: vec!["--verbose".into()], timeout_ms }
}

fn bash(source: &str, timeout_ms: u64) -> ResolvedScript {
    script(ScriptLanguage::Bash, source, timeout_ms)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The runner the hostile tests use: namespaces wherever the process may create them.
fn sandboxed() -> ScriptRunner {
    let r = ScriptRunner::default();
    if is_root() {
        assert_eq!(r.mode(), "namespaces", "as root, scripts must get their own namespaces");
    }
    r
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand::random::<u32>())
}

#[tokio::test]
async fn conditions_read_the_last_line_and_get_the_match_on_stdin() {
    let r = sandboxed();
    let input = script_input(&serde_json::json!({"EVM": {"block": 10}}), &["--verbose".into()]);
    let py = script(
        ScriptLanguage::Python,
        "import json,sys\nd=json.load(sys.stdin)\nprint('log line')\nprint('TRUE' if d['args']==['--verbose'] and sys.argv[1]=='--verbose' else 'false')",
        5000,
    );
    assert_eq!(r.condition(&py, &input, &acme()).await, Ok(true));
    let sh = bash("read -r line; grep -q '\"block\":10' <<< \"$line\" && echo false || echo true", 5000);
    assert_eq!(r.condition(&sh, &input, &acme()).await, Ok(false), "bash-only syntax (<<<) works");
    let js = script(
        ScriptLanguage::JavaScript,
        "let s='';process.stdin.on('data',c=>s+=c).on('end',()=>console.log(JSON.parse(s).monitor_match.EVM.block===10))",
        5000,
    );
    assert_eq!(r.condition(&js, &input, &acme()).await, Ok(true));
    assert!(matches!(
        r.condition(&bash("echo maybe", 5000), "{}", &acme()).await,
        Err(ScriptError::NotBoolean(_))
    ));
    assert!(matches!(
        r.condition(&bash("exit 3", 5000), "{}", &acme()).await,
        Err(ScriptError::Failed { code: Some(3), .. })
    ));
    assert!(matches!(r.condition(&bash("true", 5000), "{}", &acme()).await, Err(ScriptError::NoOutput)));
}

#[tokio::test]
async fn a_script_sees_nothing_of_the_workers_environment() {
    // under nextest this process has CARGO_*, NEXTEST_*, KUBECONFIG, KAFKA_BOOTSTRAP, …
    let ours: Vec<String> =
        std::env::vars().map(|(_, v)| v).filter(|v| v.len() >= 12 && !v.starts_with("/usr")).collect();
    assert!(!ours.is_empty());
    let out = sandboxed()
        .run(
            &bash("env; cat /proc/$PPID/environ; for p in /proc/[0-9]*; do cat $p/environ; done; echo; echo ppid=$PPID", 5000),
            "",
            &acme(),
        )
        .await
        .unwrap();
    for v in &ours {
        assert!(!out.stdout.contains(v.as_str()), "the worker's environment leaked: {v}\n{}", out.stdout);
    }
    let names: Vec<&str> = out.stdout.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    assert!(
        names.iter().all(|n| ["PATH", "LANG", "HOME", "PWD", "SHLVL", "_", "OLDPWD", "ppid"].contains(n)),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_script_cannot_read_the_workers_files() {
    let dir = std::path::Path::new("/var/tmp");
    let private = dir.join(unique("cw-worker-key"));
    std::fs::write(&private, "worker-private-key-material").unwrap();
    let mut paths = vec![private.display().to_string()];
    if let Ok(k) = std::env::var("KUBECONFIG") {
        paths.push(k);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let src = paths.iter().map(|p| format!("cat '{p}'; ls -la \"$(dirname '{p}')\";")).collect::<String>();
    let out = sandboxed().run(&bash(&src, 5000), "", &acme()).await.unwrap();
    assert!(!out.stdout.contains("worker-private-key-material"), "{}", out.stdout);
    assert!(!out.stdout.contains("client-key-data") && !out.stdout.contains("BEGIN"), "{}", out.stdout);
    let _ = std::fs::remove_file(&private);
}

#[tokio::test]
async fn a_script_has_no_network_unless_the_tenant_allows_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let src = format!("(exec 3<>/dev/tcp/127.0.0.1/{port}) && echo connected || echo refused");
    let out = sandboxed().run(&bash(&src, 5000), "", &acme()).await.unwrap();
    assert!(out.stdout.contains("refused") && !out.stdout.contains("connected"), "{out:?}");
    assert!(listener.accept().is_err(), "the loopback port received a connection");
    // allowed: the same script connects
    let allowed = RunFor { network: true, ..acme() };
    let out = sandboxed().run(&bash(&src, 5000), "", &allowed).await.unwrap();
    assert!(out.stdout.contains("connected"), "{out:?}");
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_process_limit_and_spares_other_tenants() {
    let limits = ScriptLimits { processes: 32, ..ScriptLimits::default() };
    let r = ScriptRunner::local(limits);
    let bomb = script(
        ScriptLanguage::Python,
        "import os,time\nn=0\nfor i in range(300):\n    try:\n        pid=os.fork()\n    except OSError:\n        break\n    if pid==0:\n        time.sleep(3)\n        os._exit(0)\n    n+=1\nprint(n)\n",
        8000,
    );
    let other = bash("echo fine", 5000);
    let bomber = RunFor::tenant("bomber");
    let (bombed, spared) = tokio::join!(r.run(&bomb, "", &bomber), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        r.run(&other, "", &acme()).await
    });
    let started: u64 = bombed.unwrap().stdout.trim().parse().unwrap();
    assert!(started < 32, "{started} processes started under a limit of 32");
    assert_eq!(spared.unwrap().stdout.trim(), "fine", "another tenant's script still runs");
}

#[tokio::test]
async fn a_script_writes_only_to_its_own_temporary_directory() {
    let outside = std::path::Path::new("/var/tmp").join(unique("cw-escape"));
    let src = format!(
        "echo x > '{}' 2>/dev/null; echo x > /etc/cw-escape 2>/dev/null; echo x > /usr/cw-escape 2>/dev/null; echo kept > /tmp/mine && cat /tmp/mine; pwd",
        outside.display()
    );
    let r = sandboxed();
    let out = r.run(&bash(&src, 5000), "", &acme()).await.unwrap();
    assert!(out.stdout.starts_with("kept"), "its own /tmp is writable: {out:?}");
    assert!(
        !outside.exists()
            && !std::path::Path::new("/etc/cw-escape").exists()
            && !std::path::Path::new("/usr/cw-escape").exists()
    );
    // and private: the next run does not see it
    let next = r.run(&bash("cat /tmp/mine 2>/dev/null || echo gone", 5000), "", &acme()).await.unwrap();
    assert_eq!(next.stdout.trim(), "gone");
}

#[tokio::test]
async fn a_timed_out_script_dies_with_every_process_it_started() {
    let marker = format!("{}.{}", 40 + rand::random::<u8>() % 50, rand::random::<u32>());
    // a background child, a setsid escapee and a double fork, then a busy loop
    let src = format!(
        "sleep {marker} & setsid sleep {marker} & (setsid bash -c 'sleep {marker}' &) ; while true; do :; done"
    );
    let started = Instant::now();
    let err = sandboxed().run(&bash(&src, 500), "", &acme()).await.unwrap_err();
    assert_eq!(err, ScriptError::Timeout(Duration::from_millis(500)));
    assert!(started.elapsed() < Duration::from_secs(3));
    let alive = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|c| String::from_utf8_lossy(c).contains(&marker))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while alive() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alive(), 0, "processes of the script outlived its timeout");
}

#[tokio::test]
async fn memory_is_limited() {
    let r = ScriptRunner::local(ScriptLimits { memory_bytes: 200 << 20, ..Default::default() });
    let out = r
        .run(
            &script(ScriptLanguage::Python, "x = bytearray(500 * 1024 * 1024)\nprint('allocated')", 10_000),
            "",
            &acme(),
        )
        .await
        .unwrap();
    assert_ne!(out.exit_code, Some(0), "allocating 500 MiB under a 200 MiB limit must fail: {out:?}");
    assert!(out.stderr.contains("MemoryError"), "{}", out.stderr);
}

#[tokio::test]
async fn without_namespaces_the_fallback_still_clears_the_environment_and_kills_the_session() {
    let r = ScriptRunner::local_with(SandboxMode::Processes, ScriptLimits::default());
    let out = r.run(&bash("env | cut -d= -f1 | sort", 5000), "", &acme()).await.unwrap();
    for n in out.stdout.lines() {
        assert!(["PATH", "LANG", "HOME", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD"].contains(&n), "{n} leaked");
    }
    let marker = format!("{}.{}", 40 + rand::random::<u8>() % 50, rand::random::<u32>());
    let err = r
        .run(&bash(&format!("sleep {marker} & while true; do :; done"), 300), "", &acme())
        .await
        .unwrap_err();
    assert_eq!(err, ScriptError::Timeout(Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alive = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&marker))
        .count();
    assert_eq!(alive, 0, "the background child outlived the timeout");
}
