//! The interactive shell: a line editor on its own thread, each command run on the node.

use std::io::IsTerminal;

use chord_p2p::chord::Id;
use chord_p2p::files::{ops, Files};
use chord_p2p::net::parse_target;
use chord_p2p::node::{leave_informed, NodeHandle};
use rustyline::error::ReadlineError;

use super::{default_name, output, output_path, with_progress};

/// What the shell works on.
pub struct ShellNode {
    pub handle: NodeHandle,
    pub files: Option<Files>,
}

const HELP: &str = "commands:
  join ADDR      join the ring of ADDR (multiaddr, IP:PORT or host:PORT)
  leave          leave the ring (informed) and stop this node
  lookup NAME    find the node responsible for NAME
  status         predecessor, successors and fingers of this node
  successors     this node's successor list
  fingers        this node's finger table
  put FILE [NAME]  put a local file on the ring (default name: the file's name)
  get NAME [OUT]   get a file from the ring (default: the name's last part, here)
  files          the files this node holds
  rm NAME        remove every copy of a file you put
  help           this text
  quit           leave the ring and exit (also Ctrl-D, Ctrl-C)";

/// Whether the shell should run: only with a person at a terminal.
pub fn wanted() -> bool {
    std::io::stdin().is_terminal()
}

/// What a shell session ended with.
pub enum Exit {
    /// The user asked to quit: the caller leaves the ring.
    Quit,
    /// The node already left (the `leave` command).
    Left,
}

/// Runs the shell until the user quits. Blocking: call it on a thread of its own.
pub fn run(shell: ShellNode, runtime: tokio::runtime::Handle, json: bool) -> Exit {
    let node = shell.handle.clone();
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("error: cannot start the shell: {e}");
            return Exit::Quit;
        }
    };
    println!("type 'help' for commands");
    loop {
        let line = match editor.readline("chord> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => return Exit::Quit,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Quit;
            }
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        match (command, rest.as_slice()) {
            ("quit" | "exit", []) => return Exit::Quit,
            ("help", _) => println!("{HELP}"),
            ("leave", []) => match runtime
                .block_on(leave_informed(&node, shell.files.as_ref().map(|f| f as _)))
            {
                Ok(()) => {
                    println!("left the ring");
                    return Exit::Left;
                }
                Err(e) => eprintln!("error: {e}"),
            },
            ("join", [addr]) => match parse_target(addr) {
                Err(e) => eprintln!("error: {e}"),
                Ok(target) => match runtime.block_on(node.join(target)) {
                    Ok(succ) if json => println!(
                        "{}",
                        serde_json::json!({"event": "joined", "successor": output::node_json(&succ)})
                    ),
                    Ok(succ) => println!("joined; successor {}", succ.addr.peer_id),
                    Err(e) => eprintln!("error: {e}"),
                },
            },
            ("lookup", [_, ..]) => {
                let name = rest.join(" ");
                match runtime.block_on(node.lookup(Id::hash(name.as_bytes()))) {
                    Ok(r) if json => println!("{}", output::lookup_json(&name, &r)),
                    Ok(r) => println!("{}", output::lookup_text(&name, &r)),
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            ("status" | "successors" | "fingers", []) => match runtime.block_on(node.status()) {
                Ok(report) if json => println!("{}", output::status_json(&report)),
                Ok(report) => match command {
                    "status" => println!("{}", output::status_text(&report)),
                    "successors" => println!("{}", output::successors_text(&report)),
                    _ => println!("{}", output::fingers_text(&report)),
                },
                Err(e) => eprintln!("error: {e}"),
            },
            ("put" | "get" | "files" | "rm", _) => match &shell.files {
                Some(files) => {
                    if let Err(e) = runtime.block_on(file_command(files, command, &rest, json)) {
                        eprintln!("error: {e:#}");
                    }
                }
                None => eprintln!("error: this node keeps no files"),
            },
            _ => println!("unknown command '{line}'\n{HELP}"),
        }
    }
}

async fn file_command(
    files: &Files,
    command: &str,
    args: &[&str],
    json: bool,
) -> anyhow::Result<()> {
    let access = files.access();
    match (command, args) {
        ("put", [file, rest @ ..]) => {
            let path = std::path::Path::new(file);
            let name = if rest.is_empty() {
                default_name(path)?
            } else {
                rest.join(" ")
            };
            let access = &access;
            let name = &name;
            let report = with_progress(json, |tick| async move {
                ops::upload(access, path, name, Some(&*tick)).await
            })
            .await?;
            println!(
                "{}",
                if json {
                    output::put_json(&report).to_string()
                } else {
                    output::put_text(&report)
                }
            );
        }
        ("get", [name]) | ("get", [name, _]) => {
            let out = output_path(name, args.get(1).map(std::path::PathBuf::from), false)?;
            let (access, out) = (&access, &out);
            let report = with_progress(json, |tick| async move {
                ops::download(access, name, out, Some(&*tick)).await
            })
            .await?;
            println!(
                "{}",
                if json {
                    output::get_json(&report).to_string()
                } else {
                    output::get_text(&report)
                }
            );
        }
        ("files", []) => {
            let list = files.list();
            println!(
                "{}",
                if json {
                    output::files_json(&list).to_string()
                } else {
                    output::files_text(&list)
                }
            );
        }
        ("rm", [_, ..]) => {
            let name = args.join(" ");
            let copies = ops::remove(&access, &name).await?;
            println!("{}", output::removed(&name, copies, json));
        }
        _ => println!("{HELP}"),
    }
    Ok(())
}
