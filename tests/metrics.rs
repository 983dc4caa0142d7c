//! `/metrics` as an operator sees it: five node processes started as a user starts them, each
//! with `--http` on loopback, scraped over HTTP and parsed as Prometheus text; one replica
//! holder is killed -9 and the owner's under-replicated gauge rises, then falls back to 0
//! once repair has made the copy again.

mod common;

use std::time::{Duration, Instant};

use chord_p2p::chord::{Id, IdealRing};
use common::metrics::{parse, sample};
use common::procs::{oneshot_json, peer_id_of, Proc};
use common::wait_for;
use serde_json::Value;

/// A member process with its HTTP server.
struct Member {
    proc: Proc,
    addr: String,
    url: String,
}

impl Member {
    fn id(&self) -> Id {
        peer_id_of(&self.addr)
    }
}

fn member(join: Option<&str>) -> Member {
    let mut args = vec![
        "--listen",
        "/ip4/127.0.0.1/udp/0/quic-v1",
        "--http",
        "127.0.0.1:0",
        // A round that finds a copy missing keeps the gauge up until the next one: a second
        // is long enough for any scrape to see, however loaded the machine.
        "--repair-interval",
        "1s",
    ];
    if let Some(join) = join {
        args.extend(["--join", join]);
    }
    let (proc, addr) = Proc::node(&args);
    let url = loop {
        let line: Value =
            serde_json::from_str(&proc.line(Duration::from_secs(20))).expect("json line");
        if line["event"] == "http" {
            break line["url"].as_str().expect("url").to_string();
        }
    };
    Member { proc, addr, url }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

async fn scrape(http: &reqwest::Client, member: &Member) -> prometheus_parse::Scrape {
    let text = http
        .get(format!("{}metrics", member.url))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics body");
    parse(&text)
}

/// The ring's view from `member`'s `/api/ring`.
async fn ring_view(http: &reqwest::Client, member: &Member) -> Value {
    let body = http
        .get(format!("{}api/ring", member.url))
        .send()
        .await
        .expect("ring answers")
        .bytes()
        .await
        .expect("ring body");
    serde_json::from_slice(&body).expect("ring JSON")
}

/// How many members hold `name` (the same version), as `member` sees the ring.
async fn copies(http: &reqwest::Client, member: &Member, name: &str) -> (usize, Vec<String>) {
    let view = ring_view(http, member).await;
    let file = view["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["name"] == name))
        .cloned()
        .unwrap_or(Value::Null);
    let holders: Vec<String> = file["holders"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (holders.len(), holders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_holder_killed_9_shows_in_the_owners_gauge_until_repair() {
    let first = member(None);
    let mut members = vec![first];
    for _ in 1..5 {
        let join = members[0].addr.clone();
        members.push(member(Some(&join)));
    }
    let http = http();
    let ids: Vec<Id> = members.iter().map(Member::id).collect();
    let ring = IdealRing::new(ids.iter().copied());
    wait_for(Duration::from_secs(30), "5 members in the view", || async {
        let view = ring_view(&http, &members[0]).await;
        match view["members"].as_array().map(Vec::len) {
            Some(5) => Ok(()),
            n => Err(format!("{n:?} members")),
        }
    })
    .await;

    // A file the first member owns, put with the one-shot CLI through it.
    let name = (0..10_000)
        .map(|i| format!("watched-{i}.bin"))
        .find(|n| ring.successor(&Id::hash(n.as_bytes())) == Some(ids[0]))
        .expect("a name the first member owns");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("watched.bin");
    std::fs::write(&path, vec![7u8; 1 << 20]).expect("file");
    let put = oneshot_json(&[
        "put",
        path.to_str().expect("utf-8"),
        "--name",
        &name,
        "--peer",
        &members[0].addr,
        "--json",
    ]);
    assert_eq!(put["replicas"], 3, "{put}");
    let owner = &members[0];
    wait_for(
        Duration::from_secs(30),
        "three copies, none short",
        || async {
            let (n, _) = copies(&http, owner, &name).await;
            let under = sample(
                &scrape(&http, owner).await,
                "chord_files_under_replicated",
                &[],
            );
            if n == 3 && under == 0.0 {
                Ok(())
            } else {
                Err(format!("{n} copies, gauge {under}"))
            }
        },
    )
    .await;
    let pushes =
        |s: &prometheus_parse::Scrape| sample(s, "chord_repairs_total", &[("action", "push")]);
    let mut pushed_before = 0.0;
    for m in &members {
        pushed_before += pushes(&scrape(&http, m).await);
    }

    // kill -9 of a replica holder.
    let (_, holders) = copies(&http, owner, &name).await;
    let victim = members
        .iter()
        .position(|m| m.id() != owner.id() && holders.contains(&m.id().to_hex()))
        .expect("a replica holder");
    let victim = members.remove(victim);
    victim.proc.kill9();
    let owner = &members[0];
    let started = Instant::now();
    let mut rose_after = None;
    let deadline = started + Duration::from_secs(60);
    loop {
        let under = sample(
            &scrape(&http, owner).await,
            "chord_files_under_replicated",
            &[],
        );
        if under > 0.0 && rose_after.is_none() {
            rose_after = Some(started.elapsed());
        }
        if rose_after.is_some() && under == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "under-replicated gauge: rose after {rose_after:?}, now {under}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "gauge rose {:?} after the kill and was back to 0 {:?} after it",
        rose_after.unwrap_or_default(),
        started.elapsed()
    );
    wait_for(Duration::from_secs(30), "three copies again", || async {
        match copies(&http, owner, &name).await {
            (3, _) => Ok(()),
            (n, _) => Err(format!("{n} copies")),
        }
    })
    .await;
    let mut pushed = 0.0;
    for m in &members {
        pushed += pushes(&scrape(&http, m).await);
    }
    assert!(pushed > pushed_before, "no repair push counted");
}
