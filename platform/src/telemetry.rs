//! Logging: `tracing` to stderr, as text for people or JSON for log pipelines.

use tracing_subscriber::EnvFilter;

/// Log settings shared by every binary.
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long = "log-format", env = "CHAINWATCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub format: LogFormat,
    /// Log filter (`info`, `chainwatch_worker=debug,info`, …); RUST_LOG is read too.
    #[arg(long = "log-level", env = "CHAINWATCH_LOG", default_value = "info", global = true)]
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogArgs {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&args.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match args.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
