//! The interactive shell as a person meets it: the real binary in a pseudo-terminal (the
//! shell only starts on a terminal), one node on 127.0.0.1 per test. Each test is one of the
//! stumbles of issue 10 that must not happen again. Every wait has a deadline (the session's
//! timeout), and every node is killed when its guard drops, pass or fail.

#![cfg(unix)]

mod common;

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::procs::{isolated, oneshot, BIN};
use rexpect::process::WaitStatus;
use rexpect::session::{spawn_with_options, Options, PtySession};

/// How long one expected output may take: generous, a loaded CI machine runs many nodes.
const WAIT_MS: u64 = 20_000;

/// A node with its shell in a pseudo-terminal, and its data dir.
struct Shell {
    pty: PtySession,
    _data: tempfile::TempDir,
    marks: u32,
}

impl Shell {
    /// A node on a random QUIC port; `home` becomes its $HOME when given.
    fn start(home: Option<&Path>) -> Shell {
        let data = tempfile::tempdir().expect("tempdir");
        let mut command = isolated(BIN);
        command
            .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
            .args(["--data-dir", data.path().to_str().expect("utf-8")])
            .args(["--stabilize-interval", "100ms", "--rpc-timeout", "1s"])
            .current_dir(data.path())
            // The editor needs a terminal type it knows to read keys (Tab) itself.
            .env("TERM", "xterm")
            .env_remove("RUST_LOG");
        if let Some(home) = home {
            command.env("HOME", home);
        }
        let options = Options::new()
            .timeout_ms(Some(WAIT_MS))
            .strip_ansi_escape_codes(true);
        let mut pty = spawn_with_options(command, options).expect("the binary starts in a pty");
        // On drop: SIGTERM (an informed leave), then SIGKILL if it takes longer than this.
        pty.process_mut().set_kill_timeout(Some(6_000));
        let mut shell = Shell {
            pty,
            _data: data,
            marks: 0,
        };
        shell.expect("type 'help' for commands");
        shell.expect("chord> ");
        shell
    }

    /// Waits for `text`; returns what came before it.
    fn expect(&mut self, text: &str) -> String {
        match self.pty.exp_string(text) {
            Ok(before) => before,
            Err(e) => panic!("waiting for {text:?}: {e}"),
        }
    }

    fn send(&mut self, keys: &str) {
        self.pty.send(keys).expect("write to the pty");
        self.pty.flush().expect("flush the pty");
    }

    fn line(&mut self, line: &str) {
        self.send(&format!("{line}\r"));
    }

    /// Types `line` and returns what the shell printed until `until`.
    fn run(&mut self, line: &str, until: &str) -> String {
        self.line(line);
        self.expect(until)
    }

    /// Everything printed from here until the shell has read one more line: a line of its
    /// own, whose answer ("unknown command 'mark-N'") nothing else prints.
    fn rest(&mut self) -> String {
        self.marks += 1;
        let mark = format!("mark-{}", self.marks);
        self.line(&mark);
        self.expect(&format!("unknown command '{mark}'"))
    }

    fn alive(&self) -> bool {
        matches!(self.pty.process().status(), Some(WaitStatus::StillAlive))
    }
}

/// A TCP port on 127.0.0.1 that accepts connections and never says a word: a `join` to it
/// hangs in the handshake until the node's own timeout.
struct Silent {
    listener: TcpListener,
    held: Vec<TcpStream>,
}

