//! `chainwatch script-runner`: the tenant's script runner, one Deployment in the tenant's
//! namespace (built by the operator). It runs the scripts the workers send it, for its own tenant
//! only, in the best sandbox its pod allows ([`super::sandbox`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use super::remote::{RunRequest, RunResponse};
use super::{RunFor, ScriptLimits, ScriptRunner};

/// Command-line arguments of the runner.
#[derive(Clone, Debug, clap::Args)]
pub struct RunnerArgs {
    /// Where to listen.
    #[arg(long, env = "CHAINWATCH_RUNNER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The one tenant whose scripts this runner runs.
    #[arg(long, env = "CHAINWATCH_TENANT")]
    pub tenant: String,
    /// Whether the tenant allows its scripts the network.
    #[arg(long, env = "CHAINWATCH_SCRIPT_NETWORK", default_value_t = false, action = clap::ArgAction::Set)]
    pub network: bool,
    /// CPU seconds a script may use.
    #[arg(long, env = "CHAINWATCH_SCRIPT_CPU_SECONDS", default_value_t = 10)]
    pub cpu_seconds: u64,
    /// Address space of a script, in MiB.
    #[arg(long, env = "CHAINWATCH_SCRIPT_MEMORY_MIB", default_value_t = 512)]
    pub memory_mib: u64,
    /// Scripts run at once.
    #[arg(long, env = "CHAINWATCH_SCRIPT_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
}

struct Runner {
    runner: ScriptRunner,
    tenant: String,
    network: bool,
}

async fn run(
    State(r): State<Arc<Runner>>,
    Json(req): Json<RunRequest>,
) -> Result<Json<RunResponse>, (StatusCode, String)> {
    if req.tenant != r.tenant {
        return Err((StatusCode::FORBIDDEN, format!("this runner runs tenant {}'s scripts only", r.tenant)));
    }
    let run_for =
        RunFor { tenant: r.tenant.clone(), network: r.network && req.network, runner_namespace: None };
    Ok(Json(match r.runner.run(&req.script, &req.input, &run_for).await {
        Ok(o) => RunResponse::Output(o),
        Err(e) => RunResponse::Error(e),
    }))
}

/// Serves until `shutdown`.
pub async fn serve(args: RunnerArgs, shutdown: CancellationToken) -> std::io::Result<()> {
    let limits = ScriptLimits {
        cpu_seconds: args.cpu_seconds,
        memory_bytes: args.memory_mib << 20,
        per_tenant: args.concurrency,
        ..ScriptLimits::default()
    };
    let runner = ScriptRunner::local(limits);
    tracing::info!(listen = %args.listen, tenant = %args.tenant, sandbox = runner.mode(), "script runner starting");
    let state = Arc::new(Runner { runner, tenant: args.tenant, network: args.network });
    let app = axum::Router::new()
        .route("/run", post(run))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
