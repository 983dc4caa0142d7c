//! Over real links: hosts in network namespaces on one bridge, each host's uplink capped with
//! tbf (tests/linklab/linklab.sh), so transfers meet the bottleneck of a home line that
//! loopback hides. Needs root, iproute2 and tc; elsewhere the test says so and skips.
//!
//! The CI-sized test holds issue 11's acceptance in this lab (never an upper bound on our own
//! rates), printing every figure: a get from every holder at once reaches at least twice the
//! single-holder rate, a put with R = 3 at least 0.8 × the uploader's cap (the owner forwards
//! along a chain), and a holder killed mid-get still yields identical bytes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chord_p2p::chord::{Id, IdealRing};
use common::procs::{hex_id, isolated, peer_id_of, result_json, wait_until, Proc, BIN};
use serde_json::Value;

/// The lab's subnet (linklab.sh): host i is NET.i. The NAT lab uses 10.200.0.0/24 and
/// 192.168.1-2.0/24; both labs' addresses exist only inside their own namespaces anyway.
const NET: &str = "10.210.0";
const PORT: u16 = 4001;
/// Where the TCP yardstick listens (inside the receiving host).
const YARDSTICK_PORT: u16 = 5201;
const MIB: u64 = 1 << 20;
/// Ring timing inside the lab: a full uplink queues a request behind up to 50 ms of data.
const RING: &[&str] = &[
    "--successors",
    "5",
    "--stabilize-interval",
    "200ms",
    "--rpc-timeout",
    "2s",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/linklab/linklab.sh")
}

/// Why this machine cannot run the lab, if it cannot: a throwaway namespace with a tbf qdisc
/// on its loopback shows root, `ip`, `tc` and the tbf scheduler all at once.
fn cannot_run() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network namespaces need root".into());
    }
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let probe = format!("linklabprobe{}-{n}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .stderr(Stdio::null())
        .status();
    match made {
        Ok(s) if s.success() => {}
        Ok(_) => return Some("this machine does not let us create network namespaces".into()),
        Err(e) => return Some(format!("iproute2 ('ip') is not available: {e}")),
    }
    let shaped = Command::new("ip")
        .args([
            "netns", "exec", &probe, "tc", "qdisc", "add", "dev", "lo", "root",
        ])
        .args(["tbf", "rate", "40mbit", "burst", "64kb", "latency", "50ms"])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    match shaped {
        Ok(s) if s.success() => None,
        Ok(_) => Some("tc cannot add a tbf qdisc here (no sch_tbf, or no tc)".into()),
        Err(e) => Some(format!("cannot run tc: {e}")),
    }
}

