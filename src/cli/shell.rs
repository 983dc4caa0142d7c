//! The interactive shell: a line editor on its own thread, each command run on the node.

use std::io::IsTerminal;

use chord_p2p::chord::Id;
use chord_p2p::net::parse_target;
use chord_p2p::node::NodeHandle;
use rustyline::error::ReadlineError;

use super::output;

const HELP: &str = "commands:
  join ADDR      join the ring of ADDR (multiaddr, IP:PORT or host:PORT)
  leave          leave the ring (informed) and stop this node
  lookup NAME    find the node responsible for NAME
  status         predecessor, successors and fingers of this node
  successors     this node's successor list
  fingers        this node's finger table
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
pub fn run(node: NodeHandle, runtime: tokio::runtime::Handle, json: bool) -> Exit {
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
            ("leave", []) => match runtime.block_on(node.leave()) {
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
            _ => println!("unknown command '{line}'\n{HELP}"),
        }
    }
}