impl Silent {
    fn new() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        Silent {
            listener,
            held: Vec::new(),
        }
    }

    fn addr(&self) -> String {
        let port = self.listener.local_addr().expect("local addr").port();
        format!("/ip4/127.0.0.1/tcp/{port}")
    }

    /// Waits until the node has connected: from then on its command is running.
    fn wait_for_dial(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.held.push(stream);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the node never dialed");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

/// A file of `size` pseudo-random bytes.
fn make_file(path: &Path, seed: &str, size: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut bytes);
    std::fs::write(path, &bytes).expect("write");
    bytes
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn quoted_and_escaped_paths_with_spaces_are_put_and_fetched_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = utf8(dir.path());
    let thesis = make_file(&dir.path().join("my thesis.pdf"), "thesis", 200_000);
    let notes = make_file(&dir.path().join("other notes.txt"), "notes", 1_000);
    std::fs::create_dir(dir.path().join("back up")).expect("mkdir");
    let mut sh = Shell::start(None);

    sh.run(
        &format!("put \"{d}/my thesis.pdf\""),
        "stored my thesis.pdf (",
    );
    sh.run(
        &format!("put {d}/other\\ notes.txt 'notes, v2'"),
        "stored notes, v2 (",
    );
    let out = sh.run("lookup \"notes, v2\"", "hops");
    assert!(out.contains("notes, v2\r\n  key"), "{out}");

    let copy = dir.path().join("back up").join("copy of thesis.pdf");
    let line = format!("get 'my thesis.pdf' \"{d}/back up/copy of thesis.pdf\"");
    sh.run(&line, "got my thesis.pdf (");
    assert_eq!(std::fs::read(&copy).expect("the copy"), thesis);

    // A folder as OUT: the file goes inside it, under the name's last part.
    sh.run(&format!("get notes,\\ v2 {d}/back\\ up"), "got notes, v2 (");
    let inside = dir.path().join("back up").join("notes, v2");
    assert_eq!(std::fs::read(&inside).expect("the copy"), notes);

    // The same get again refuses to replace the copy, unless --force.
    let out = sh.run(&line, "pass --force to replace it");
    assert!(out.contains("already exists"), "{out}");
    sh.run(&format!("{line} --force"), "got my thesis.pdf (");
    assert_eq!(std::fs::read(&copy).expect("the copy"), thesis);

    // An unclosed quote is one clear line, not a command with half a path.
    let out = sh.run(&format!("put \"{d}/my thesis.pdf"), "close it with \"");
    assert!(
        out.contains("error: the line ends inside a \"-quote"),
        "{out}"
    );
}

#[test]
fn tilde_is_the_home_folder_unless_quoted() {
    let home = tempfile::tempdir().expect("tempdir");
    let notes = make_file(&home.path().join("notes.txt"), "home notes", 5_000);
    let mut sh = Shell::start(Some(home.path()));

    sh.run("put ~/notes.txt", "stored notes.txt (");
    sh.run("get notes.txt ~/copy.txt", "got notes.txt (");
    assert_eq!(
        std::fs::read(home.path().join("copy.txt")).expect("the copy"),
        notes
    );
    let out = sh.run("put \"~/notes.txt\"", "cannot read ~/notes.txt");
    assert!(out.contains("error: "), "{out}");
}

#[test]
fn tab_completes_commands_and_local_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = utf8(dir.path());
    make_file(&dir.path().join("my thesis.pdf"), "tab", 3_000);
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    make_file(&dir.path().join("sub").join("only.txt"), "tab2", 100);
    let mut sh = Shell::start(None);

    // "loo" Tab is "lookup " (the space too); the name follows.
    sh.send("loo\t");
    sh.send("tabbed\r");
    let out = sh.expect("hops");
    assert!(out.contains("tabbed\r\n  key"), "{out}");

    // A path with a space completes escaped, so the put gets the whole of it.
    sh.send(&format!("put {d}/my\t"));
    sh.send("\r");
    sh.expect("stored my thesis.pdf (");

    // Inside quotes it stays quoted; a folder completes to its '/', Tab again goes inside.
    sh.send(&format!("put \"{d}/su\t"));
    sh.send("\t\r");
    sh.expect("stored only.txt (");

    // `help` completes command names too; the put above left nothing else waiting.
    sh.send("help ge\t\r");
    let out = sh.expect("usage: get NAME [OUT] [--force]");
    assert!(!out.contains("error"), "{out}");
}

