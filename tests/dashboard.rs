//! The dashboard in a real browser: headless Chromium driven through chromedriver (WebDriver)
//! against a ring of in-process members with the HTTP gateway on one of them, on 127.0.0.1.
//!
//! The page must draw every member at its id's angle (read from the SVG), show a joining member
//! and drop a killed one without a reload (live updates), put a file chosen in its file input
//! (which the one-shot CLI then gets byte-identical), and download a file the CLI put when its
//! link is clicked. A screenshot is saved as `target/dashboard.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them when missing);
//! without them the test prints `SKIPPED dashboard test: <reason>` and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chord_p2p::chord::{Id, IdealRing};
use chord_p2p::files::HasFiles;
use chord_p2p::gateway::{Gateway, GatewayConfig};
use common::files::*;
use common::procs::{free_port, oneshot_json};
use common::{start, target_of, wait_for};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// Bound on each wait for the page to show something.
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// chromedriver in its own process group, killed with everything it started when dropped.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this test created for chromedriver.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn program(name: &str) -> Result<PathBuf, String> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    found.ok_or_else(|| {
        format!("{name} is not installed (apt-get install chromium chromium-driver)")
    })
}

/// Starts chromedriver on a free port of 127.0.0.1 and waits until it listens.
fn start_driver() -> Result<(Driver, u16, PathBuf), String> {
    let chromium = program("chromium")?;
    let chromedriver = program("chromedriver")?;
    let port = free_port();
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("chromedriver does not start: {e}"))?
    };
    let driver = Driver { child };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            return Err("chromedriver did not listen within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((driver, port, chromium))
}

