//! The client commands: placeholder until the API client lands.

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {}

pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {}
}
