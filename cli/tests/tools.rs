//! The user's tools as a user runs them (the `chainwatch` binary): `check`, `import` and `test`
//! on the examples, on OpenZeppelin Monitor's own fixture configs and on a directory shaped like
//! upstream's examples; and the demo the README's first command runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixtures() -> PathBuf {
    std::env::var("CHAINWATCH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("../shared/fixtures"))
}

fn chainwatch(args: &[&str]) -> Output {
    Command::new(chainwatch_devkit::testbed::chainwatch_bin(env!("CARGO_BIN_EXE_chainwatch")))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .expect("running chainwatch")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `--version` names a commit of this repository (the build stamps `git rev-parse`'s), and
/// `--help` ends with examples whose subcommands and flags exist.
#[test]
fn version_names_the_commit_and_help_shows_working_examples() {
    let out = chainwatch(&["--version"]);
    assert!(out.status.success(), "{}", text(&out));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let commit = version
        .strip_prefix(&format!("chainwatch {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{version}"));
    assert!(commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()), "{version}");
    let known = Command::new("git")
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .current_dir(repo())
        .status();
    assert!(known.is_ok_and(|s| s.success()), "{commit} is not a commit of this repository");

    let help = String::from_utf8_lossy(&chainwatch(&["--help"]).stdout).into_owned();
    let examples = help.split_once("Examples:\n").map(|(_, e)| e).unwrap_or_else(|| panic!("{help}"));
    let mut checked = 0;
    for line in examples.lines().map(str::trim).filter(|l| l.starts_with("chainwatch ")) {
        let words: Vec<&str> = line.split_whitespace().take_while(|w| w.len() > 1 || *w == "-").collect();
        let (sub, flags) = (words[1], words.iter().filter(|w| w.starts_with('-')).collect::<Vec<_>>());
        let sub_help = text(&chainwatch(&[sub, "--help"]));
        for flag in flags {
            assert!(
                sub_help.contains(&format!("{flag} ")) || sub_help.contains(&format!("{flag},")),
                "`{line}`: {sub} has no {flag}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5, "{examples}");
}

#[test]
fn check_passes_the_examples_and_rejects_each_invalid_one_with_the_api_servers_message() {
    let ok = chainwatch(&["check", "examples/"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("0 error(s)"), "{}", text(&ok));

    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in files {
        let expect = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("# expect: ")
            .to_string();
        let out = chainwatch(&["check", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}: {}", f.display(), text(&out));
        let t = text(&out);
        // file, object and field are named, with the API server's words
        assert!(
            t.contains(&expect) && t.contains(f.file_name().unwrap().to_str().unwrap()),
            "{}: want `{expect}` in\n{t}",
            f.display()
        );
    }
}

#[test]
fn check_reports_compile_errors_and_dangling_references_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(
        &path,
        r#"
apiVersion: chainwatch.io/v1alpha1
kind: Network
metadata: {name: eth}
spec: {type: evm, rpc: [{url: "https://eth.example"}]}
---
apiVersion: chainwatch.io/v1alpha1
kind: Monitor
metadata: {name: m, namespace: acme}
spec:
  networks: [eth]
  addresses: [{address: "0x0000000000000000000000000000000000000001"}]
  matchConditions:
    transactions: [{status: Success, expression: "value >> 10"}]
  triggers: [pager]
---
apiVersion: chainwatch.io/v1alpha1
kind: Trigger
metadata: {name: slack, namespace: acme}
spec:
  slack: {webhookUrlSecretRef: {name: slack, key: url}}
  message: {title: t, body: b}
"#,
    )
    .unwrap();
    let out = chainwatch(&["check", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let find = |field: &str| {
        findings
            .iter()
            .find(|f| f["field"] == field)
            .unwrap_or_else(|| panic!("no finding on {field}: {v:#}"))
    };
    let expr = find("spec.matchConditions.transactions[0].expression");
    assert_eq!((expr["severity"].as_str(), expr["object"].as_str()), (Some("error"), Some("Monitor acme/m")));
    assert!(expr["message"].as_str().unwrap().contains("syntax error at column 8"), "{expr}");
    // acme has Triggers among the files and none is `pager`: a typo, an error
    let trigger = find("spec.triggers[0]");
    assert_eq!(trigger["severity"], "error");
    assert!(
        trigger["message"]
            .as_str()
            .unwrap()
            .contains("Trigger pager is not among the Triggers of namespace acme in the files (slack)"),
        "{trigger}"
    );
    assert!(findings.iter().any(|f| f["object"] == "Trigger acme/slack"
        && f["message"].as_str().unwrap().contains("Secret acme/slack is not among the files")));
    assert_eq!(v["errors"], 2);
}

/// Syntax does not depend on the chain: a syntax error is an error without the Network among the
/// files (and without --network-type); a Trigger of a namespace none of whose Triggers is among the
/// files is a warning (it lives in the cluster).
#[test]
fn check_reports_syntax_errors_without_the_network_and_missing_triggers_as_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(
        &path,
        r#"
apiVersion: chainwatch.io/v1alpha1
kind: Monitor
metadata: {name: m, namespace: acme}
spec:
  networks: [eth]
  addresses: [{address: "0x0000000000000000000000000000000000000001"}]
  matchConditions:
    events: [{signature: "Transfer(address,address,uint256)", expression: "amount > 10 &&"}]
    transactions: [{status: Success, expression: "value > 1"}]
  triggers: [pager]
"#,
    )
    .unwrap();
    let out = chainwatch(&["check", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let on = |field: &str| findings.iter().filter(|f| f["field"] == field).collect::<Vec<_>>();
    let syntax = on("spec.matchConditions.events[0].expression");
    assert_eq!(syntax.len(), 1, "{v:#}");
    assert_eq!(syntax[0]["severity"], "error");
    assert!(syntax[0]["message"].as_str().unwrap().contains("syntax error at column 13"), "{v:#}");
    assert!(on("spec.matchConditions.transactions[0].expression").is_empty(), "a valid expression: {v:#}");
    let trigger = on("spec.triggers[0]");
    assert_eq!(trigger[0]["severity"], "warning", "{v:#}");
    assert!(trigger[0]["message"].as_str().unwrap().contains("it must exist in the cluster"));
    assert_eq!(v["errors"], 1);
    // with the chain known, the compiler reports it once, not twice
    let typed =
        chainwatch(&["check", path.to_str().unwrap(), "--network-type", "eth=evm", "--output", "json"]);
    let v: Value = serde_json::from_slice(&typed.stdout).unwrap();
    assert_eq!(v["errors"], 1, "{v:#}");
}

#[test]
fn openzeppelin_fixture_configs_import_and_check() {
    for chain in ["evm", "stellar", "solana"] {
        let out_dir = tempfile::tempdir().unwrap();
        let src = fixtures().join("oz-monitor").join(chain);
        let out = chainwatch(&[
            "import",
            src.to_str().unwrap(),
            "-n",
            "acme",
            "-o",
            out_dir.path().to_str().unwrap(),
        ]);
        // every upstream file became a group, the dropped field is reported with its file
        assert!(text(&out).contains("networks/network.json: store_blocks"), "{}", text(&out));
        // a chain chainwatch does not ingest yet is said at import, not only at check
        assert_eq!(
            text(&out).contains("networks/network.json: network_type: solana networks are carried over"),
            chain == "solana",
            "{}",
            text(&out)
        );
        // the output is in subdirectories: checking it without -R finds nothing, and says so
        let flat = chainwatch(&["check", out_dir.path().to_str().unwrap()]);
        assert_eq!(flat.status.code(), Some(1), "{}", text(&flat));
        assert!(text(&flat).contains("add -R to read them"), "{}", text(&flat));
        let check = chainwatch(&["check", "-R", out_dir.path().to_str().unwrap(), "--output", "json"]);
        let v: Value = serde_json::from_slice(&check.stdout).unwrap();
        let errors: Vec<&Value> =
            v["findings"].as_array().unwrap().iter().filter(|f| f["severity"] == "error").collect();
        for e in &errors {
            let m = e["message"].as_str().unwrap();
            // what upstream's own validation would reject too, and the chain chainwatch does not match yet
            assert!(
                m.contains("a bot token looks like") || (chain == "solana" && m.contains("UnsupportedChain")),
                "{chain}: unexpected error {e}"
            );
            // import said the same, before anyone ran check
            assert!(text(&out).contains(m), "{chain}: import did not report {e}: {}", text(&out));
        }
        // import does not hand over what check refuses: exit 1, unless --allow-invalid
        assert_eq!(out.status.code(), Some(i32::from(!errors.is_empty())), "{chain}: {}", text(&out));
        if !errors.is_empty() {
            assert!(text(&out).contains("pass --allow-invalid"), "{}", text(&out));
            let again = tempfile::tempdir().unwrap();
            let allowed = chainwatch(&[
                "import",
                src.to_str().unwrap(),
                "-n",
                "acme",
                "--allow-invalid",
                "-o",
                again.path().to_str().unwrap(),
            ]);
            assert!(allowed.status.success(), "{chain}: {}", text(&allowed));
        }
        // hex strings are quoted: kubectl's and YAML 1.1 readers' parsers take bare 0x… for integers
        if chain == "evm" {
            let monitor =
                std::fs::read_to_string(out_dir.path().join("monitors/mint-usdc-token.yaml")).unwrap();
            assert!(
                monitor.contains(r#"address: "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48""#),
                "{monitor}"
            );
            assert!(
                !monitor.lines().any(|l| l.trim_start().trim_start_matches("- ").contains(": 0x")),
                "{monitor}"
            );
        }
    }
}

/// A config directory shaped like upstream's `examples/config`: the USDC large-transfer monitor
/// with its full ABI (large: it goes to a ConfigMap), a trigger condition script, triggers of
/// every kind with plain and environment secrets, and a network with recovery settings.
fn upstream_config(root: &Path) -> PathBuf {
    let config = root.join("config");
    for d in ["networks", "monitors", "triggers/scripts", "filters"] {
        std::fs::create_dir_all(config.join(d)).unwrap();
    }
    // the full USDC ABI of upstream's own fixture monitor
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("oz-monitor/evm/monitors/monitor.json")).unwrap(),
    )
    .unwrap();
    let abi = fixture["addresses"][0]["contract_spec"].clone();
    let write = |rel: &str, v: &Value| {
        std::fs::write(config.join(rel), serde_json::to_string_pretty(v).unwrap()).unwrap()
    };
    write(
        "networks/ethereum_mainnet.json",
        &json!({
            "network_type": "EVM", "slug": "ethereum_mainnet", "name": "Ethereum Mainnet",
            "rpc_urls": [
                {"type_": "rpc", "url": {"type": "plain", "value": "https://eth.drpc.org"}, "weight": 100},
                {"type_": "rpc", "url": {"type": "environment", "value": "CW_TEST_ALCHEMY_URL"}, "weight": 50}],
            "chain_id": 1, "block_time_ms": 12000, "confirmation_blocks": 12, "cron_schedule": "0 */1 * * * *",
            "max_past_blocks": 18, "store_blocks": false,
            "recovery_config": {"enabled": true, "cron_schedule": "0 */5 * * * *", "max_blocks_per_run": 10, "max_block_age": 1000, "max_retries": 3, "retry_delay_ms": 1000}
        }),
    );
    write(
        "monitors/evm_transfer_usdc.json",
        &json!({
            "name": "Large Transfer of USDC Token", "paused": false, "networks": ["ethereum_mainnet"],
            "addresses": [{"address": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "contract_spec": abi}],
            "match_conditions": {
                "functions": [{"signature": "transfer(address,uint256)", "expression": null}],
                "events": [{"signature": "Transfer(address,address,uint256)", "expression": "value > 10000000000"}],
                "transactions": [{"status": "Success", "expression": null}]},
            "trigger_conditions": [{"script_path": "./config/filters/evm_filter_block_number.sh", "language": "Bash", "arguments": ["--verbose"], "timeout_ms": 1000}],
            "triggers": ["evm_large_transfer_usdc_slack", "evm_large_transfer_usdc_email", "evm_large_transfer_usdc_script"]
        }),
    );
    std::fs::write(
        config.join("filters/evm_filter_block_number.sh"),
        "#!/bin/bash\n# drops matches in odd blocks\nread -r input\necho false\n",
    )
    .unwrap();
    std::fs::write(
        config.join("triggers/scripts/custom_notification.sh"),
        "#!/bin/bash\nread -r input\necho \"notified\"\n",
    )
    .unwrap();
    let message = json!({"title": "large transfer", "body": "Large transfer of ${events.0.args.value} USDC | https://etherscan.io/tx/${transaction.hash}"});
    write(
        "triggers/slack_notifications.json",
        &json!({"evm_large_transfer_usdc_slack": {"name": "Large Transfer Slack Notification", "trigger_type": "slack",
        "config": {"slack_url": {"type": "plain", "value": "https://hooks.slack.com/services/A/B/C"}, "message": message,
                   "retry_policy": {"max_retries": 5, "initial_backoff": {"secs": 1, "nanos": 0}, "max_backoff": {"secs": 30, "nanos": 0}, "jitter": "none"}}}}),
    );
    write(
        "triggers/email_notifications.json",
        &json!({"evm_large_transfer_usdc_email": {"name": "Large Transfer Email", "trigger_type": "email",
        "config": {"host": "smtp.gmail.com", "port": 465, "username": {"type": "plain", "value": "alerts"}, "password": {"type": "environment", "value": "CW_TEST_SMTP_PASSWORD"},
                   "message": message, "sender": "alerts@acme.example", "recipients": ["oncall@acme.example"]}}}),
    );
    write(
        "triggers/script_notifications.json",
        &json!({"evm_large_transfer_usdc_script": {"name": "Large Transfer Action", "trigger_type": "script",
        "config": {"language": "Bash", "script_path": "./config/triggers/scripts/custom_notification.sh", "arguments": ["--verbose"], "timeout_ms": 1000}}}),
    );
    write(
        "triggers/webhook_notifications.json",
        &json!({
        "raw_payload_webhook": {"name": "Raw Payload Webhook", "trigger_type": "webhook",
            "config": {"url": {"type": "plain", "value": "https://api.example.com/events"}, "method": "POST", "secret": {"type": "plain", "value": "webhook-secret"},
                       "headers": {"Content-Type": "application/json"}, "payload_mode": "raw"}},
        "telegram_notifier": {"name": "Telegram", "trigger_type": "telegram",
            "config": {"token": {"type": "plain", "value": "123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "chat_id": "-100123", "disable_web_preview": true, "message": message}},
        "discord_notifier": {"name": "Discord", "trigger_type": "discord",
            "config": {"discord_url": {"type": "plain", "value": "https://discord.com/api/webhooks/1/abc"}, "message": message}}}),
    );
    config
}

fn matches_of(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", text(o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["EVM"])
        .map(|m| json!({"tx": m["transaction"]["hash"], "matched_on": m["matched_on"], "args": m["matched_on_args"]}))
        .inspect(|m| assert!(m["tx"].is_string() && m["matched_on"].is_object(), "upstream's EVM match shape: {m}"))
        .collect()
}

#[test]
fn an_upstream_shaped_config_round_trips_through_import_check_and_test() {
    let root = tempfile::tempdir().unwrap();
    let config = upstream_config(root.path());
    let out_dir = root.path().join("out");
    let out = Command::new(chainwatch_devkit::testbed::chainwatch_bin(env!("CARGO_BIN_EXE_chainwatch")))
        .args(["import", config.to_str().unwrap(), "-n", "acme", "-o", out_dir.to_str().unwrap()])
        .env("CW_TEST_SMTP_PASSWORD", "hunter2")
        .env_remove("CW_TEST_ALCHEMY_URL")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("recovery_config: not needed"), "{t}");
    assert!(t.contains("environment variable CW_TEST_ALCHEMY_URL is not set here: fill in key rpc-1-url of Secret chainwatch-system/ethereum-mainnet-rpc"), "{t}");

    // secrets are never in a spec; the env secret that was set is in its Secret
    let triggers =
        std::fs::read_to_string(out_dir.join("triggers/evm-large-transfer-usdc-email.yaml")).unwrap();
    assert!(triggers.contains("password: hunter2") && triggers.contains("kind: Secret"), "{triggers}");
    for f in ["monitors/large-transfer-of-usdc-token.yaml", "networks/ethereum-mainnet.yaml"] {
        let text = std::fs::read_to_string(out_dir.join(f)).unwrap();
        assert!(!text.contains("hunter2"));
    }
    let monitor =
        std::fs::read_to_string(out_dir.join("monitors/large-transfer-of-usdc-token.yaml")).unwrap();
    assert!(
        monitor.contains("contractSpecFrom") && monitor.contains("kind: ConfigMap"),
        "the large ABI goes to a ConfigMap"
    );
    assert!(monitor.contains("echo false"), "the trigger condition script is carried");
    let script =
        std::fs::read_to_string(out_dir.join("triggers/evm-large-transfer-usdc-script.yaml")).unwrap();
    assert!(script.contains("echo \"notified\""));

    // the imported CRs pass check (the RPC Secret is among them; its env value is empty: a warning at most)
    let check = chainwatch(&["check", "-R", out_dir.to_str().unwrap(), "--output", "json"]);
    let v: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(v["errors"], 0, "{v:#}");

    // and the imported monitor matches what the native example matches on mainnet block 18,000,000
    let replay = fixtures().join("ethereum-mainnet-rpc");
    let imported = chainwatch(&[
        "test",
        "--monitor",
        out_dir.join("monitors/large-transfer-of-usdc-token.yaml").to_str().unwrap(),
        "--network",
        out_dir.join("networks/ethereum-mainnet.yaml").to_str().unwrap(),
        "-f",
        out_dir.join("triggers").to_str().unwrap(),
        "--block",
        "18000000",
        "--replay",
        replay.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let native = chainwatch(&[
        "test",
        "--monitor",
        "examples/40-monitor-usdc-large-transfer.yaml",
        "--network",
        "examples/10-network-ethereum-mainnet.yaml",
        "--block",
        "18000000",
        "--replay",
        replay.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let (a, b) = (matches_of(&imported), matches_of(&native));
    assert!(!a.is_empty(), "block 18,000,000 has a USDC transfer() call");
    assert_eq!(a, b);
    // the imported triggers render their notifications
    let v: Value = serde_json::from_slice(&imported.stdout).unwrap();
    let channels: Vec<&str> =
        v["notifications"].as_array().unwrap().iter().map(|n| n["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["slack", "email", "script"]);
}

#[test]
fn the_demo_prints_matches_within_a_minute() {
    if std::env::var("ANVIL_BIN").is_err() {
        panic!("ANVIL_BIN is not set: start the test bed (`scripts/testbed.sh up`) or run `just test`");
    }
    let started = std::time::Instant::now();
    let out = chainwatch(&["dev", "--demo", "--exit-after-matches", "3", "--duration", "60s"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let matches = t.lines().filter(|l| l.starts_with("MATCH demo/")).count();
    assert!(matches >= 3, "{matches} matches in 60 s:\n{t}");
    assert!(t.contains("NOTIFIED via webhook"), "{t}");
    eprintln!("demo: {matches} matches after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_reloads_an_edited_monitor_without_a_restart() {
    use alloy_primitives::U256;
    use std::io::{BufRead, BufReader};
    let anvil =
        chainwatch_devkit::devnet::Anvil::spawn(&chainwatch_devkit::testbed::anvil_bin(), &[]).await.unwrap();
    let accounts = anvil.accounts().await.unwrap();
    let token = anvil.deploy_token(accounts[0], U256::from(10u64).pow(U256::from(20u64))).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // transfers only (not the mint of the deployment), above a threshold
    let monitor = |threshold: &str| {
        format!(
            r#"
apiVersion: chainwatch.io/v1alpha1
kind: Monitor
metadata: {{name: big, namespace: dev}}
spec:
  networks: [devnet]
  addresses: [{{address: "{token:#x}", contractSpec: [{{type: event, name: Transfer, anonymous: false, inputs: [{{indexed: true, name: from, type: address}}, {{indexed: true, name: to, type: address}}, {{indexed: false, name: value, type: uint256}}]}}]}}]
  matchConditions:
    events: [{{signature: "Transfer(address,address,uint256)", expression: "from != 0x0000000000000000000000000000000000000000 AND value > {threshold}"}}]
  triggers: []
"#
        )
    };
    std::fs::write(dir.path().join("network.yaml"), format!("apiVersion: chainwatch.io/v1alpha1\nkind: Network\nmetadata: {{name: devnet}}\nspec: {{type: evm, rpc: [{{url: \"{}\"}}], confirmations: 0, pollInterval: 100ms}}\n", anvil.url)).unwrap();
    std::fs::write(dir.path().join("monitor.yaml"), monitor("1000000")).unwrap();
    let mut child = std::process::Command::new(chainwatch_devkit::testbed::chainwatch_bin(env!(
        "CARGO_BIN_EXE_chainwatch"
    )))
    .args(["dev", "-f", dir.path().to_str().unwrap(), "--duration", "60s", "--exit-after-matches", "1"])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("chainwatch dev: 1 network(s), 1 monitor(s)"));
    // below both thresholds: never a match, whichever configuration evaluates its block
    anvil.transfer(token, accounts[0], accounts[1], U256::from(50u64)).await.unwrap();
    // lower the threshold in the file: the next transfer matches, without a restart
    std::fs::write(dir.path().join("monitor.yaml"), monitor("100")).unwrap();
    let reloaded = lines.next().unwrap().unwrap();
    assert!(reloaded.starts_with("config reloaded"), "{reloaded}");
    let tx = anvil.transfer(token, accounts[0], accounts[1], U256::from(500u64)).await.unwrap();
    let matched = lines.next().unwrap().unwrap();
    assert!(matched.starts_with("MATCH dev/big on devnet") && matched.contains(&tx), "{matched}");
    assert!(child.wait().unwrap().success(), "stops after --exit-after-matches 1");
}

#[test]
fn dev_says_when_a_networks_endpoints_fail() {
    let dir = tempfile::tempdir().unwrap();
    // nothing listens on port 1
    std::fs::write(
        dir.path().join("network.yaml"),
        "apiVersion: chainwatch.io/v1alpha1\nkind: Network\nmetadata: {name: down}\nspec: {type: evm, rpc: [{url: \"http://127.0.0.1:1\"}], pollInterval: 100ms}\n",
    )
    .unwrap();
    let out = chainwatch(&["dev", "-f", dir.path().to_str().unwrap(), "--duration", "6s"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.lines().any(|l| l.starts_with("network down: RPC") && l.contains("127.0.0.1:1")), "{t}");
}

/// `chainwatch test --replay` on Stellar: real recorded `getLedgers`, `getTransactions` and
/// `getEvents` results (upstream's fixtures; ledger 808663 has its header and its transactions),
/// the latest recorded ledger by default, and a ledger without a recorded header named.
#[test]
fn test_replays_stellar_ledgers_and_takes_the_latest_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let read = |rel: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(fixtures().join(rel)).unwrap()).unwrap()
    };
    let ledgers: Vec<Value> = read("oz-monitor/stellar/blocks.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["Stellar"].clone())
        .collect();
    let exchange = |method: &str, params: Value, result: Value| json!({"request": {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, "response": {"jsonrpc": "2.0", "id": 1, "result": result}});
    let exchanges = json!([
        exchange("getLedgers", json!({"startLedger": 172627}), json!({"ledgers": ledgers})),
        exchange(
            "getTransactions",
            json!({"startLedger": 317598}),
            json!({"transactions": read("oz-monitor/stellar/transactions.json")})
        ),
        exchange(
            "getEvents",
            json!({"startLedger": 317598}),
            json!({"events": read("oz-monitor/stellar/events.json")})
        ),
    ]);
    let replay = dir.path().join("replay");
    std::fs::create_dir_all(&replay).unwrap();
    std::fs::write(replay.join("stellar.json"), exchanges.to_string()).unwrap();
    let monitor = dir.path().join("m.yaml");
    std::fs::write(
        &monitor,
        r#"
apiVersion: chainwatch.io/v1alpha1
kind: Monitor
metadata: {name: counter, namespace: acme}
spec:
  networks: [stellar-mainnet]
  addresses: [{address: "CDMZ6LU66KEMLKI3EJBIGXTZ4KZ2CRTSHZETMY3QQZBWRKVKB5EIOHTX"}]
  matchConditions: {transactions: [{status: Success}]}
  triggers: []
"#,
    )
    .unwrap();
    let test = |extra: &[&str]| {
        let mut args = vec![
            "test",
            "--monitor",
            monitor.to_str().unwrap(),
            "--network",
            "examples/11-network-stellar-mainnet.yaml",
            "--replay",
            replay.to_str().unwrap(),
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        chainwatch(&args)
    };
    // 808663 is the newest recorded ledger: the default
    let latest = test(&[]);
    assert!(latest.status.success(), "{}", text(&latest));
    let v: Value = serde_json::from_slice(&latest.stdout).unwrap();
    assert_eq!((v["from"].as_u64(), v["to"].as_u64()), (Some(808663), Some(808663)), "{v:#}");
    let hashes: Vec<&str> = v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Stellar"]["transaction"]["txHash"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(hashes, ["80fec04b989895a4222d9985fbf153d253e3e2cbc1da45ef414db96a277b99be"], "{v:#}");
    // a range: the two ledgers before have headers and no transaction of the contract
    let range = test(&["--blocks", "172627..172628"]);
    assert!(range.status.success(), "{}", text(&range));
    let v: Value = serde_json::from_slice(&range.stdout).unwrap();
    assert_eq!(v["matches"].as_array().unwrap().len(), 0, "{v:#}");
    // ledger 317598 has transactions recorded but no header: said, not guessed
    let missing = test(&["--block", "317598"]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("no getLedgers result for ledger 317598"), "{}", text(&missing));
}

/// `chainwatch test --blocks FROM..TO` against a live endpoint (anvil): every block of the range,
/// both ends included, and the head when no block is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reads_a_range_of_blocks_and_the_head_by_default() {
    let bin = std::env::var("ANVIL_BIN")
        .expect("ANVIL_BIN is not set: start the test bed (`scripts/testbed.sh up`) or run `just test`");
    let anvil = chainwatch_devkit::devnet::Anvil::spawn(&bin, &[]).await.unwrap();
    let accounts = anvil.accounts().await.unwrap();
    let supply = alloy_primitives::U256::from(10u64).pow(alloy_primitives::U256::from(24));
    let token = anvil.deploy_token(accounts[0], supply).await.unwrap();
    let mut transfers = Vec::new();
    for i in 1..=3u64 {
        let hash =
            anvil.transfer(token, accounts[0], accounts[1], alloy_primitives::U256::from(i)).await.unwrap();
        let receipt = loop {
            let r = anvil.rpc("eth_getTransactionReceipt", json!([hash])).await.unwrap();
            if !r.is_null() {
                break r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let block =
            u64::from_str_radix(receipt["blockNumber"].as_str().unwrap().trim_start_matches("0x"), 16)
                .unwrap();
        transfers.push((hash, block));
    }
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("local.yaml");
    std::fs::write(
        &files,
        format!(
            r#"
apiVersion: chainwatch.io/v1alpha1
kind: Network
metadata: {{name: local}}
spec: {{type: evm, chainId: 31337, rpc: [{{url: "{url}"}}], confirmations: 0, blockTime: 1s}}
---
apiVersion: chainwatch.io/v1alpha1
kind: Monitor
metadata: {{name: transfers, namespace: acme}}
spec:
  networks: [local]
  addresses:
    - address: "{token:#x}"
      contractSpec:
        - {{type: event, name: Transfer, anonymous: false, inputs: [{{indexed: true, name: from, type: address}}, {{indexed: true, name: to, type: address}}, {{indexed: false, name: value, type: uint256}}]}}
  matchConditions:
    events: [{{signature: "Transfer(address,address,uint256)", expression: "value > 0"}}]
  triggers: []
"#,
            url = anvil.url
        ),
    )
    .unwrap();
    let test = |extra: Vec<String>| {
        let files = files.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut args: Vec<String> =
                    ["test", "--monitor", files.to_str().unwrap(), "--output", "json"]
                        .map(String::from)
                        .to_vec();
                args.extend(extra);
                chainwatch(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .unwrap()
        }
    };
    let hashes = |o: &Output| -> Vec<String> {
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(o)));
        v["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["EVM"]["transaction"]["hash"].as_str().unwrap().to_string())
            .collect()
    };
    let (first, last) = (transfers[0].1, transfers[2].1);
    let range = test(vec!["--blocks".into(), format!("{first}..{last}")]).await;
    assert!(range.status.success(), "{}", text(&range));
    assert_eq!(hashes(&range), transfers.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>());
    let head = test(vec![]).await;
    assert!(head.status.success(), "{}", text(&head));
    assert_eq!(hashes(&head), [transfers[2].0.clone()], "the head block holds the last transfer");
    let backwards = test(vec!["--blocks".into(), format!("{last}..{first}")]).await;
    assert!(
        !backwards.status.success() && text(&backwards).contains("ends before it starts"),
        "{}",
        text(&backwards)
    );
}
