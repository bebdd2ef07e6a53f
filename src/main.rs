use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vsip",
    version,
    about = "FQDN-based virtual SIP trunking for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SIP proxy (standalone from a file, or fed by the operator).
    Proxy(vsip::proxy::ProxyArgs),
    /// Run the operator that reconciles VirtualSipTrunk resources.
    Operator(vsip::operator::OperatorArgs),
    /// Print the VirtualSipTrunk CustomResourceDefinition as YAML.
    Crdgen,
    /// Check a proxy config file and print what is wrong with it.
    CheckConfig { file: PathBuf },
    /// Serve DNS records from a YAML file (labs, demos, tests); reloads on change.
    #[command(hide = true)]
    LabDns(vsip::lab::LabDnsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Proxy(args) => run(vsip::proxy::run(args)),
        Command::Operator(args) => run(vsip::operator::run(args)),
        Command::Crdgen => vsip::operator::crdgen::print(),
        Command::CheckConfig { file } => vsip::proxy::check_config(&file),
        Command::LabDns(args) => run(vsip::lab::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vsip: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}
