//! The binary as separate processes: spawning nodes, running one-shot commands, reading their
//! output, and measuring their peak memory. Every process is killed when its guard drops.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chord_p2p::chord::Id;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_chord-p2p");

/// Ring timing for node processes: quick stabilization, failures noticed within a second.
pub const RING_FLAGS: &[&str] = &[
    "--successors",
    "4",
    "--stabilize-interval",
    "100ms",
    "--rpc-timeout",
    "1s",
];

/// The path of a built example (`cargo test` builds the examples next to the tests).
pub fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the whole suite with `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// A command for the binary (or a wrapper of it) whose per-user files (a one-shot client's
/// default identity) go to a directory of the tests', not the user's home.
pub fn isolated(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env(
        "XDG_CONFIG_HOME",
        std::env::temp_dir().join("chord-p2p-tests-config"),
    );
    command.env(
        "XDG_DATA_HOME",
        std::env::temp_dir().join("chord-p2p-tests-data"),
    );
    // A default peer of the person running the tests must not leak in.
    command.env_remove("CHORD_PEER");
    command
}

/// A node process, killed (if still running) when the guard drops, pass or fail.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl Proc {
    /// A node with its own data dir, [`RING_FLAGS`] and `args`.
    pub fn spawn(args: &[&str]) -> Proc {
        let mut all = args.to_vec();
        all.extend_from_slice(RING_FLAGS);
        Proc::spawn_in(&[], &all)
    }

    /// A node with its own data dir and `args`, run through `wrapper` (e.g. `ip netns exec
    /// NS`) when it is not empty.
    pub fn spawn_in(wrapper: &[&str], args: &[&str]) -> Proc {
        Proc::spawn_in_dir(tempfile::tempdir().expect("tempdir"), wrapper, args)
    }

    /// The same with a data dir prepared beforehand (removed when the guard drops).
    pub fn spawn_in_dir(dir: tempfile::TempDir, wrapper: &[&str], args: &[&str]) -> Proc {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = isolated(program);
                c.args(rest).arg(BIN);
                c
            }
            None => isolated(BIN),
        };
        let mut child = command
            .args(args)
            .args(["--data-dir", dir.path().to_str().expect("utf-8 path")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines, dir }
    }

    /// A headless node with `--json` output; returns it with its first listen address.
    pub fn node(args: &[&str]) -> (Proc, String) {
        let mut all = args.to_vec();
        all.extend_from_slice(RING_FLAGS);
        Proc::node_in(&[], &all)
    }

    /// [`Proc::node`] through a wrapper, without the default ring flags.
    pub fn node_in(wrapper: &[&str], args: &[&str]) -> (Proc, String) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let p = Proc::spawn_in(wrapper, &all);
        let first: Value =
            serde_json::from_str(&p.line(Duration::from_secs(20))).expect("json line");
        assert_eq!(first["event"], "listening", "{first}");
        let addr = first["addr"].as_str().expect("addr").to_string();
        if args.contains(&"--join") {
            // Skip further listen lines until the join is reported.
            loop {
                let v: Value =
                    serde_json::from_str(&p.line(Duration::from_secs(30))).expect("json line");
                if v["event"] == "joined" {
                    break;
                }
                assert_eq!(v["event"], "listening", "{v}");
            }
        }
        (p, addr)
    }

    /// The next stdout line, within `limit`.
    pub fn line(&self, limit: Duration) -> String {
        self.lines
            .recv_timeout(limit)
            .expect("expected a line on stdout")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the node keeps its files.
    pub fn files_dir(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    /// Waits for exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: a crash nobody is told about.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        peak_rss_of(self.pid()).expect("process alive")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmHWM of a live process, in bytes.
pub fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs a one-shot command to completion (bounded by its own --timeout).
pub fn oneshot(args: &[&str]) -> Output {
    isolated(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("binary runs")
}

/// Runs a one-shot command that must succeed and print one JSON object.
pub fn oneshot_json(args: &[&str]) -> Value {
    let out = oneshot(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    result_json(&out.stdout)
}

/// The result of a `--json` command: its last line. Transfers print progress events
/// (`{"event":"progress",…}`) before it; nothing else may come first.
pub fn result_json(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (last, before) = lines.split_last().expect("a JSON line on stdout");
    for line in before {
        let v: Value = serde_json::from_str(line).expect("JSON lines");
        assert_eq!(
            v["event"], "progress",
            "unexpected line before the result: {line}"
        );
    }
    serde_json::from_str(last).expect("one JSON object last")
}

/// Runs the binary expecting failure; returns stderr, which must be one clear `error:` line.
pub fn fails(args: &[&str]) -> String {
    let out = oneshot(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        stderr.starts_with("error:"),
        "{args:?}: unclear error {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    stderr
}

/// A one-shot command running in the background, killed when the guard drops.
pub struct Background {
    pub child: Child,
}

impl Background {
    pub fn spawn(args: &[&str]) -> Background {
        let child = isolated(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary starts");
        Background { child }
    }

    /// Waits for the command (at most `limit`) and returns its output and its peak resident
    /// memory in bytes, as the kernel accounted it at exit.
    pub fn finish(mut self, limit: Duration) -> (Output, u64) {
        let mut stdout = self.child.stdout.take().expect("piped");
        let mut stderr = self.child.stderr.take().expect("piped");
        let out_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let err_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        let pid = self.child.id() as libc::pid_t;
        let deadline = Instant::now() + limit;
        let (status, rss) = loop {
            let mut status = 0;
            // SAFETY: rusage is plain data; wait4 fills it for our own child.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if done == pid {
                break (status, usage.ru_maxrss as u64 * 1024);
            }
            assert!(done == 0, "wait4 failed");
            assert!(
                Instant::now() < deadline,
                "command still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // Reaped by wait4: keep the guard from killing a recycled pid.
        std::mem::forget(self);
        let output = Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(status),
            stdout: out_thread.join().expect("reader"),
            stderr: err_thread.join().expect("reader"),
        };
        (output, rss)
    }

    /// SIGKILL, and reap it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hex_id(v: &Value) -> Option<Id> {
    Id::from_hex(v.get("id")?.as_str()?)
}

/// The ring id of the node whose address ends in `/p2p/<id>`.
pub fn peer_id_of(addr: &str) -> Id {
    let peer: libp2p::PeerId = addr
        .rsplit('/')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("addr ends in /p2p/<id>");
    chord_p2p::net::node_id(&peer)
}

pub fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

/// Polls `check` every 100 ms until it returns Ok, or panics with its last error after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
