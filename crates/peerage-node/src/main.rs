//! The `peerage` binary.

use std::process::ExitCode;

use clap::Parser;
use peerage_node::{
    cli::{Cli, Command, ConfigCommand},
    config, devnet, run, sim,
};
use tracing_subscriber::EnvFilter;

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Client(command) => {
            init_tracing("warn");
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
        Command::Run(args) => match config::resolve(&args, &cli.client) {
            Ok(effective) => {
                init_tracing(&effective.log);
                run::run(effective).await.map(|()| ExitCode::SUCCESS)
            }
            Err(e) => Err(e),
        },
        Command::Config(ConfigCommand::Show(args)) => {
            config::resolve(&args, &cli.client).map(|effective| {
                print!("{}", config::show(&effective));
                ExitCode::SUCCESS
            })
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let path = file.to_string_lossy().into_owned();
            let Command::Run(args) = Cli::parse_from(["peerage", "run", "--config", &path]).command
            else {
                unreachable!("parsed as run")
            };
            config::resolve(&args, &cli.client).map(|_| {
                println!("ok: {}", file.display());
                ExitCode::SUCCESS
            })
        }
        Command::Sim(args) => {
            init_tracing("warn");
            sim::sim(&args, cli.client.json)
        }
        Command::Devnet(args) => {
            init_tracing("warn");
            let json = cli.client.json;
            devnet::devnet(&args, !json).await.map(|report| {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&report).expect("report serializes")
                    );
                } else {
                    print!("{}", devnet::render_table(&report));
                }
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