#[test]
fn ctrl_c_cancels_the_running_command_not_the_node() {
    let mut silent = Silent::new();
    let mut sh = Shell::start(None);

    let addr = silent.addr();
    sh.line(&format!("join {addr}"));
    silent.wait_for_dial();
    std::thread::sleep(Duration::from_millis(200));
    sh.pty.send_control('c').expect("Ctrl-C");
    sh.expect("cancelled");
    sh.expect("chord> ");
    assert!(sh.alive(), "Ctrl-C stopped the node");
    let out = sh.run("status", "predecessor");
    assert!(!out.contains("stopped"), "{out}");

    // At the prompt Ctrl-C is no way out either: it says what is.
    sh.pty.send_control('c').expect("Ctrl-C");
    sh.expect("type quit or press Ctrl-D");
    sh.run("status", "predecessor");
    assert!(sh.alive(), "Ctrl-C at the prompt stopped the node");

    // Ctrl-D quits (an informed leave), and the process ends.
    sh.pty.send_control('d').expect("Ctrl-D");
    sh.pty.exp_eof().expect("the node exits after Ctrl-D");
}

#[test]
fn lines_typed_while_a_command_runs_are_kept() {
    let mut silent = Silent::new();
    let mut sh = Shell::start(None);

    let addr = silent.addr();
    sh.line(&format!("join {addr}"));
    silent.wait_for_dial();
    // The join hangs in its handshake: type two commands and half a third ahead, then let
    // the join fail.
    sh.line("lookup typed-ahead");
    sh.line("status");
    sh.send("lookup half-");
    std::thread::sleep(Duration::from_millis(300));
    drop(silent);

    let out = sh.expect("typed-ahead\r\n  key");
    assert!(
        out.contains("error: "),
        "the join should have failed first: {out}"
    );
    sh.expect("hops");
    sh.expect("predecessor");
    // The half line waits at the prompt to be finished.
    sh.line("typed");
    sh.expect("half-typed\r\n  key");
}

#[test]
fn missing_or_extra_arguments_get_a_usage_line() {
    let mut sh = Shell::start(None);

    let out = sh.run("lookup", "usage: lookup NAME");
    assert!(out.contains("error: lookup needs a NAME"), "{out}");
    assert!(!out.contains("unknown command"), "{out}");

    let mut out = sh.run("put", "usage: put FILE [NAME]");
    out += &sh.rest();
    assert!(out.contains("error: put needs a FILE"), "{out}");
    assert!(!out.contains("commands:"), "no help dump: {out}");

    let out = sh.run("lookup a b c", "usage: lookup NAME");
    assert!(out.contains("2 arguments too many"), "{out}");
    assert!(out.contains("lookup 'a b c'"), "{out}");
    sh.run("lookup 'a b c'", "a b c\r\n  key");

    let out = sh.run("status now", "usage: status");
    assert!(out.contains("status takes no arguments"), "{out}");
}

#[test]
fn near_misses_get_did_you_mean() {
    let mut sh = Shell::start(None);

    sh.run(
        "lokup x",
        "error: unknown command 'lokup'; did you mean 'lookup'?",
    );
    sh.run("stauts", "did you mean 'status'?");
    sh.run("ls", "did you mean 'files'?");
    sh.run(
        "frobnicate",
        "unknown command 'frobnicate'; type 'help' for the commands",
    );
}

#[test]
fn a_folder_put_from_the_shell_is_shared_with_a_ticket() {
    let home = tempfile::tempdir().expect("tempdir");
    let tree = home.path().join("trip photos");
    std::fs::create_dir_all(tree.join("day 1")).expect("mkdir");
    let a = make_file(&tree.join("day 1").join("beach.jpg"), "beach", 40_000);
    let b = make_file(&tree.join("notes.txt"), "notes", 3_000);
    let mut sh = Shell::start(Some(home.path()));
    sh.run("put ~/trip\\ photos", "shared folder trip photos/ (2 files");
    let out = sh.expect("chord> ");
    let ticket = out
        .split_whitespace()
        .find(|w| w.starts_with("chord:"))
        .expect("a ticket")
        .to_string();
    // Anyone with the ticket gets the folder, no --peer needed.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let target = elsewhere.path().join("copy");
    let got = oneshot(&["get", &ticket, "-o", utf8(&target)]);
    assert!(got.status.success(), "{got:?}");
    assert_eq!(
        std::fs::read(target.join("day 1").join("beach.jpg")).expect("a"),
        a
    );
    assert_eq!(std::fs::read(target.join("notes.txt")).expect("b"), b);
}
