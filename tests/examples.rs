//! The transport examples run to the end: a ring over QUIC, TCP, the in-memory transport and a
//! relay each puts and gets a file. `cargo test` builds the examples next to this test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::procs::example;

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
