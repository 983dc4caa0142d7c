//! The HTTP gateway, JSON API and metrics (`--http`), on real rings in one process on
//! 127.0.0.1, through a real HTTP client: files by name with their headers, ranges, HEAD and
//! 404s; puts and removals from loopback and the token rule for everyone else; /api/… in the
//! shapes the CLI prints; /metrics parsed as Prometheus text.
//!
//! The token rule is tested on 127.0.0.1 (no test listens anywhere else) with the gateway's
//! test-only switch that treats loopback clients as remote (`loopback_is_remote`); the
//! loopback and `Host` checks themselves are unit tests in `src/gateway/auth.rs`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chord_p2p::chord::{Id, IdealRing};
use chord_p2p::files::{HasFiles, Role};
use chord_p2p::gateway::{Gateway, GatewayConfig, GatewayError};
use chord_p2p::node::Node;
use common::files::*;
use common::metrics::{parse, sample};
use reqwest::StatusCode;
use serde_json::Value;

/// Every request and every body read is bounded by this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("http client")
}

async fn serve(node: &Node, config: GatewayConfig) -> Gateway {
    let files = node.files().expect("member keeps files").clone();
    Gateway::start(files, config).await.expect("gateway binds")
}

fn loopback() -> GatewayConfig {
    GatewayConfig::new("127.0.0.1:0".parse().expect("addr"))
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
        )
    })
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ascii header")
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The node JSON shape: `{"peer_id", "id", "addrs"}`.
fn is_node(value: &Value) -> bool {
    keys(value) == set(&["peer_id", "id", "addrs"])
}

/// A scrape of `/metrics`, parsed as Prometheus text.
async fn scrape(http: &reqwest::Client, base: &str) -> prometheus_parse::Scrape {
    let response = http
        .get(format!("{base}metrics"))
        .send()
        .await
        .expect("metrics answer");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("metrics body");
    parse(&text)
}