/// Says loudly (past the test harness's capture) why the lab cannot run here, if it cannot.
fn skipped() -> bool {
    match cannot_run() {
        Some(why) => {
            // One write, so the line is not torn by the harness's own output.
            let line = format!("SKIPPED linklab test: {why}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            true
        }
        None => false,
    }
}

/// A lab of its own (namespaces `linklab<pid>-<n>-h1…`, `…-hub`), torn down when dropped,
/// pass or fail.
struct Lab {
    prefix: String,
    hosts: usize,
}

impl Lab {
    /// `hosts` hosts whose uplinks are capped at `rate` (tc units, e.g. "40mbit").
    fn up(hosts: usize, rate: &str) -> Lab {
        sweep_leftovers();
        static LABS: AtomicUsize = AtomicUsize::new(0);
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let lab = Lab {
            prefix: format!("linklab{}-{n}", std::process::id()),
            hosts,
        };
        let out = lab.script(&["up", &hosts.to_string(), rate]);
        assert!(
            out.status.success(),
            "linklab up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn script(&self, args: &[&str]) -> Output {
        script_with_prefix(&self.prefix, args)
    }

    /// Host `i` (1-based) as its namespace.
    fn netns(&self, i: usize) -> String {
        assert!((1..=self.hosts).contains(&i), "no host {i}");
        format!("{}-h{i}", self.prefix)
    }

    fn ip(i: usize) -> String {
        format!("{NET}.{i}")
    }

    /// A chord node inside host `i`, listening on QUIC at the host's address.
    fn node(&self, i: usize, args: &[&str]) -> (Proc, String) {
        let netns = self.netns(i);
        let listen = format!("/ip4/{}/udp/{PORT}/quic-v1", Lab::ip(i));
        let mut all = vec!["--listen", &listen];
        all.extend_from_slice(args);
        all.extend_from_slice(RING);
        Proc::node_in(&["ip", "netns", "exec", &netns], &all)
    }

    fn command(&self, i: usize, args: &[&str]) -> Command {
        let mut c = isolated("ip");
        c.args(["netns", "exec", &self.netns(i), BIN])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// A one-shot command inside host `i`.
    fn oneshot(&self, i: usize, args: &[&str]) -> Output {
        self.command(i, args).output().expect("ip netns exec runs")
    }

    /// A one-shot command inside host `i` that must succeed, measured.
    fn measure(&self, i: usize, args: &[&str]) -> Measured {
        let before = self.tx_all();
        let started = Instant::now();
        let out = self.oneshot(i, args);
        let took = started.elapsed();
        let after = self.tx_all();
        assert!(
            out.status.success(),
            "{args:?} in h{i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Measured {
            json: result_json(&out.stdout),
            took,
            sent: after.iter().zip(&before).map(|(a, b)| a - b).collect(),
        }
    }

    /// `put FILE --name NAME` from host `i` through the node at `peer` (IP:PORT), signed
    /// with the identity in the file `identity`.
    fn put(&self, i: usize, file: &Path, name: &str, peer: &str, identity: &Path) -> Measured {
        self.measure(
            i,
            &[
                "put",
                path_str(file),
                "--name",
                name,
                "--peer",
                peer,
                "--identity",
                path_str(identity),
                "--json",
            ],
        )
    }

    /// `get NAME -o OUT` from host `i` through the node at `peer`.
    fn get(&self, i: usize, name: &str, peer: &str, out: &Path) -> Measured {
        self.measure(
            i,
            &["get", name, "--peer", peer, "-o", path_str(out), "--json"],
        )
    }

    /// Bytes host `i` has sent on its uplink so far.
    fn tx_bytes(&self, i: usize) -> u64 {
        let out = self.script(&["tx", &format!("h{i}")]);
        assert!(out.status.success(), "linklab tx h{i} failed");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a byte count")
    }

    fn tx_all(&self) -> Vec<u64> {
        (1..=self.hosts).map(|i| self.tx_bytes(i)).collect()
    }

    /// Waits until no uplink carries more than a trickle (Chord's own messages), at most
    /// `limit`, so a measurement does not share the links with work left over from the one
    /// before (replication that goes on after a put answered). Returns how long that took
    /// and what each host sent meanwhile.
    fn wait_quiet(&self, limit: Duration) -> (Duration, Vec<u64>) {
        let started = Instant::now();
        let first = self.tx_all();
        let mut last = first.clone();
        let mut calm = 0;
        while calm < 2 && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(250));
            let now = self.tx_all();
            let moved: u64 = now.iter().zip(&last).map(|(a, b)| a - b).sum();
            calm = if moved < 64 * 1024 { calm + 1 } else { 0 };
            last = now;
        }
        let sent = last.iter().zip(&first).map(|(a, b)| a - b).collect();
        (started.elapsed(), sent)
    }

    /// Runs `f` on a thread of its own inside host `i`'s network namespace: sockets it opens
    /// live there (and may be used from any thread afterwards).
    fn in_host<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let netns = self.netns(i);
        std::thread::spawn(move || {
            enter_netns(&netns);
            f()
        })
        .join()
        .expect("thread in the lab")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.script(&["down"]);
    }
}

