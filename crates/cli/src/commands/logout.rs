//! `kiln logout [SERVER]`: forget the credentials of a registry (in
//! `config.json` and in its credential helper).

use anyhow::{Context, Result};
use clap::Args;
use kiln_registry::credentials::{DockerConfig, default_config_dir};

use crate::Exit;
use crate::commands::login::server_host;
use crate::humanize::outln;

/// Arguments of `kiln logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host [default: docker.io]
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

pub fn run(args: &LogoutArgs) -> Result<Exit> {
    let host = server_host(args.server.as_deref());
    let mut config = DockerConfig::load(&default_config_dir())?;
    let removed = config
        .erase(&host)
        .with_context(|| format!("removing the credentials of {host}"))?;
    if removed {
        outln!("Removing login credentials for {host}");
    } else {
        outln!("Not logged in to {host}");
    }
    Ok(Exit::SUCCESS)
}
