//! `kiln login [-u USER] [-p PASS | --password-stdin] [SERVER]`: check the
//! credentials with the registry, then keep them where docker does
//! (`config.json` or its credential helper).

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_registry::credentials::{DockerConfig, default_config_dir};
use kiln_registry::{Credential, Registry};

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::humanize::outln;
use crate::registry_glue::{RegistryArgs, runtime};

/// Arguments of `kiln login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host [default: docker.io]
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
    /// User name
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users of this machine; prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `https://host:5000/v1/` → `host:5000`, Docker Hub's names → `docker.io`.
pub fn server_host(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io").trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "" => "docker.io".to_owned(),
        h => h.to_owned(),
    }
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn prompt_hidden(label: &str) -> Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let old = tcgetattr(&stdin).context("reading terminal settings")?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning off echo")?;
    let r = prompt(label);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &old);
    eprintln!();
    r
}

pub fn run(global: &GlobalArgs, args: &LoginArgs) -> Result<Exit> {
    let host = server_host(args.server.as_deref());
    let tty = std::io::stdin().is_terminal();
    let mut config = DockerConfig::load(&default_config_dir())?;
    let username = match &args.username {
        Some(u) => u.clone(),
        None if tty && !args.password_stdin => prompt("Username: ")?,
        None => bail!("`kiln login` needs a user name: give -u USER"),
    };
    if username.is_empty() {
        bail!("the user name is empty");
    }
    let password = if args.password_stdin {
        let mut p = String::new();
        std::io::stdin()
            .read_to_string(&mut p)
            .context("reading the password from stdin")?;
        p.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Some(p) = &args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p.clone()
    } else if tty {
        prompt_hidden("Password: ")?
    } else {
        bail!("`kiln login` needs a password: use --password-stdin (or run it on a terminal)");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let credential = Credential::basic(username, password);
    let mut opts = args.registry.options(global, &host)?;
    opts.credential = Some(credential.clone());
    let registry = Registry::new(&host, opts)?;
    runtime()?
        .block_on(registry.check_login())
        .with_context(|| format!("logging in to {host}"))?;
    config
        .store(&host, &credential)
        .with_context(|| format!("saving the credentials in {}", config.path().display()))?;
    outln!("Login Succeeded");
    Ok(Exit::SUCCESS)
}