/// A one-shot command and what it cost: its JSON result, its wall time (process start to
/// exit, as a user waits for it) and the bytes each host's uplink sent meanwhile.
struct Measured {
    json: Value,
    took: Duration,
    sent: Vec<u64>,
}

impl Measured {
    /// Bytes per second for a transfer of `size` bytes.
    fn rate(&self, size: u64) -> f64 {
        size as f64 / self.took.as_secs_f64()
    }

    fn uplinks(&self) -> String {
        uplinks(&self.sent)
    }
}

fn script_with_prefix(prefix: &str, args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .env("LINKLAB_PREFIX", prefix)
        .output()
        .expect("linklab.sh runs")
}

/// Moves the calling thread (only it) into the named network namespace.
fn enter_netns(netns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{netns}")).expect("namespace exists");
    // SAFETY: setns on a descriptor we hold; it changes this thread's namespace only.
    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        done,
        0,
        "setns {netns}: {}",
        std::io::Error::last_os_error()
    );
}

/// Removes labs a killed earlier run left behind (its Drop never ran): those whose test
/// process is gone, and that are older than any run of this test. Live runs are untouched.
fn sweep_leftovers() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(prefix) = name.strip_suffix("-hub") else {
            continue;
        };
        let Some(pid) = prefix
            .strip_prefix("linklab")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if old && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("linklab: removing the leftover lab {prefix}");
            let _ = script_with_prefix(prefix, &["down"]);
        }
    }
}

/// Chord nodes, one per host; `kill9` takes one down.
struct Ring {
    procs: Vec<Option<Proc>>,
    hosts: Vec<usize>,
    addrs: Vec<String>,
}

impl Ring {
    /// A node in each of `hosts` (`args` added to each), the first one started alone and the
    /// others joining it; returns once every node's successors and predecessor are right, as
    /// seen from host `ask_from`.
    fn start(lab: &Lab, hosts: &[usize], args: &[&str], ask_from: usize) -> Ring {
        let (first, first_addr) = lab.node(hosts[0], args);
        let mut procs = vec![Some(first)];
        let mut addrs = vec![first_addr.clone()];
        for &i in &hosts[1..] {
            let mut all = vec!["--join", &first_addr];
            all.extend_from_slice(args);
            let (p, addr) = lab.node(i, &all);
            procs.push(Some(p));
            addrs.push(addr);
        }
        let ring = Ring {
            procs,
            hosts: hosts.to_vec(),
            addrs,
        };
        wait_until(Duration::from_secs(30), "ring linked", || {
            ring.is_right(lab, ask_from)
        });
        ring
    }

    fn ids(&self) -> Vec<Id> {
        self.addrs.iter().map(|a| peer_id_of(a)).collect()
    }

    fn ideal(&self) -> IdealRing {
        IdealRing::new(self.ids())
    }

    /// Every node's predecessor and first two successors are right (what R = 3 needs).
    fn is_right(&self, lab: &Lab, ask_from: usize) -> Result<(), String> {
        if self.hosts.len() == 1 {
            return Ok(()); // alone, it has nobody to link to
        }
        let ideal = self.ideal();
        let want = 2.min(self.hosts.len() - 1);
        for &i in &self.hosts {
            let v = status(lab, ask_from, i)?;
            let me = hex_id(&v).ok_or("no id")?;
            let succs: Vec<Option<Id>> = (0..want).map(|k| hex_id(&v["successors"][k])).collect();
            let ideal_succs: Vec<Option<Id>> =
                ideal.successors(&me, want).into_iter().map(Some).collect();
            if succs != ideal_succs || hex_id(&v["predecessor"]) != ideal.predecessor(&me) {
                return Err(format!("h{i}: not linked yet"));
            }
        }
        Ok(())
    }

