//! `cargo bench -p chainwatch-worker --bench script` (or `just bench-script`): what running one
//! trigger-condition script costs, start to verdict, run after run on one core: a Bash condition
//! that prints `false` and a Python one that reads the match from stdin. p50/p99 over 200 runs, in
//! the sandbox this process can make (namespaces as root) and in the fallback (limits and a
//! session only), which costs what the runner cost before it had namespaces.

use std::time::{Duration, Instant};

use chainwatch_core::monitor::ResolvedScript;
use chainwatch_crds::ScriptLanguage;
use chainwatch_worker::script::{RunFor, SandboxMode, ScriptLimits, ScriptRunner, script_input};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(runner: &ScriptRunner, name: &str, script: ResolvedScript, input: &str, runs: usize) {
    // one warm-up run (page cache, interpreter start)
    runner.condition(&script, input, &RunFor::tenant("bench")).await.expect("the script runs");
    let mut took = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let verdict =
            runner.condition(&script, input, &RunFor::tenant("bench")).await.expect("the script runs");
        took.push(t.elapsed());
        assert!(!verdict);
    }
    took.sort();
    println!(
        "{name:<28} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({runs} runs)",
        percentile(&took, 0.5).as_secs_f64() * 1e3,
        percentile(&took, 0.99).as_secs_f64() * 1e3,
        took.last().unwrap().as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sandboxed = ScriptRunner::default();
    let fallback = ScriptRunner::local_with(SandboxMode::Processes, ScriptLimits::default());
    let input = script_input(&serde_json::json!({"EVM": {"transaction": {"value": "1"}}}), &[]);
    let bash = ResolvedScript {
        language: ScriptLanguage::Bash,
        source: "read -r line; echo false".into(),
        arguments: vec![],
        timeout_ms: 5_000,
    };
    let python = ResolvedScript {
        language: ScriptLanguage::Python,
        source: "import json,sys\nd=json.load(sys.stdin)\nprint('false')".into(),
        arguments: vec![],
        timeout_ms: 5_000,
    };
    for (mode, runner) in [(sandboxed.mode(), &sandboxed), ("processes", &fallback)] {
        measure(runner, &format!("bash condition ({mode})"), bash.clone(), &input, 200).await;
        measure(runner, &format!("python condition ({mode})"), python.clone(), &input, 200).await;
    }
}