/// A headless Chromium session that saves downloads into `downloads`.
async fn browser(port: u16, chromium: &Path, downloads: &Path) -> Result<Client, String> {
    let options = json!({
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--no-proxy-server", "--window-size=1280,1500"],
        "prefs": {
            "download.default_directory": downloads,
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
            "safebrowsing.enabled": false,
        },
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .map_err(|e| format!("Chromium does not start under chromedriver: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let (driver, port, chromium) = match start_driver() {
        Ok(started) => started,
        Err(reason) => return println!("SKIPPED dashboard test: {reason}"),
    };
    let downloads = tempfile::tempdir().expect("tempdir");
    let client = match browser(port, &chromium, downloads.path()).await {
        Ok(client) => client,
        Err(reason) => return println!("SKIPPED dashboard test: {reason}"),
    };
    // The checks run in a task of their own so that, pass or fail, the browser session is
    // closed and chromedriver (with its Chromium) killed before the test ends.
    let checks = tokio::spawn(checks(client.clone(), downloads.path().to_path_buf()));
    let outcome = checks.await;
    let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
    drop(driver);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn checks(page: Client, downloads: PathBuf) {
    let started = std::time::Instant::now();
    let mut nodes = settled_ring(5, 1301).await;
    let files = nodes[0].files().expect("member keeps files").clone();
    let loopback = GatewayConfig::new("127.0.0.1:0".parse().expect("addr"));
    let gateway = Gateway::start(files, loopback)
        .await
        .expect("gateway binds");
    println!("dashboard at {}", gateway.url());
    page.goto(&gateway.url()).await.expect("page opens");
    page.execute("window.__loadedOnce = true; return null;", vec![])
        .await
        .expect("script runs");

    // Five members, each at its id's angle.
    let ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    wait_members(&page, &ids, "the 5 members drawn").await;
    let drawn = members(&page).await.expect("members read");
    for m in &drawn {
        let want = expected_angle(&m.id);
        assert!(
            (m.angle - want).abs() < 1e-6,
            "{}: angle {} ≠ {want}",
            m.id,
            m.angle
        );
        // The circle is where its angle says: clockwise from the top on a circle of 220.
        let (x, y) = (
            220.0 * want.to_radians().sin(),
            -220.0 * want.to_radians().cos(),
        );
        assert!(
            (m.cx - x).abs() < 0.01 && (m.cy - y).abs() < 0.01,
            "{m:?} is not at {want}°"
        );
    }
    println!("5 members at their angles after {:?}", started.elapsed());

    // A sixth member joins: drawn without a reload.
    let sixth = start(&config()).await;
    sixth
        .handle()
        .join(target_of(&nodes[2]))
        .await
        .expect("join");
    nodes.push(sixth);
    let ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    wait_members(&page, &ids, "the 6th member drawn").await;
    println!("the 6th member appeared after {:?}", started.elapsed());

    // One is killed: gone from the picture within a few stabilize intervals.
    let killed = nodes.remove(3);
    let kill_started = std::time::Instant::now();
    killed.kill().await;
    let ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    wait_members(&page, &ids, "the killed member gone").await;
    println!(
        "the killed member left the page {:?} after the kill",
        kill_started.elapsed()
    );

    // Clicking a member opens its panel and draws its fingers as chords.
    let other = ids[2].to_hex();
    click(&page, &format!("circle.member[data-id='{other}']")).await;
    let panel = page.find(Locator::Id("panel")).await.expect("panel");
    assert_eq!(
        panel.attr("data-id").await.expect("attr").as_deref(),
        Some(&*other)
    );
    let text = panel.text().await.expect("panel text");
    assert!(
        text.contains(&nodes[2].peer_id().to_string()),
        "panel: {text}"
    );
    let chords = count(&page, &format!("line.finger[data-from='{other}']")).await;
    assert!(chords > 0, "no finger chords drawn for the selected member");

    // A file put through the page's file input, then got with the one-shot CLI.
    let dir = tempfile::tempdir().expect("tempdir");
    let uploaded = content(1302, 300_000);
    let path = write_file(dir.path(), "from-page.bin", &uploaded);
    let input = page
        .find(Locator::Id("file-input"))
        .await
        .expect("file input");
    input
        .send_keys(path.to_str().expect("utf-8"))
        .await
        .expect("file chosen");
    let done = "li.upload.done[data-name='from-page.bin']";
    wait_for(PAGE_WAIT, "the page's upload done", || async {
        if count(&page, done).await == 1 {
            return Ok(());
        }
        let items = page.find_all(Locator::Css("li.upload")).await;
        let mut said = Vec::new();
        for item in items.unwrap_or_default() {
            said.push(item.text().await.unwrap_or_default());
        }
        Err(format!("uploads say {said:?}"))
    })
    .await;
    let peer = nodes[1].listen_addrs()[0].to_string();
    let out = dir.path().join("got-by-cli.bin");
    let got = oneshot_json(&[
        "get",
        "from-page.bin",
        "--peer",
        &peer,
        "-o",
        out.to_str().expect("utf-8"),
        "--json",
        "--timeout",
        "10s",
    ]);
    assert_eq!(got["size"], json!(uploaded.len()));
    assert!(
        std::fs::read(&out).expect("read") == uploaded,
        "the CLI got other bytes"
    );
    println!(
        "uploaded through the page, got by the CLI: {} bytes",
        uploaded.len()
    );

    // A file put with the CLI, downloaded by clicking its link on the page.
    let put_bytes = content(1303, 200_000);
    let put_path = write_file(dir.path(), "from-cli.bin", &put_bytes);
    oneshot_json(&[
        "put",
        put_path.to_str().expect("utf-8"),
        "--peer",
        &peer,
        "--json",
        "--timeout",
        "10s",
    ]);
    let link = "tr.file-row[data-name='from-cli.bin'] a.download";
    wait_for(PAGE_WAIT, "the CLI's file listed", || async {
        match count(&page, link).await {
            1 => Ok(()),
            n => Err(format!("{n} links")),
        }
    })
    .await;
    click(&page, link).await;
    let saved = downloads.join("from-cli.bin");
    wait_for(PAGE_WAIT, "the download saved", || async {
        match std::fs::read(&saved) {
            Ok(bytes) if bytes.len() == put_bytes.len() => Ok(()),
            Ok(bytes) => Err(format!("{} bytes so far", bytes.len())),
            Err(e) => Err(format!("{}: {e}", saved.display())),
        }
    })
    .await;
    assert!(
        std::fs::read(&saved).expect("read") == put_bytes,
        "the download differs"
    );
    println!("put by the CLI, downloaded through the page's link");

    // Still the first load: every change above came in without a reload.
    let loaded = page
        .execute("return window.__loadedOnce === true;", vec![])
        .await;
    assert_eq!(
        loaded.expect("script runs"),
        json!(true),
        "the page was reloaded"
    );
    let marks = count(&page, "circle.file").await;
    assert_eq!(marks, 2, "one mark per file on the ring");

    // A lookup typed into the page: its path drawn hop by hop, a numbered chord from this
    // node through each node that answered to the owner.
    let ids: Vec<Id> = nodes.iter().map(|n| n.id()).collect();
    let ring = IdealRing::new(ids.iter().copied());
    let name = (0..1000)
        .map(|i| format!("looked-up-{i}"))
        .find(|n| ring.successor(&Id::hash(n.as_bytes())) != Some(ids[0]))
        .expect("a name another member owns");
    let owner = ring
        .successor(&Id::hash(name.as_bytes()))
        .expect("an owner")
        .to_hex();
    let field = page
        .find(Locator::Id("lookup-name"))
        .await
        .expect("lookup box");
    field.send_keys(&name).await.expect("name typed");
    page.execute(
        "document.getElementById('lookup-form').requestSubmit(); return null;",
        vec![],
    )
    .await
    .expect("lookup submitted");
    let hops_script = "return [...document.querySelectorAll('line.lookup-hop')].map(l => \
        [+l.dataset.hop, l.dataset.from, l.dataset.to]);";
    let drawn: std::sync::Mutex<Vec<(u64, String, String)>> = Default::default();
    wait_for(PAGE_WAIT, "the lookup path drawn", || async {
        let value = page
            .execute(hops_script, vec![])
            .await
            .map_err(|e| e.to_string())?;
        let hops: Vec<(u64, String, String)> =
            serde_json::from_value(value).map_err(|e| e.to_string())?;
        if hops.is_empty() {
            return Err("no hop drawn yet".into());
        }
        *drawn.lock().expect("not poisoned") = hops;
        Ok(())
    })
    .await;
    let hops = drawn.into_inner().expect("not poisoned");
    assert_eq!(hops[0].1, ids[0].to_hex(), "the path starts at this node");
    assert_eq!(
        hops.last().expect("a hop").2,
        owner,
        "the path ends at the owner"
    );
    for (i, pair) in hops.windows(2).enumerate() {
        assert_eq!(
            pair[0].2,
            pair[1].1,
            "hop {} does not go on from hop {}",
            i + 2,
            i + 1
        );
    }
    for (i, hop) in hops.iter().enumerate() {
        assert_eq!(hop.0, i as u64 + 1, "hops numbered in order");
    }
    println!("lookup of {name}: {} hops drawn", hops.len());

    let shot = page.screenshot().await.expect("screenshot");
    let target = screenshot_path();
    std::fs::write(&target, shot).expect("screenshot saved");
    println!("screenshot: {}", target.display());
    println!("dashboard test took {:?}", started.elapsed());
}

/// `target/dashboard.png` (next to the profile directory this test runs from).
fn screenshot_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    // target/<profile>/deps/<this test> → target/
    let target = exe.ancestors().nth(3).expect("target dir");
    target.join("dashboard.png")
}

/// `id / 2^160 × 360`, from the id's bytes.
fn expected_angle(hex: &str) -> f64 {
    let id = Id::from_hex(hex).expect("a hex id");
    let mut high = [0u8; 8];
    high.copy_from_slice(&id.0[..8]);
    (u64::from_be_bytes(high) >> 11) as f64 / 2f64.powi(53) * 360.0
}

#[derive(Debug)]
struct Drawn {
    id: String,
    angle: f64,
    cx: f64,
    cy: f64,
}

/// The members drawn in the SVG, read in one go (the page redraws while we look).
async fn members(page: &Client) -> Result<Vec<Drawn>, String> {
    let script = "return [...document.querySelectorAll('#ring circle.member')].map(c => ({\
        id: c.dataset.id, angle: +c.dataset.angle,\
        cx: +c.getAttribute('cx'), cy: +c.getAttribute('cy')}));";
    let value = page
        .execute(script, vec![])
        .await
        .map_err(|e| e.to_string())?;
    let list = value.as_array().ok_or("not a list")?;
    let number = |v: &Value, k: &str| v[k].as_f64().ok_or(format!("no {k} in {v}"));
    list.iter()
        .map(|v| {
            Ok(Drawn {
                id: v["id"].as_str().ok_or("no id")?.to_string(),
                angle: number(v, "angle")?,
                cx: number(v, "cx")?,
                cy: number(v, "cy")?,
            })
        })
        .collect()
}

/// Waits until exactly `ids` are drawn.
async fn wait_members(page: &Client, ids: &[Id], what: &str) {
    let mut want: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
    want.sort();
    wait_for(PAGE_WAIT, what, || async {
        let mut drawn: Vec<String> = members(page).await?.into_iter().map(|m| m.id).collect();
        drawn.sort();
        if drawn == want {
            Ok(())
        } else {
            Err(format!("drawn {drawn:?}, want {want:?}"))
        }
    })
    .await;
}

async fn count(page: &Client, css: &str) -> usize {
    page.find_all(Locator::Css(css))
        .await
        .map(|found| found.len())
        .unwrap_or(0)
}

/// Clicks what `css` finds, again if the page redrew it between finding and clicking.
async fn click(page: &Client, css: &str) {
    wait_for(PAGE_WAIT, &format!("click {css}"), || async {
        let found = page
            .find(Locator::Css(css))
            .await
            .map_err(|e| e.to_string())?;
        found.click().await.map_err(|e| e.to_string())
    })
    .await;
}