    /// A name whose owner is the node in host `i`.
    fn name_owned_by(&self, i: usize, stem: &str) -> String {
        let k = self.index_of(i);
        let owner = self.ids()[k];
        let ideal = self.ideal();
        (0..)
            .map(|n| format!("{stem}-{n}.bin"))
            .find(|n| ideal.successor(&Id::hash(n.as_bytes())) == Some(owner))
            .expect("some name lands on every node")
    }

    fn index_of(&self, i: usize) -> usize {
        self.hosts
            .iter()
            .position(|&h| h == i)
            .expect("a ring host")
    }

    /// The host whose node has this libp2p peer id.
    fn host_of_peer(&self, peer: &str) -> Option<usize> {
        self.addrs
            .iter()
            .position(|a| a.ends_with(&format!("/p2p/{peer}")))
            .map(|k| self.hosts[k])
    }

    /// SIGKILL to the node in host `i`: a crash nobody is told about.
    fn kill9(&mut self, i: usize) {
        let k = self.index_of(i);
        if let Some(p) = self.procs[k].take() {
            p.kill9();
        }
    }
}

/// The status of the node in host `node`, asked from host `from`.
fn status(lab: &Lab, from: usize, node: usize) -> Result<Value, String> {
    let peer = format!("{}:{PORT}", Lab::ip(node));
    let out = lab.oneshot(from, &["status", "--peer", &peer, "--json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Bare TCP from each of `senders` to `receiver` at once, `bytes` each: the aggregate rate
/// the receiver saw (bytes per second, from its first byte to its last).
fn tcp_rate(lab: &Lab, senders: &[usize], receiver: usize, bytes: u64) -> f64 {
    let addr = format!("{}:{YARDSTICK_PORT}", Lab::ip(receiver));
    let listener = {
        let addr = addr.clone();
        lab.in_host(receiver, move || TcpListener::bind(addr).expect("bind"))
    };
    listener.set_nonblocking(true).expect("nonblocking");
    let mut threads = Vec::new();
    for &s in senders {
        let (netns, addr) = (lab.netns(s), addr.clone());
        threads.push(std::thread::spawn(move || {
            enter_netns(&netns);
            let mut conn = TcpStream::connect(addr).expect("connect");
            conn.set_write_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            let block = vec![0x5au8; 64 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                conn.write_all(&block[..n]).expect("send");
                left -= n as u64;
            }
            conn.shutdown(std::net::Shutdown::Write).expect("shutdown");
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut readers = Vec::new();
    while readers.len() < senders.len() {
        match listener.accept() {
            Ok((mut conn, _)) => {
                conn.set_nonblocking(false).expect("blocking");
                conn.set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                readers.push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut got = 0u64;
                    let mut first = None;
                    loop {
                        let n = conn.read(&mut buf).expect("receive");
                        if n == 0 {
                            break;
                        }
                        first.get_or_insert_with(Instant::now);
                        got += n as u64;
                    }
                    (first.expect("some bytes"), Instant::now(), got)
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the senders did not connect");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    for t in threads {
        t.join().expect("sender");
    }
    let got: Vec<(Instant, Instant, u64)> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    let start = got.iter().map(|g| g.0).min().expect("a reader");
    let end = got.iter().map(|g| g.1).max().expect("a reader");
    let total: u64 = got.iter().map(|g| g.2).sum();
    assert_eq!(total, bytes * senders.len() as u64, "bytes lost");
    total as f64 / (end - start).as_secs_f64()
}

/// A one-shot command running in a host, its `--json` stdout read line by line as it comes;
/// killed (if still running) when dropped.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Streaming {
    fn spawn(lab: &Lab, i: usize, args: &[&str]) -> Streaming {
        let mut child = lab
            .command(i, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec starts");
        let stdout = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        Streaming {
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Waits (at most `limit`) until a progress line says at least `bytes` have arrived.
    fn wait_progress(&self, bytes: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no progress to {bytes} bytes within {limit:?}"));
            let v: Value = serde_json::from_str(&line).expect("JSON lines");
            assert_eq!(v["event"], "progress", "ended early: {line}");
            let done = v["done"].as_u64().expect("done");
            if done >= bytes {
                return done;
            }
        }
    }

    /// Waits (at most `limit`) for the end: success and the result JSON, or the error.
    fn finish(mut self, limit: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "command still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        let stderr = self.stderr.take().map(|t| t.join().expect("reader"));
        let stderr = stderr.unwrap_or_default();
        if status.success() {
            Ok(result_json(&out))
        } else {
            Err(String::from_utf8_lossy(&stderr).to_string())
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic bytes that no link could compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn mb_s(rate: f64) -> String {
    format!("{:6.2} MB/s ({:5.1} Mbit/s)", rate / 1e6, rate * 8.0 / 1e6)
}

/// What each host's uplink carried, e.g. "uplinks sent h1 49.3  h2 0.1 … MiB".
fn uplinks(sent: &[u64]) -> String {
    let parts: Vec<String> = sent
        .iter()
        .enumerate()
        .map(|(k, b)| format!("h{} {:.1}", k + 1, *b as f64 / MIB as f64))
        .collect();
    format!("uplinks sent {} MiB", parts.join("  "))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Four hosts capped at 40 Mbit/s; a ring of three (hosts 1–3) keeping three copies; host 4
/// puts and gets a 24 MiB file. Prints the rates beside a bare TCP yardstick over the same
/// links, and checks that a get whose holder dies midway still returns the same bytes.
#[test]
fn capped_uplinks_put_get_and_a_holder_killed_mid_get() {
    if skipped() {
        return;
    }
    let cap = 40e6 / 8.0; // 40 Mbit/s in bytes per second
    let size = 24 * MIB;
    let began = Instant::now();
    let lab = Lab::up(4, "40mbit");
    let client = 4;

    // (a) The yardstick: what the cap really gives a bare TCP stream, and that a host's
    // downlink is free (three capped senders to one receiver).
    let one = tcp_rate(&lab, &[1], client, 4 * MIB);
    let three = tcp_rate(&lab, &[1, 2, 3], client, 4 * MIB);
    eprintln!(
        "linklab: 4 hosts, uplinks capped at 40 Mbit/s ({:.2} MB/s)",
        cap / 1e6
    );
    eprintln!(
        "yardstick TCP h1→h4       {}  {:.2}× cap",
        mb_s(one),
        one / cap
    );
    eprintln!(
        "yardstick TCP h1,h2,h3→h4 {}  {:.2}× cap",
        mb_s(three),
        three / cap
    );

    let mut ring = Ring::start(&lab, &[1, 2, 3], &["--replicas", "3"], client);
    eprintln!(
        "ring of 3 (h1-h3, --replicas 3) linked at {:.1}s",
        began.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = noise(size as usize, 11);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &bytes).expect("write");
    let name = ring.name_owned_by(1, "big");
    let peer = format!("{}:{PORT}", Lab::ip(2));

    // (b) Put from host 4 to the owner, h1; the put answers once all three copies exist. The
    // uplink counters show who carried the copies (the owner alone, or a chain).
    let put = lab.put(client, &src, &name, &peer, &dir.path().join("id.key"));
    assert_eq!(
        hex_id(&put.json["owner"]),
        Some(ring.ids()[0]),
        "{}",
        put.json
    );
    assert_eq!(put.json["replicas"], 3, "{}", put.json);
    let put_rate = put.rate(size);
    eprintln!(
        "put 24 MiB (R = 3)        {}  {:.2}× cap  in {:.1}s; the owner's uplink carried {:.1}× \
         the file; {}",
        mb_s(put_rate),
        put_rate / cap,
        put.took.as_secs_f64(),
        put.sent[0] as f64 / size as f64,
        put.uplinks()
    );

    let (waited, sent) = lab.wait_quiet(Duration::from_secs(20));
    if sent.iter().any(|&b| b > MIB) {
        eprintln!(
            "after the put answered, replication went on for {:.1}s: {}",
            waited.as_secs_f64(),
            uplinks(&sent)
        );
    }

    // (c) Get into host 4, compared with the single-holder rate (the yardstick): one holder
    // sending everything gives about 1×; a get from every holder at once up to 3×.
    let out = dir.path().join("got.bin");
    let get = lab.get(client, &name, &peer, &out);
    assert!(
        std::fs::read(&out).expect("got") == bytes,
        "get: bytes differ"
    );
    let get_rate = get.rate(size);
    let server = get.json["from"]["peer_id"]
        .as_str()
        .and_then(|peer| ring.host_of_peer(peer))
        .unwrap_or(1);
    eprintln!(
        "get 24 MiB                {}  {:.2}× cap  get rate / single-holder rate {:.2} \
         in {:.1}s from h{server}; {}",
        mb_s(get_rate),
        get_rate / cap,
        get_rate / one,
        get.took.as_secs_f64(),
        get.uplinks()
    );

    // (d) The holder that served (the one the first get reports) is killed a third of the
    // way into another get: the get finishes from the other holders, with the same bytes.
    let out = dir.path().join("got-after-kill.bin");
    let other = [1, 2, 3]
        .into_iter()
        .find(|&h| h != server)
        .expect("another host");
    let peer = format!("{}:{PORT}", Lab::ip(other));
    lab.wait_quiet(Duration::from_secs(10));
    let before = lab.tx_all();
    let started = Instant::now();
    let getting = Streaming::spawn(
        &lab,
        client,
        &[
            "get",
            &name,
            "--peer",
            &peer,
            "-o",
            path_str(&out),
            "--json",
        ],
    );
    let at = getting.wait_progress(size / 3, Duration::from_secs(20));
    ring.kill9(server);
    let killed = started.elapsed();
    let result = getting.finish(Duration::from_secs(40));
    let took = started.elapsed();
    let sent: Vec<u64> = lab
        .tx_all()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    let v = result.unwrap_or_else(|e| panic!("the get failed when h{server} died: {e}"));
    assert!(
        std::fs::read(&out).expect("got") == bytes,
        "get with a holder killed: bytes differ"
    );
    let from = v["from"]["peer_id"]
        .as_str()
        .and_then(|p| ring.host_of_peer(p))
        .map_or("?".into(), |h| format!("h{h}"));
    let rate = size as f64 / took.as_secs_f64();
    eprintln!(
        "get, h{server} killed at {:.1} MiB ({:.1}s in): identical bytes, finished from {from} \
         (resumed at {:.1} MiB) {:.1}s after the kill; {}  {:.2}× cap overall; {}",
        at as f64 / MIB as f64,
        killed.as_secs_f64(),
        v["resumed_from"].as_u64().unwrap_or(0) as f64 / MIB as f64,
        (took - killed).as_secs_f64(),
        mb_s(rate),
        rate / cap,
        uplinks(&sent)
    );
    eprintln!("linklab test took {:.1}s", began.elapsed().as_secs_f64());

    // The lab itself: tbf holds a TCP stream near its cap and leaves downlinks free.
    assert!(
        one >= 0.8 * cap && one <= 1.25 * cap,
        "tbf does not hold TCP near the cap: {:.2}× cap",
        one / cap
    );
    assert!(
        three >= 2.0 * cap,
        "the downlink is not free: {:.2}× cap",
        three / cap
    );
    // Issue 11's acceptance; never a ceiling on our own rates. Measured: at b3b820a (one
    // holder per get, the owner copying a one-shot client's upload several times) put
    // 0.18-0.19× and get 0.94× the cap; with chain replication and gets from every holder
    // (6289985 and after) put 0.92×, get 2.5-2.8× the single-holder rate.
    assert!(put_rate >= 0.8 * cap, "put at {:.2}× cap", put_rate / cap);
    assert!(
        get_rate >= 2.0 * one,
        "get at {:.2}× the single-holder rate",
        get_rate / one
    );
}

/// The full lab, a benchmark (not run by `cargo test`):
///
/// ```sh
/// cargo test --release --test linklab -- --ignored --nocapture
/// LINKLAB_MIB=64 LINKLAB_RATES=20,100 LINKLAB_HOLDERS=1,3 cargo test --release --test linklab -- --ignored --nocapture
/// ```
///
/// For each uplink cap (Mbit/s) and each number R of holders: a ring of R nodes keeping R
/// copies, a client host that puts a file of LINKLAB_MIB MiB (default 256) and gets it back;
/// then, for R ≥ 2, the same get with the owner's uplink at a tenth of the others'. Prints
/// rates and their ratios to the uploader's cap (put) and to the sum of the holders' caps (get).
#[test]
#[ignore = "benchmark: minutes per configuration; see the doc comment for the command"]
fn bench_full_lab() {
    if skipped() {
        return;
    }
    let list = |var: &str, default: &str| -> Vec<u64> {
        std::env::var(var)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|x| x.trim().parse().expect("a list of numbers"))
            .collect()
    };
    let rates = list("LINKLAB_RATES", "20,100");
    let holders = list("LINKLAB_HOLDERS", "1,2,3,5");
    let size = list("LINKLAB_MIB", "256")[0] * MIB;
    let most = *holders.iter().max().expect("some holders") as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = noise(size as usize, 7);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &bytes).expect("write");
    let identity = dir.path().join("id.key");
    for &mbit in &rates {
        let cap = mbit as f64 * 1e6 / 8.0;
        let lab = Lab::up(most + 1, &format!("{mbit}mbit"));
        let client = most + 1;
        let one = tcp_rate(&lab, &[1], client, (cap as u64).clamp(MIB, 16 * MIB));
        eprintln!(
            "{mbit} Mbit/s uplinks: yardstick TCP {}  {:.2}× cap",
            mb_s(one),
            one / cap
        );
        for &r in &holders {
            let r = r as usize;
            let hosts: Vec<usize> = (1..=r).collect();
            let replicas = r.to_string();
            let ring = Ring::start(&lab, &hosts, &["--replicas", &replicas], client);
            let name = ring.name_owned_by(1, &format!("bench-{mbit}-{r}"));
            let peer = format!("{}:{PORT}", Lab::ip(1));
            let put = lab.put(client, &src, &name, &peer, &identity);
            eprintln!(
                "  R = {r}: put {}  {:.2}× the uploader's cap; {}",
                mb_s(put.rate(size)),
                put.rate(size) / cap,
                put.uplinks()
            );
            lab.wait_quiet(Duration::from_secs(60));
            let out = dir.path().join(format!("got-{mbit}-{r}"));
            let get = lab.get(client, &name, &peer, &out);
            assert!(std::fs::read(&out).expect("got") == bytes, "bytes differ");
            eprintln!(
                "  R = {r}: get {}  {:.2}× the sum of the holders' caps, {:.2}× one holder; {}",
                mb_s(get.rate(size)),
                get.rate(size) / (cap * r as f64),
                get.rate(size) / one,
                get.uplinks()
            );
            if r >= 2 {
                let slow = format!("{}kbit", mbit * 100);
                assert!(lab.script(&["shape", "h1", &slow]).status.success());
                let out = dir.path().join(format!("got-slow-{mbit}-{r}"));
                let get = lab.get(client, &name, &peer, &out);
                assert!(std::fs::read(&out).expect("got") == bytes, "bytes differ");
                let caps = cap * (r as f64 - 0.9);
                eprintln!(
                    "  R = {r}, the owner at a tenth: get {}  {:.2}× the sum of the holders' \
                     caps; {}",
                    mb_s(get.rate(size)),
                    get.rate(size) / caps,
                    get.uplinks()
                );
                let rate = format!("{mbit}mbit");
                assert!(lab.script(&["shape", "h1", &rate]).status.success());
            }
        }
    }
}
