//! The command-line edge: parse, run a node or a one-shot client, print.

pub mod args;
mod ask;
mod local;
mod node;
mod oneshot;
mod output;
mod progress;
pub mod report;
mod shell;

use std::io::Write;

use anyhow::{Context, Result};

use args::{Cli, Command};
use ask::Ask;
pub(crate) use local::{default_name, output_path};
use node::run_node;
use oneshot::{get, get_range, lookup, ls, ls_ring, put, rm, status};
pub(crate) use progress::with_progress;

/// Prints one line on stdout. A closed stdout (`| head`) is not an error worth a panic.
pub fn emit(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

pub async fn run(cli: Cli) -> Result<()> {
    let json = cli.node.output.json;
    match cli.command {
        Some(Command::Lookup { name, client }) => lookup(&name, &Ask::new(&client), json).await,
        Some(Command::Status { client }) => status(&Ask::new(&client), json).await,
        Some(Command::Put {
            file,
            name,
            rate,
            client,
            sign,
            wait,
        }) => {
            put(
                &file,
                name,
                rate,
                &Ask::new(&client).sign(&sign).wait(wait),
                json,
            )
            .await
        }
        Some(Command::Get {
            name,
            output,
            force,
            range: Some((first, last)),
            client,
            wait,
            ..
        }) => {
            let ask = Ask::new(&client).wait(wait);
            get_range(&name, (first, last), output, force, &ask, json).await
        }
        Some(Command::Get {
            name,
            output,
            force,
            rate,
            client,
            wait,
            range: None,
        }) => {
            get(
                &name,
                output,
                force,
                rate,
                &Ask::new(&client).wait(wait),
                json,
            )
            .await
        }
        Some(Command::Ls {
            ring: false,
            client,
            ..
        }) => ls(&Ask::new(&client), json).await,
        Some(Command::Ls {
            ring: true,
            max_members,
            client,
        }) => ls_ring(&Ask::new(&client), max_members, json).await,
        Some(Command::Rm { name, client, sign }) => {
            rm(&name, &Ask::new(&client).sign(&sign), json).await
        }
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "chord-p2p", &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Man) => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command)
                .render(&mut std::io::stdout())
                .context("cannot write the manual page")
        }
        None => run_node(cli.ip.zip(cli.port), cli.node).await,
    }
}

pub(crate) fn usage(text: String) -> anyhow::Error {
    report::Usage(text).into()
}
