//! The transport examples run to the end: a ring over QUIC, TCP, the in-memory transport and a
//! relay each puts and gets a file. `cargo test` builds the examples next to this test.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
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

/// Runs an example to completion (at most `limit`) and returns what it printed.
fn run(name: &str, limit: Duration) -> String {
    let mut child = Command::new(example(name))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                status.success(),
                "{name} failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return stdout;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_transport_example_puts_and_gets_a_file() {
    for name in ["quic_ring", "tcp_ring", "memory_ring"] {
        let out = run(name, Duration::from_secs(90));
        assert!(out.contains("bytes identical"), "{name}: {out}");
        assert!(out.contains("done"), "{name}: {out}");
    }
    let out = run("relayed_ring", Duration::from_secs(90));
    assert!(out.contains("listens only through the relay"), "{out}");
    assert!(out.contains("bytes identical"), "{out}");
}
