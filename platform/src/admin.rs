//! The admin server every process runs on its own port: `/metrics` (Prometheus text format),
//! `/livez` (the process runs) and `/readyz` (caches synced / broker reachable, and not shutting
//! down).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Admin server settings.
#[derive(Clone, Debug, clap::Args)]
pub struct AdminArgs {
    /// Address of the admin server (/metrics, /livez, /readyz).
    #[arg(long = "admin-addr", env = "CHAINWATCH_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,
}

/// Readiness, set by the process's components.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    process: crate::self_metrics::ProcessMetrics,
    ready: Readiness,
    shutdown: CancellationToken,
}

/// Encodes a registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("writing to a String");
    out
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    s.process.refresh();
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        encode(&s.registry),
    )
}

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if s.ready.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Binds the admin server; serve it with the returned future until `shutdown`. The registry gets
/// the build and process metrics every process exposes ([`crate::self_metrics`]).
pub async fn serve(
    addr: SocketAddr,
    mut registry: Registry,
    ready: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    let process = crate::self_metrics::ProcessMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AppState { registry, process, ready, shutdown: shutdown.clone() });
    let fut = async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
    };
    Ok((local, fut))
}

/// A running admin server.
pub struct AdminServer {
    /// The address it listens on (the port is chosen by the OS when `--admin-addr` ends in `:0`).
    pub addr: SocketAddr,
    /// What `/readyz` answers.
    pub ready: Readiness,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Starts serving `/metrics` from `registry`, `/livez` and `/readyz` (not ready at first)
    /// until `shutdown`.
    pub async fn start(
        args: &AdminArgs,
        registry: Registry,
        shutdown: CancellationToken,
    ) -> std::io::Result<AdminServer> {
        let ready = Readiness::default();
        let (addr, serving) = serve(args.addr, registry, ready.clone(), shutdown).await?;
        Ok(AdminServer { addr, ready, task: tokio::spawn(serving) })
    }

    /// Waits for the server to finish (after `shutdown`).
    pub async fn stopped(self) {
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "the admin server failed");
        }
    }
}
