//! The control plane: reconciles `VirtualSipTrunk` resources into a proxy fleet.

pub mod crdgen;

/// Command-line arguments of `vsip operator`.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {}

pub async fn run(_args: OperatorArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
