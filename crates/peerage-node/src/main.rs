//! The `peerage` binary.

use std::process::ExitCode;

use std::io::IsTerminal;

use clap::{CommandFactory, Parser};
use peerage_node::{
    cli::{Cli, Command, ConfigCommand, LogFormat},
    config, devnet, run, sim,
};
use tracing_subscriber::EnvFilter;

/// With the `mimalloc` feature, mimalloc allocates for the whole process.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs to stderr, filtered by `RUST_LOG` if it is set and valid, else by `default`.
fn init_tracing(default: &str, format: LogFormat) {
    let filter = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .and_then(|directives| match config::log_filter(&directives) {
            Ok(filter) => Some(filter),
            Err(e) => {
                eprintln!("warning: RUST_LOG={directives:?} ignored: {e}");
                None
            }
        })
        .unwrap_or_else(|| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        // No colour codes in a file or a pipe.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The arguments of `peerage run EXTRA...`, as `config check` and `config init` resolve them.
fn run_args(extra: &[&str]) -> peerage_node::cli::RunArgs {
    let args = ["peerage", "run"].iter().chain(extra);
    let Command::Run(args) = Cli::parse_from(args).command else {
        unreachable!("parsed as run")
    };
    args
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format.unwrap_or_default();
    let init_logs = |default: &str| init_tracing(default, format);
    let result = match cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "peerage", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(anyhow::Error::from),
        Command::Client(command) => {
            init_logs("warn");
            let args = cli.client.clone();
            tokio::task::spawn_blocking(move || peerage_node::client::run(&args, &command))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
                .map(|out| {
                    print!("{out}");
                    ExitCode::SUCCESS
                })
        }
        Command::Run(args) => match config::resolve(&args, &cli.client, cli.log_format) {
            Ok(effective) => {
                init_tracing(&effective.log, effective.log_format);
                run::run(effective).await.map(|()| ExitCode::SUCCESS)
            }
            Err(e) => Err(e),
        },
        Command::Config(ConfigCommand::Show(args)) => {
            config::resolve(&args, &cli.client, cli.log_format).map(|effective| {
                print!("{}", config::show(&effective));
                ExitCode::SUCCESS
            })
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let args = run_args(&["--config", &file.to_string_lossy()]);
            // Every check `run` makes before it opens anything, not only the file's.
            config::resolve(&args, &cli.client, cli.log_format)
                .and_then(|effective| run::check(&effective))
                .map(|_| {
                    println!("ok: {}", file.display());
                    ExitCode::SUCCESS
                })
        }
        Command::Config(ConfigCommand::Init { file }) => {
            config::resolve(&run_args(&[]), &cli.client, cli.log_format).and_then(|effective| {
                let text = format!(
                    "# peerage run --config {}: every setting at its default.\n{}",
                    file.display(),
                    config::show(&effective)
                );
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&file)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", file.display()))?;
                println!("wrote {}", file.display());
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Sim(args) => {
            init_logs("warn");
            sim::sim(&args, cli.client.json)
        }
        Command::Devnet(args) => {
            init_logs("warn");
            let json = cli.client.json;
            let print = |report: &devnet::Report| {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(report).expect("report serializes")
                    );
                } else {
                    print!("{}", devnet::render_table(report));
                }
                // Read at once by whoever watches, while an `--admin` devnet keeps running.
                let _ = std::io::Write::flush(&mut std::io::stdout());
            };
            devnet::devnet(&args, !json, &cli.client, print)
                .await
                .map(|report| {
                    if report.converged {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                })
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
