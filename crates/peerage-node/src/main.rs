//! The `peerage` binary.

use std::process::ExitCode;

use clap::Parser;
use peerage_node::{
    cli::{Cli, Command},
    devnet, run,
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
        Command::Run(args) => {
            init_tracing("info");
            run::run(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Devnet(args) => {
            init_tracing("warn");
            devnet::devnet(&args, !args.json).await.map(|report| {
                if args.json {
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
