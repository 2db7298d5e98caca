//! `cargo bench -p chainwatch-worker --bench script` (or `just bench-script`): what running one
//! trigger-condition script costs, start to verdict, run after run on one core: a Bash condition
//! that prints `false` and a Python one that reads the match from stdin. p50/p99 over 200 runs.

use std::time::{Duration, Instant};

use chainwatch_core::monitor::ResolvedScript;
use chainwatch_crds::ScriptLanguage;
use chainwatch_worker::notify::script::{ScriptRunner, script_input};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn measure(runner: &ScriptRunner, name: &str, script: ResolvedScript, input: &str, runs: usize) {
    // one warm-up run (page cache, interpreter start)
    runner.condition(&script, input).await.expect("the script runs");
    let mut took = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let verdict = runner.condition(&script, input).await.expect("the script runs");
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
    let runner = ScriptRunner::default();
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
    measure(&runner, "bash condition", bash, &input, 200).await;
    measure(&runner, "python condition", python, &input, 200).await;
}
