//! The interactive shell: a line editor on its own thread, each command run on the node's
//! runtime until it ends or the user presses Ctrl-C, which cancels that command and nothing
//! else. Lines are split as a POSIX shell splits them ([`words`]), checked against one table
//! of commands ([`commands`]) that also gives usage lines and "did you mean", and Tab
//! completes from the same table and the local file system ([`complete`]).
//!
//! Keys typed while a command runs stay in the terminal's buffer (the editor reads only
//! inside `readline`, and keeps what it read past the end of a line for the next one), so
//! type-ahead runs next. A Ctrl-C during a command is a SIGINT, which the terminal answers
//! by discarding type-ahead, as every shell's terminal does.

mod commands;
mod complete;
mod words;

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;

use chord_p2p::chord::Id;
use chord_p2p::files::{folder, ops, ticket, Files};
use chord_p2p::net::parse_target;
use chord_p2p::node::{leave_informed, NodeHandle};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Editor};
use serde_json::json;

use super::local::{default_folder_name, input_kind};
use super::report::{self, Usage};
use super::{default_name, emit, output, output_path, with_progress};
use commands::{Command, Mistake};

/// What the shell works on.
pub struct ShellNode {
    pub handle: NodeHandle,
    pub files: Option<Files>,
}

const PROMPT: &str = "chord> ";

/// What Ctrl-C at the prompt says: it stops nothing there, so tell how to leave.
const CTRL_C_HINT: &str =
    "(Ctrl-C cancels a running command; to leave the ring type quit or press Ctrl-D)";

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
///
/// From its start the shell owns SIGINT (Ctrl-C): the caller must not treat SIGINT as "stop
/// the node" while the shell runs, only SIGTERM.
pub fn run(shell: ShellNode, runtime: tokio::runtime::Handle, json: bool) -> Exit {
    take_over_ctrl_c(&runtime);
    let config = rustyline::Config::builder()
        .completion_type(CompletionType::List)
        .build();
    let mut editor = match Editor::<complete::ShellHelper, DefaultHistory>::with_config(config) {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("error: cannot start the shell: {e}");
            return Exit::Quit;
        }
    };
    // A home folder that is not UTF-8 cannot be spliced into words; `~` then stays as typed.
    let home = dirs::home_dir().and_then(|h| h.to_str().map(String::from));
    editor.set_helper(Some(complete::ShellHelper::new(home.clone())));
    let session = Session {
        node: shell.handle,
        files: shell.files,
        runtime,
        json,
    };
    emit("type 'help' for commands");
    loop {
        let line = match editor.readline(PROMPT) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                // At the prompt Ctrl-C is a key, not a signal: say how to leave, like Python.
                eprintln!("{CTRL_C_HINT}");
                continue;
            }
            Err(ReadlineError::Eof) => {
                // Ctrl-D leaves the cursor after the prompt; what follows starts a line (on
                // stderr, so `--json` output stays one object a line).
                eprintln!();
                return Exit::Quit;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Quit;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        let words = match words::split(&line, home.as_deref()) {
            Ok(words) => words,
            Err(e) => {
                session.fail(Usage(e.to_string()).into());
                continue;
            }
        };
        match commands::parse(&words) {
            Ok(Some(command)) => {
                if let Some(exit) = session.run(command) {
                    return exit;
                }
            }
            Ok(None) => {}
            Err(mistake) => session.mistake(&mistake),
        }
    }
}

/// Installs the runtime's SIGINT handler now, before any command runs. Until then SIGINT's
/// default action ends the process; once installed (tokio never removes it) SIGINT only wakes
/// whoever listens, which is a running command's [`Session::interruptible`] and nobody else.
fn take_over_ctrl_c(runtime: &tokio::runtime::Handle) {
    let _context = runtime.enter();
    #[cfg(unix)]
    if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        tracing::warn!("cannot watch Ctrl-C; it will stop the node: {e}");
    }
}

