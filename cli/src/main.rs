//! `chainwatch`: one binary for every part — the operator, ingester and worker processes the
//! operator runs, and the user's tools (import, check, test, dev). Also a kubectl plugin when
//! installed as `kubectl-chainwatch`.

mod check;
mod demo;
mod dev;
mod dry_run;
mod import;
mod manifests;
mod redeliver;
mod yaml;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// The version and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CHAINWATCH_COMMIT"), ")");

const EXAMPLES: &str = "\
Examples:
  chainwatch dev --demo                          a local chain, example monitors and a receiver
  chainwatch dev -f monitors/ -R --rpc https://…  your monitors on a real chain, on this machine
  chainwatch import ./oz-monitor-config -o cw/   OpenZeppelin Monitor's config → manifests
  chainwatch check -R cw/                        validate manifests offline (exit 1 on errors)
  chainwatch test -m cw/monitor.yaml -f cw/ --block 18000000 --rpc https://…
                                                 dry-run a monitor on one block
  kubectl apply -f cw/ && kubectl get monitors   run them in a cluster";

/// Kubernetes-native blockchain monitoring with OpenZeppelin Monitor semantics.
#[derive(Parser)]
#[command(
    name = "chainwatch",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100,
    after_help = EXAMPLES
)]
struct Cli {
    #[command(flatten)]
    log: chainwatch_platform::telemetry::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on this machine: ingesters and workers over an in-memory bus, config from
    /// a directory of CR YAML (reloaded on change). `--demo` runs a local chain with examples.
    Dev(dev::DevArgs),
    /// Convert an OpenZeppelin Monitor config directory into chainwatch manifests.
    Import(import::ImportArgs),
    /// Validate CR YAML offline (schema, CEL rules, monitor compilation, references); exit
    /// status 1 on errors, for CI and pre-commit hooks.
    Check(check::CheckArgs),
    /// Dry-run a monitor on one block: print its matches and the notifications it would send.
    Test(dry_run::TestArgs),
    /// Deliver dead-lettered notifications again, once each (the platform team's tool: it reads
    /// the dead-letter topic). Filter by namespace, trigger, monitor, reason and age.
    Redeliver(redeliver::RedeliverArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The operator process (run by the Deployment in config/manager).
    Operator(chainwatch_operator::OperatorArgs),
    /// The block ingester process of one Network (run by the operator).
    Ingester(chainwatch_ingester::IngesterArgs),
    /// The filter and notify worker process (run by the operator).
    Worker(chainwatch_worker::WorkerArgs),
    /// A tenant's script runner (run by the operator in the tenant's namespace).
    ScriptRunner(chainwatch_worker::script::server::RunnerArgs),
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    // as a kubectl plugin, help and errors say `kubectl chainwatch`
    let plugin = std::env::args().next().is_some_and(|a| a.ends_with("kubectl-chainwatch"));
    chainwatch_platform::self_metrics::set_build(env!("CARGO_PKG_VERSION"), env!("CHAINWATCH_COMMIT"));
    let mut command = Cli::command();
    if plugin {
        command = command.name("kubectl chainwatch").bin_name("kubectl chainwatch");
    }
    let cli =
        match command.try_get_matches().and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m)) {
            Ok(c) => c,
            Err(e) => e.exit(),
        };
    let mut log = cli.log.clone();
    if matches!(cli.command, Command::Dev(_) | Command::Test(_))
        && std::env::var_os("CHAINWATCH_LOG").is_none()
        && log.level == "info"
    {
        // the user's tools print what matters themselves; logs only say what went wrong
        log.level = "warn".into();
    }
    chainwatch_platform::telemetry::init(&log);
    match cli.command {
        Command::Check(args) => ExitCode::from(check::run(args) as u8),
        Command::Import(args) => match import::run(args) {
            Ok(code) => ExitCode::from(code as u8),
            Err(e) => fail(format!("{e:#}")),
        },
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let name = if plugin { "kubectl-chainwatch" } else { "chainwatch" };
            clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        command => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            runtime.block_on(async move {
                let shutdown = chainwatch_platform::shutdown::on_signals();
                let result: anyhow::Result<()> = match command {
                    Command::Dev(args) => dev::run(args, shutdown).await,
                    Command::Test(args) => dry_run::run(args).await,
                    Command::Redeliver(args) => redeliver::run(args).await,
                    Command::Operator(args) => {
                        chainwatch_operator::run(args, shutdown).await.map_err(Into::into)
                    }
                    Command::Ingester(args) => {
                        chainwatch_ingester::run(args, shutdown).await.map_err(Into::into)
                    }
                    Command::Worker(args) => chainwatch_worker::run(args, shutdown).await.map_err(Into::into),
                    Command::ScriptRunner(args) => {
                        chainwatch_worker::script::server::serve(args, shutdown).await.map_err(Into::into)
                    }
                    Command::Check(_) | Command::Import(_) | Command::Completions { .. } => {
                        unreachable!("handled above")
                    }
                };
                match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(format!("{e:#}")),
                }
            })
        }
    }
}