/// The value of the sample `metric` whose labels include `labels` (0 if there is none).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_ranges_heads_api_and_metrics() {
    let nodes = settled_ring(3, 1201).await;
    let gateway = serve(&nodes[0], loopback()).await;
    let base = gateway.url();
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with('/'));
    let http = client();

    // A file of a little over 3 MiB (four 1 MiB groups), put from another member.
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = content(1201, (3 << 20) + 12_345);
    let path = write_file(dir.path(), "clip", &bytes);
    let name = "videos/holiday clip.mp4";
    let put = put_from(&nodes[1], &path, name).await.expect("put");
    let url = format!("{base}files/videos/holiday%20clip.mp4");
    let etag = format!("\"{}\"", hex::encode(blake3_of(&bytes)));
    let before = scrape(&http, &base).await;

    // GET: the exact bytes, their length, their type and their hash as the ETag.
    let response = http.get(&url).send().await.expect("get answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-length"), bytes.len().to_string());
    assert_eq!(header(&response, "content-type"), "video/mp4");
    assert_eq!(header(&response, "etag"), etag);
    assert_eq!(header(&response, "accept-ranges"), "bytes");
    let body = response.bytes().await.expect("body");
    assert!(body[..] == bytes[..], "GET returned other bytes");
    assert_eq!(etag, format!("\"{}\"", hex::encode(put.hash)));

    // Range: exactly those 1000 bytes, as 206.
    let response = http
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .expect("range answers");
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-length"), "1000");
    assert_eq!(
        header(&response, "content-range"),
        format!("bytes 1000-1999/{}", bytes.len())
    );
    assert_eq!(header(&response, "etag"), etag);
    let body = response.bytes().await.expect("range body");
    assert!(body[..] == bytes[1000..2000], "the range holds other bytes");

    // Ranges across group boundaries, open-ended and from the end.
    for (range, first, last) in [
        ("bytes=1048000-2100000", 1_048_000, 2_100_000),
        ("bytes=3145000-", 3_145_000, bytes.len() - 1),
        ("bytes=-100", bytes.len() - 100, bytes.len() - 1),
    ] {
        let response = http
            .get(&url)
            .header("range", range)
            .send()
            .await
            .expect("range answers");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let body = response.bytes().await.expect("range body");
        assert!(body[..] == bytes[first..=last], "{range}: other bytes");
    }
    let response = http
        .get(&url)
        .header("range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&response, "content-range"),
        format!("bytes */{}", bytes.len())
    );

    // A client that has this version is told so without the bytes.
    let response = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

    // HEAD: the headers, no body.
    let response = http.head(&url).send().await.expect("head answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-length"), bytes.len().to_string());
    assert_eq!(header(&response, "etag"), etag);
    assert_eq!(header(&response, "content-type"), "video/mp4");
    assert!(response.bytes().await.expect("head body").is_empty());

    // A name nobody put: 404 with a JSON error.
    let response = http
        .get(format!("{base}files/no/such/file.txt"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(header(&response, "content-type").starts_with("application/json"));
    let error = json_of(&response.bytes().await.expect("body"));
    assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(error["kind"], "not_found");

    // /api/status: the shape of `status --json`, about this node.
    let status = json_of(
        &http
            .get(format!("{base}api/status"))
            .send()
            .await
            .expect("status answers")
            .bytes()
            .await
            .expect("body"),
    );
    assert_eq!(
        keys(&status),
        set(&[
            "peer_id",
            "id",
            "addrs",
            "predecessor",
            "successors",
            "fingers",
            "reachability",
            "connections",
            "storage",
            "data_dir"
        ])
    );
    assert_eq!(status["peer_id"], nodes[0].peer_id().to_string());
    assert_eq!(status["id"], nodes[0].id().to_hex());
    assert!(is_node(&status["predecessor"]));
    assert!(status["successors"]
        .as_array()
        .is_some_and(|s| !s.is_empty() && s.iter().all(is_node)));
    assert_eq!(keys(&status["storage"]), set(&["used", "limit", "files"]));

    // /api/lookup: the shape of `lookup --json`, naming the true owner.
    let ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    let ring = IdealRing::new(ids.iter().copied());
    for looked in ["videos/holiday clip.mp4", "anything at all"] {
        let response = http
            .get(format!("{base}api/lookup/{}", looked.replace(' ', "%20")))
            .send()
            .await
            .expect("lookup answers");
        assert_eq!(response.status(), StatusCode::OK);
        let found = json_of(&response.bytes().await.expect("body"));
        assert_eq!(keys(&found), set(&["name", "key", "owner", "hops", "path"]));
        // The path starts at the gateway's node, a member that looks up from its own table.
        assert_eq!(found["path"][0], ids[0].to_hex());
        assert_eq!(found["name"], looked);
        let key = Id::hash(looked.as_bytes());
        assert_eq!(found["key"], key.to_hex());
        assert!(is_node(&found["owner"]));
        let owner = ring.successor(&key).expect("owner");
        assert_eq!(found["owner"]["id"], owner.to_hex());
        assert!(found["hops"].is_u64());
    }

    // /api/ls: the shape of `ls --json`, this node's files.
    let listing = json_of(
        &http
            .get(format!("{base}api/ls"))
            .send()
            .await
            .expect("ls answers")
            .bytes()
            .await
            .expect("body"),
    );
    let held = nodes[0].files().expect("files").list();
    let listed = listing["files"].as_array().expect("files array");
    assert_eq!(listed.len(), held.len());
    for entry in listed {
        assert_eq!(
            keys(entry),
            set(&["name", "key", "size", "hash", "role"]),
            "{entry}"
        );
    }
    // Three members, three copies: this node holds the clip too.
    assert!(listed.iter().any(|f| f["name"] == name));

    // /metrics: Prometheus text; the GET above was counted, its bytes too.
    let after = scrape(&http, &base).await;
    let get_ok = [
        ("route", "/files/*name"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(
        sample(&after, "chord_gateway_requests_total", &get_ok)
            - sample(&before, "chord_gateway_requests_total", &get_ok),
        1.0
    );
    let sent = [("direction", "sent")];
    let moved = sample(&after, "chord_gateway_file_bytes_total", &sent)
        - sample(&before, "chord_gateway_file_bytes_total", &sent);
    // The whole file, the 1000-byte range, the three other ranges.
    let ranges = 1000 + (2_100_000 - 1_048_000 + 1) + (bytes.len() - 3_145_000) + 100;
    assert_eq!(moved as usize, bytes.len() + ranges);
    assert_eq!(
        sample(
            &after,
            "chord_gateway_requests_total",
            &[("route", "/files/*name"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "chord_gateway_lookups_total", &[("result", "ok")]),
        2.0
    );
    assert_eq!(sample(&after, "chord_gateway_lookup_hops_count", &[]), 2.0);
    // What the node holds, by role, and its store.
    let owned = held.iter().filter(|f| f.role == Role::Owner).count() as f64;
    let replicas = held.len() as f64 - owned;
    assert_eq!(
        sample(&after, "chord_files_held", &[("role", "owner")]),
        owned
    );
    assert_eq!(
        sample(&after, "chord_files_held", &[("role", "replica")]),
        replicas
    );
    assert!(sample(&after, "chord_files_held_bytes", &[]) >= bytes.len() as f64);
    assert!(sample(&after, "chord_storage_used_bytes", &[]) >= bytes.len() as f64);
    // Inbound transfers: this node received its copy of the clip as one (from the uploader
    // if it owns the name, else from the owner); none is left running.
    assert!(sample(&after, "chord_transfers_served_total", &[("kind", "put")]) >= 1.0);
    assert_eq!(
        sample(&after, "chord_transfers_active", &[("kind", "get")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_and_removals_need_loopback_or_the_token() {
    let nodes = settled_ring(3, 1202).await;
    let open = serve(&nodes[0], loopback()).await;
    let token = chord_p2p::gateway::generate_token();
    let guarded = serve(
        &nodes[0],
        GatewayConfig {
            token: Some(token.clone()),
            loopback_is_remote: true,
            ..loopback()
        },
    )
    .await;
    let http = client();
    let bytes = content(1202, 200_000);

    // PUT from loopback: stored as this node, answered like `put --json`.
    let url = format!("{}files/notes/hello.txt", open.url());
    let response = http
        .put(&url)
        .body(bytes.clone())
        .send()
        .await
        .expect("put answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "location"), "/files/notes/hello.txt");
    let put = json_of(&response.bytes().await.expect("body"));
    assert_eq!(
        keys(&put),
        set(&["name", "key", "size", "hash", "owner", "replicas", "via", "ticket"])
    );
    assert_eq!(put["name"], "notes/hello.txt");
    assert_eq!(put["size"], bytes.len() as u64);
    assert_eq!(put["hash"], hex::encode(blake3_of(&bytes)));
    assert!(put["ticket"]
        .as_str()
        .is_some_and(|t| t.starts_with("chord:")));
    // Another member gets it back, byte for byte, signed by the gateway's node.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("hello.txt");
    let got = get_from(&nodes[2], "notes/hello.txt", &out)
        .await
        .expect("get");
    assert_eq!(std::fs::read(&out).expect("output"), bytes);
    let holder = nodes
        .iter()
        .find_map(|n| n.files()?.store().get(&Id::hash(b"notes/hello.txt")))
        .expect("a holder");
    assert_eq!(holder.uploader, nodes[0].peer_id().to_string());
    assert_eq!(got.hash, blake3_of(&bytes));

    // Through the guarded server a client that is not local needs the token to change
    // anything, never to read.
    let guarded_url = format!("{}files/notes/hello.txt", guarded.url());
    let response = http
        .put(&guarded_url)
        .body(b"replaced".to_vec())
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "www-authenticate"), "Bearer");
    assert_eq!(
        json_of(&response.bytes().await.expect("body"))["kind"],
        "unauthorized"
    );
    let response = http
        .delete(&guarded_url)
        .bearer_auth("0000000000000000000000000000000000")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = http.get(&guarded_url).send().await.expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.expect("body")[..] == bytes[..]);
    // Nothing changed on the ring: the first version is still the one served.
    let response = http.get(&url).send().await.expect("answers");
    assert!(response.bytes().await.expect("body")[..] == bytes[..]);
    // With the token, a new version replaces the old one.
    let response = http
        .put(&guarded_url)
        .bearer_auth(&token)
        .body(b"replaced".to_vec())
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = http.get(&url).send().await.expect("answers");
    assert_eq!(&response.bytes().await.expect("body")[..], b"replaced");

    // DELETE from loopback: `rm --json`'s answer; then the name is gone.
    let response = http.delete(&url).send().await.expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    let removed = json_of(&response.bytes().await.expect("body"));
    assert_eq!(keys(&removed), set(&["name", "removed"]));
    assert_eq!(removed["name"], "notes/hello.txt");
    assert!(removed["removed"].as_u64().is_some_and(|n| n >= 1));
    let response = http.get(&url).send().await.expect("answers");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_of(&response.bytes().await.expect("body"))["kind"],
        "removed"
    );

    // A folder's name, or no name, is not a file to PUT.
    let response = http
        .put(format!("{}files/photos/", open.url()))
        .body(b"x".to_vec())
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(&response.bytes().await.expect("body"))["kind"],
        "usage"
    );

    // The refusals were counted.
    let metrics = scrape(&http, &open.url()).await;
    assert_eq!(
        sample(
            &metrics,
            "chord_gateway_requests_total",
            &[("method", "PUT"), ("status", "400")]
        ),
        1.0
    );
    let guarded_metrics = scrape(&http, &guarded.url()).await;
    assert_eq!(
        sample(
            &guarded_metrics,
            "chord_gateway_requests_total",
            &[("status", "401")]
        ),
        2.0
    );
}

#[tokio::test]
async fn a_token_must_be_long_enough_to_keep_anyone_out() {
    let config = GatewayConfig {
        token: Some("secret".into()),
        ..loopback()
    };
    assert!(matches!(
        Gateway::bind(config).await,
        Err(GatewayError::BadToken)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_member_serves_ranges_from_its_own_copy() {
    // A ring of one: the only copy is the gateway node's own, read from its disk and checked
    // group by group (a member cannot open a transfer stream to itself).
    let node = common::start(&config()).await;
    let gateway = serve(&node, loopback()).await;
    let http = client();
    let bytes = content(1203, (2 << 20) + 777);
    let url = format!("{}files/alone.bin", gateway.url());
    let response = http
        .put(&url)
        .body(bytes.clone())
        .send()
        .await
        .expect("put answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    for (range, first, last) in [
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=1048570-2097160", 1_048_570, 2_097_160),
        ("bytes=-10", bytes.len() - 10, bytes.len() - 1),
    ] {
        let response = http
            .get(&url)
            .header("range", range)
            .send()
            .await
            .expect("range answers");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let body = response.bytes().await.expect("range body");
        assert!(body[..] == bytes[first..=last], "{range}: other bytes");
    }
    let response = http.get(&url).send().await.expect("get answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.expect("body")[..] == bytes[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_lookups_and_transfers() {
    let nodes = settled_ring(5, 61).await;
    let gateway = serve(&nodes[0], loopback()).await;
    let (base, http) = (gateway.url(), client());

    // 100 lookups through the API: the counter and the hops histogram move by 100 each.
    let before = scrape(&http, &base).await;
    for i in 0..100 {
        let url = format!("{base}api/lookup/name-{i}");
        let response = http.get(url).send().await.expect("lookup answers");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let after = scrape(&http, &base).await;
    let moved = |metric: &str| sample(&after, metric, &[]) - sample(&before, metric, &[]);
    assert!(moved("chord_gateway_lookups_total") >= 100.0);
    assert_eq!(moved("chord_gateway_lookup_hops_count"), 100.0);
    // The node counts them too, among every lookup it makes (repair's as well).
    assert!(moved("chord_lookups_total") >= 100.0);
    assert!(moved("chord_lookup_hops_count") >= 100.0);
    // Node-wide Chord work and libp2p's own metrics are there, and move.
    assert!(moved("chord_stabilize_rounds_total") >= 1.0);
    let inbound = [("kind", "get_neighbours"), ("direction", "inbound")];
    assert!(sample(&after, "chord_rpcs_total", &inbound) >= 1.0);
    let chord_out = [("protocol", "chord"), ("direction", "out")];
    assert!(sample(&after, "chord_protocol_bytes_total", &chord_out) > 0.0);
    assert!(sample(&after, "libp2p_swarm_connections_established_total", &[]) >= 1.0);
    assert!(sample(&after, "libp2p_bandwidth_bytes_total", &[]) > 0.0);

    // A 10 MiB file this node owns, put from another member: it arrives here as a transfer.
    let refs: Vec<&Node> = nodes.iter().collect();
    let ring = IdealRing::new(refs.iter().map(|n| n.id()));
    let name = (0..10_000)
        .map(|i| format!("owned-here-{i}.bin"))
        .find(|n| ring.successor(&Id::hash(n.as_bytes())) == Some(refs[0].id()))
        .expect("a name this node owns");
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = content(5, 10 << 20);
    let path = write_file(dir.path(), "ten.bin", &bytes);
    let before = scrape(&http, &base).await;
    put_from(refs[2], &path, &name).await.expect("put");
    let after = scrape(&http, &base).await;
    let received = |s: &prometheus_parse::Scrape| {
        sample(
            s,
            "chord_transfer_bytes_total",
            &[("direction", "received")],
        )
    };
    assert!(
        received(&after) - received(&before) >= (10 << 20) as f64,
        "transfer bytes moved by {}",
        received(&after) - received(&before)
    );
    let stream_in = |s: &prometheus_parse::Scrape| {
        let labels = [("protocol", "transfer"), ("direction", "in")];
        sample(s, "chord_protocol_bytes_total", &labels)
    };
    assert!(stream_in(&after) - stream_in(&before) >= (10 << 20) as f64);
    let names = vec![(name.clone(), blake3_of(&bytes))];
    wait_copies(&refs, &names, "three copies").await;

    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_file_reads_past_the_scratch_limit_are_refused_busy_not_queued() {
    let nodes = settled_ring(3, 1203).await;
    let gateway = serve(&nodes[0], loopback()).await;
    let base = gateway.url();
    let dir = tempfile::tempdir().expect("tempdir");
    // Large enough that a reader who takes the headers and reads nothing keeps its body
    // (and its scratch copy) open: more than the socket buffers hold.
    let bytes = content(1203, 48 << 20);
    let path = write_file(dir.path(), "big.bin", &bytes);
    put_from(&nodes[1], &path, "big.bin").await.expect("put");
    let url = format!("{base}files/big.bin");

    // Four readers that stall after the headers: every scratch place is taken.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let response = client().get(&url).send().await.expect("get answers");
        assert_eq!(response.status(), StatusCode::OK);
        stalled.push(response);
    }
    // A fifth whole-file read is refused at once, with the JSON error; a range still works.
    let refused = client().get(&url).send().await.expect("get answers");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error = json_of(&refused.bytes().await.expect("body"));
    assert_eq!(error["kind"], "busy", "{error}");
    let part = client()
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .expect("range answers");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert!(part.bytes().await.expect("range body")[..] == bytes[1000..2000]);

    // One stalled reader goes: its place frees, and a whole read gets every byte again.
    drop(stalled.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = client().get(&url).send().await.expect("get answers");
        if response.status() == StatusCode::OK {
            assert!(response.bytes().await.expect("body")[..] == bytes[..]);
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            std::time::Instant::now() < deadline,
            "no place freed after a reader went"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stalled);
}