/// Resolves on the next Ctrl-C; never if it cannot be watched.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

struct Session {
    node: NodeHandle,
    files: Option<Files>,
    runtime: tokio::runtime::Handle,
    json: bool,
}

impl Session {
    /// Runs `work` on the node's runtime until it ends (`Some`) or Ctrl-C cancels it (`None`,
    /// the work dropped where it stood). A new listener per command: a Ctrl-C pressed before
    /// this one started is not held against it.
    fn interruptible<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        self.runtime.block_on(async {
            tokio::select! {
                out = work => Some(out),
                () = ctrl_c() => None,
            }
        })
    }

    fn cancelled(&self, command: &str, hint: &str) {
        if self.json {
            emit(json!({"event": "cancelled", "command": command}));
        } else {
            // The terminal echoed ^C where the cursor was; start a line of our own.
            eprintln!("\ncancelled{hint}");
        }
    }

    fn fail(&self, e: anyhow::Error) {
        report::failure(&e, self.json);
    }

    /// A line that asks for nothing the shell can do: one error line, then the usage line.
    fn mistake(&self, mistake: &Mistake) {
        match (mistake.usage(), self.json) {
            (Some(usage), true) => self.fail(Usage(format!("{mistake}; usage: {usage}")).into()),
            (Some(usage), false) => eprintln!("error: {mistake}\nusage: {usage}"),
            (None, _) => self.fail(Usage(mistake.to_string()).into()),
        }
    }

    fn show(&self, json: impl FnOnce() -> serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            emit(json());
        } else {
            emit(text());
        }
    }

    /// Runs one command; `Some` when the shell should end.
    fn run(&self, command: Command) -> Option<Exit> {
        let node = &self.node;
        match command {
            Command::Quit => return Some(Exit::Quit),
            Command::Help(None) => emit(commands::help()),
            Command::Help(Some(name)) => match commands::help_for(&name) {
                Ok(text) => emit(text),
                Err(mistake) => self.mistake(&mistake),
            },
            Command::Leave => {
                // Not cancellable: half a leave (files handed over, neighbours not told) helps
                // nobody, and it is bounded (hand-off budget, then one round of messages).
                let service = self.files.as_ref().map(|f| f as _);
                match self.runtime.block_on(leave_informed(node, service)) {
                    Ok(left) => {
                        emit(output::left(&left, self.json));
                        return Some(Exit::Left);
                    }
                    Err(e) => self.fail(e.into()),
                }
            }
            Command::Join(addr) => match parse_target(&addr) {
                Err(e) => self.fail(e.into()),
                Ok(target) => match self.interruptible(node.join(target)) {
                    // Only the wait can be cancelled: once the ring has taken the join up, the
                    // node finishes it on its own.
                    None => self.cancelled(
                        "join",
                        "; see status: a join the ring already took up may still complete",
                    ),
                    Some(Err(e)) => self.fail(e.into()),
                    Some(Ok(succ)) => self.show(
                        || json!({"event": "joined", "successor": output::node_json(&succ)}),
                        || format!("joined; successor {}", succ.addr.peer_id),
                    ),
                },
            },
            Command::Lookup(name) => {
                match self.interruptible(node.lookup(Id::hash(name.as_bytes()))) {
                    None => self.cancelled("lookup", ""),
                    Some(Err(e)) => self.fail(e.into()),
                    Some(Ok(r)) => self.show(
                        || output::lookup_json(&name, &r),
                        || output::lookup_text(&name, &r),
                    ),
                }
            }
            Command::Status | Command::Successors | Command::Fingers => {
                match self.interruptible(node.status()) {
                    None => self.cancelled("status", ""),
                    Some(Err(e)) => self.fail(e.into()),
                    Some(Ok(report)) => self.show(
                        || output::status_json(&report),
                        || match command {
                            Command::Status => output::status_text(&report),
                            Command::Successors => output::successors_text(&report),
                            _ => output::fingers_text(&report),
                        },
                    ),
                }
            }
            Command::Put { file, name } => self.put(PathBuf::from(file), name),
            Command::Get { name, out, force } => self.get(&name, out.map(PathBuf::from), force),
            Command::Files => {
                if let Some(files) = self.files() {
                    let list = files.list();
                    self.show(|| output::files_json(&list), || output::files_text(&list));
                }
            }
            Command::Rm(name) => {
                if let Some(files) = self.files() {
                    let access = files.access();
                    match self.interruptible(ops::remove(&access, &name)) {
                        None => self.cancelled("rm", ""),
                        Some(Err(e)) => self.fail(e.into()),
                        Some(Ok(copies)) => emit(output::removed(&name, copies, self.json)),
                    }
                }
            }
        }
        None
    }

    fn files(&self) -> Option<&Files> {
        if self.files.is_none() {
            self.fail(anyhow::anyhow!("this node keeps no files"));
        }
        self.files.as_ref()
    }

    /// `put FILE|DIR [NAME]`, checked as the one-shot `put` checks it: a folder is shared
    /// (every file, then its manifest), and both print a ticket.
    fn put(&self, file: PathBuf, name: Option<String>) {
        let is_dir = match input_kind(&file) {
            Ok(is_dir) => is_dir,
            Err(e) => return self.fail(e),
        };
        let default = if is_dir {
            default_folder_name(&file)
        } else {
            default_name(&file)
        };
        let name = match name.map_or(default, Ok) {
            Ok(name) => name,
            Err(e) => return self.fail(e),
        };
        let Some(files) = self.files() else { return };
        let access = files.access();
        let (access, file, name) = (&access, &file, &name);
        if is_dir {
            let work = with_progress(self.json, |tick| async move {
                let report = folder::upload_folder(access, file, name, Some(&*tick)).await?;
                let ticket = ticket::for_name(access, &report.name).await.encode();
                Ok::<_, folder::FolderError>((report, ticket))
            });
            return match self.interruptible(work) {
                None => self.cancelled("put", ""),
                Some(Err(e)) => self.fail(e.into()),
                Some(Ok((report, ticket))) => self.show(
                    || output::folder_put_json(&report, &ticket),
                    || output::folder_put_text(&report, &ticket),
                ),
            };
        }
        let work = with_progress(self.json, |tick| async move {
            let report = ops::upload(access, file, name, Some(&*tick)).await?;
            let ticket = ticket::for_name(access, &report.name).await.encode();
            Ok::<_, chord_p2p::files::FilesError>((report, ticket))
        });
        match self.interruptible(work) {
            None => self.cancelled("put", ""),
            Some(Err(e)) => self.fail(e.into()),
            Some(Ok((report, ticket))) => self.show(
                || output::with_ticket(output::put_json(&report), &ticket),
                || {
                    format!(
                        "{}\n{}",
                        output::put_text(&report),
                        output::ticket_text(&ticket)
                    )
                },
            ),
        }
    }

    /// `get NAME [OUT] [--force]`: the output path is checked before the ring is asked.
    fn get(&self, name: &str, out: Option<PathBuf>, force: bool) {
        let out = match output_path(name, out, force) {
            Ok(out) => out,
            Err(e) => return self.fail(e),
        };
        let Some(files) = self.files() else { return };
        let access = files.access();
        let (access, out_ref) = (&access, &out);
        let work = with_progress(self.json, |tick| async move {
            ops::download(access, name, out_ref, Some(&*tick)).await
        });
        match self.interruptible(work) {
            None => self.cancelled("get", "; the same get resumes where this one stopped"),
            Some(Err(e)) => self.fail(e.into()),
            Some(Ok(report)) => {
                self.show(|| output::get_json(&report), || output::get_text(&report))
            }
        }
    }
}
