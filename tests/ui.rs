//! The web console at `/ui`, black-box: its assets and headers over plain HTTP, the live feed
//! of every task's events (`GET /v1/events`), and the page itself in a real headless Chromium
//! driven over WebDriver (chromedriver) against a live node with the test-double agents.
//!
//! The browser tests need Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
//! Without them a test says `skipped:` on stderr locally and fails under CI (`CI=true`), as the
//! Python-SDK tests do. `ALINK_CHROMEDRIVER` / `ALINK_CHROMIUM` name other binaries.
//! `ALINK_UI_SCREENSHOTS=<dir>` saves PNGs of the main views there (the README's come from
//! `ALINK_UI_SCREENSHOTS=docs/img`).
//!
//! The WebDriver client is a few JSON calls over reqwest (already a dependency): no WebDriver
//! crate is needed for new session, navigate, find, click, type, run a script, screenshot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Node, NodeOpts, Result};
use futures::StreamExt;
use serde_json::{Value, json};

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Longest wait for the page to show something (generous: 2 cores, a debug build).
const WAIT: Duration = Duration::from_secs(40);

fn agent() -> String {
    format!("{}/tests/agents/fake_acp_agent.py", env!("CARGO_MANIFEST_DIR"))
}

/// A loopback target and an ACP target on the fake agent (asks permission on `!permission`,
/// hangs on `!hang`).
fn registry() -> String {
    format!(
        "targets:\n  echo:\n    adapter: loopback\n    capabilities: [demo.echo, demo.await]\n  fake:\n    adapter: acp\n    launch:\n      command: [python3, {}]\n    capabilities: [chat]\n",
        agent()
    )
}

fn opts(extra: &[&str]) -> NodeOpts {
    NodeOpts {
        registry: Some(registry()),
        extra_args: ["--cancel-grace-ms", "1500"].iter().chain(extra).map(|s| (*s).to_owned()).collect(),
        ..NodeOpts::default()
    }
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// chromedriver and the browser, or `None` (skipped locally; a failure under CI).
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let driver = std::env::var_os("ALINK_CHROMEDRIVER").map(PathBuf::from).or_else(|| which(&["chromedriver"]));
    let browser = std::env::var_os("ALINK_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| which(&["chromium", "chromium-browser", "google-chrome"]));
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must provide chromium and chromedriver (.ci/run installs Debian's chromium and chromium-driver)"
            );
            eprintln!(
                "skipped: the console's browser tests need chromium and chromedriver on PATH \
                 (apt-get install chromium chromium-driver), or ALINK_CHROMIUM / ALINK_CHROMEDRIVER"
            );
            None
        }
    }
}

/// A headless Chromium under chromedriver, one WebDriver session. Dropping it ends the session
/// (the browser exits) and kills chromedriver's process group, so nothing is left behind.
struct Browser {
    driver: Child,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    http: reqwest::Client,
    /// Holds the browser's profile until the end.
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(driver_bin: &Path, browser_bin: &Path) -> Result<Browser> {
        let port = common::free_port()?;
        let log = tempfile::NamedTempFile::new()?.into_temp_path().keep()?;
        let mut cmd = Command::new(driver_bin);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn()?;
        let profile = tempfile::tempdir()?;
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser { driver, session: String::new(), http, _profile: profile };
        let started = Instant::now();
        loop {
            if let Ok(r) = browser.http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!("chromedriver did not answer on port {port}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browser_bin.display().to_string(), "args": args}
        }}});
        let resp = browser.http.post(format!("{base}/session")).json(&caps).send().await?;
        let v: Value = resp.json().await?;
        let id = v["value"]["sessionId"].as_str().ok_or_else(|| format!("no WebDriver session: {v}"))?;
        browser.session = format!("{base}/session/{id}");
        Ok(browser)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.session)).timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            return Err(format!("WebDriver {path}: {status} {}", v["value"]).into());
        }
        Ok(v["value"].clone())
    }

    async fn goto(&self, url: &str) -> Result {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    async fn run(&self, script: &str, args: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// Waits until `script` returns something truthy; returns it.
    async fn until(&self, what: &str, script: &str, args: Value) -> Result<Value> {
        let started = Instant::now();
        loop {
            let v = self.run(script, args.clone()).await?;
            let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            if truthy {
                return Ok(v);
            }
            if started.elapsed() > WAIT {
                let page = self.run("return document.body.innerText", json!([])).await.unwrap_or_default();
                return Err(format!("the page never showed {what}; it shows:\n{}", page.as_str().unwrap_or("")).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element `css` (waiting until it exists); its WebDriver reference.
    async fn find(&self, css: &str) -> Result<String> {
        self.until(css, "return document.querySelector(arguments[0]) !== null", json!([css])).await?;
        let v =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await?;
        Ok(v[ELEMENT].as_str().ok_or("no element reference")?.to_owned())
    }

    /// A real click (WebDriver scrolls to it and clicks it like a user).
    async fn click(&self, css: &str) -> Result {
        let id = self.find(css).await?;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await?;
        Ok(())
    }

    async fn type_into(&self, css: &str, text: &str) -> Result {
        let id = self.find(css).await?;
        self.call(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({ "text": text }))).await?;
        Ok(())
    }

    /// Waits until `css` exists and its `data-<attr>` is `value`.
    async fn until_data(&self, css: &str, attr: &str, value: &str) -> Result {
        let script = "const e = document.querySelector(arguments[0]); return e !== null && e.dataset[arguments[1]] === arguments[2]";
        self.until(&format!("{css} with data-{attr}={value}"), script, json!([css, attr, value])).await?;
        Ok(())
    }

    /// Whether the page scrolls sideways.
    async fn scrolls_sideways(&self) -> Result<bool> {
        let v = self
            .run("return document.documentElement.scrollWidth > document.documentElement.clientWidth", json!([]))
            .await?;
        Ok(v == json!(true))
    }

    /// Saves a PNG of the window as `<ALINK_UI_SCREENSHOTS>/<name>.png`, when that is set.
    async fn screenshot(&self, name: &str) -> Result {
        let Some(dir) = std::env::var_os("ALINK_UI_SCREENSHOTS") else { return Ok(()) };
        use base64::Engine as _;
        // Let a debounced redraw settle before the picture.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().ok_or("no screenshot")?)?;
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }

    /// Emulates `prefers-color-scheme` (chromedriver's DevTools bridge).
    async fn color_scheme(&self, scheme: &str) -> Result {
        let cmd = json!({"cmd": "Emulation.setEmulatedMedia", "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}});
        self.call(reqwest::Method::POST, "/goog/cdp/execute", Some(cmd)).await?;
        Ok(())
    }

    /// Presses one key (a WebDriver key code such as Tab `\u{E004}`, Enter `\u{E007}`) where the
    /// focus is.
    async fn press(&self, key: &str) -> Result {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
        ]}]});
        self.call(reqwest::Method::POST, "/actions", Some(actions)).await?;
        Ok(())
    }

    async fn window(&self, width: u32, height: u32) -> Result {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session (the browser exits), then chromedriver and anything it left.
        if !self.session.is_empty() {
            let session = self.session.clone();
            let _ = std::thread::spawn(move || {
                let _ = std::process::Command::new("curl")
                    .args(["-s", "-m", "10", "-X", "DELETE", &session])
                    .stdout(Stdio::null())
                    .status();
            })
            .join();
        }
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.driver.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.driver.wait();
    }
}

/// A task on the loopback target that waits for input until resumed.
async fn awaiting_task(node: &Node) -> Result<String> {
    node.create_with(json!({"target_agent_id": "echo", "intent": "demo.await", "payload": {"mode": "await_input", "prompt": "approve?"}}))
        .await
}

async fn fake_task(node: &Node, text: &str) -> Result<String> {
    node.create_with(json!({"target_agent_id": "fake", "intent": "chat", "payload": {"text": text}})).await
}

#[tokio::test]
async fn the_console_is_embedded_with_strict_headers_behind_the_guard() -> Result {
    let node = Node::start_with(opts(&[]))?;
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/console.js", "text/javascript"),
        ("/ui/console.css", "text/css"),
    ] {
        let resp = node.http.get(node.url(path)).send().await?;
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers().clone();
        let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(header("content-type").starts_with(kind), "{path}: {}", header("content-type"));
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        let body = resp.text().await?;
        assert!(!body.is_empty());
        if kind == "text/html" {
            // No inline script: the script is an asset of the node, nothing from elsewhere.
            assert!(body.contains("<script src=\"/ui/console.js\""), "{body}");
            assert!(!body.contains("<script>") && !body.contains("http://") && !body.contains("https://"), "{body}");
        }
    }
    // The same browser-safety rules as the API: a rebound name and a foreign page are refused.
    let rebound = node.http.get(node.url("/ui")).header("host", "evil.example:80").send().await?;
    assert_eq!(rebound.status(), 421);
    let foreign = node.http.get(node.url("/ui/console.js")).header("origin", "http://evil.example").send().await?;
    assert_eq!(foreign.status(), 403);
    // Not an API operation: the OpenAPI document does not list it.
    let (_, doc) = node.get("/v1/openapi.json").await?;
    assert!(doc["paths"].as_object().is_some_and(|p| !p.keys().any(|k| k.starts_with("/ui"))));
    assert!(doc["paths"]["/v1/events"]["get"].is_object(), "the live feed is documented");
    Ok(())
}

#[tokio::test]
async fn the_live_feed_carries_every_tasks_events_and_node_stats_show_the_tree() -> Result {
    let node = Node::start_with(opts(&[]))?;
    let resp = node.http.get(node.url("/v1/events")).send().await?;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").starts_with("text/event-stream")
    );
    let mut frames = eventsource_stream::Eventsource::eventsource(resp.bytes_stream());
    // Watching: the hub counts it.
    let (_, stats) = node.get("/v1/node/stats").await?;
    assert_eq!(stats["sse_watchers"], 1, "{stats}");
    let a = node.create(json!({"text": "one"})).await?;
    let b = node.create(json!({"text": "two"})).await?;
    let mut seen: Vec<(String, String)> = Vec::new();
    let collect = async {
        while let Some(frame) = frames.next().await {
            let frame = frame?;
            assert_eq!(frame.event, "task.event");
            let ev: Value = serde_json::from_str(&frame.data)?;
            seen.push((ev["task_id"].as_str().unwrap_or("").to_owned(), ev["kind"].as_str().unwrap_or("").to_owned()));
            let done = |id: &str| seen.iter().any(|(t, k)| t == id && k == "task.completed");
            if done(&a) && done(&b) {
                break;
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    tokio::time::timeout(Duration::from_secs(30), collect).await.map_err(|_| format!("feed saw only {seen:?}"))??;
    for id in [&a, &b] {
        let kinds: Vec<&str> = seen.iter().filter(|(t, _)| t == id).map(|(_, k)| k.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"task.created"), "{id}: {kinds:?}");
    }
    let (status, v) = node.get("/v1/events?after=3").await?;
    assert_eq!(status, 400, "{v}");

    let (_, stats) = node.get("/v1/node/stats").await?;
    let services: Vec<&str> = stats["supervision"]["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["service"].as_str())
        .collect();
    assert_eq!(
        services,
        [
            "storage",
            "registry",
            "peer_directory",
            "runtime_supervisor",
            "sse_hub",
            "thread_coordinator",
            "task_supervisor"
        ]
    );
    for s in stats["supervision"]["services"].as_array().into_iter().flatten() {
        assert_eq!(s["running"], true, "{s}");
        assert_eq!(s["restarts"], 0, "{s}");
    }
    assert_eq!(stats["supervision"]["services"][3]["runtimes"][0]["kind"], "loopback", "{stats}");
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    Ok(())
}

#[tokio::test]
async fn the_console_follows_tasks_answers_permissions_cancels_and_drives_targets() -> Result {
    let Some((driver, chromium)) = browser_binaries() else { return Ok(()) };
    let node = Node::start_with(opts(&[]))?;
    let browser = Browser::start(&driver, &chromium).await?;

    // Targets: the ACP target is down before any task; a task launches it, live.
    browser.goto(&node.url("/ui#/targets")).await?;
    browser.until_data("[data-target-id=fake]", "state", "down").await?;
    browser.until("the live feed", "return document.getElementById('live').textContent === 'live'", json!([])).await?;
    let hang = fake_task(&node, "!hang").await?;
    node.wait_status(&hang, "running").await?;
    browser.until_data("[data-target-id=fake]", "state", "up").await?;
    browser
        .until("a pid", "return document.querySelector('[data-target-id=fake] .pid').textContent !== '—'", json!([]))
        .await?;
    assert!(!browser.scrolls_sideways().await?, "targets view scrolls sideways at 1280 px");
    browser.screenshot("targets").await?;

    // Cancel from the task view.
    browser.goto(&node.url(&format!("/ui#/task/{hang}"))).await?;
    browser.until_data("#task-status", "status", "running").await?;
    browser.click("#cancel-task").await?;
    browser.until_data("#task-status", "status", "cancelled").await?;
    browser
        .until(
            "the cancelled event",
            "return document.querySelector('#timeline [data-kind=\"task.cancelled\"]') !== null",
            json!([]),
        )
        .await?;
    assert_eq!(node.task(&hang).await?["status"], "cancelled");

    // The list shows a task created through the API and follows it to completed, no reload.
    browser.goto(&node.url("/ui#/tasks")).await?;
    browser.find("#task-list").await?;
    browser.run("window.__sameDocument = true; return true", json!([])).await?;
    let waiting = awaiting_task(&node).await?;
    let row = format!("#task-list tr[data-task-id='{waiting}']");
    browser.until_data(&row, "status", "awaiting_input").await?;
    node.post(&format!("/v1/tasks/{waiting}/resume"), json!({"payload": {"text": "approved"}})).await?;
    browser.until_data(&row, "status", "completed").await?;
    assert_eq!(
        browser.run("return window.__sameDocument === true", json!([])).await?,
        json!(true),
        "the page reloaded"
    );
    assert!(!browser.scrolls_sideways().await?, "task list scrolls sideways at 1280 px");
    browser.screenshot("tasks").await?;

    // Filter by status: the completed task stays, a cancelled one is not listed.
    browser.click("#filter-status input[data-status=completed]").await?;
    browser.until_data(&row, "status", "completed").await?;
    browser
        .until(
            "no cancelled row",
            "return document.querySelector(`#task-list tr[data-task-id='${arguments[0]}']`) === null",
            json!([hang]),
        )
        .await?;
    browser.click("#filter-status input[data-status=completed]").await?;

    // "Waiting to retry": a task whose failed attempt waits for its retry, and nothing else.
    let retrying = node
        .create_with(json!({"target_agent_id": "echo", "intent": "demo.echo",
            "payload": {"mode": "fail", "reason": "flaky"},
            "retry_policy": {"max_attempts": 2, "initial_delay_ms": 600000}}))
        .await?;
    for _ in 0..200 {
        if node.task(&retrying).await?["next_retry_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    browser.click("#filter-retrying").await?;
    browser.until_data(&format!("#task-list tr[data-task-id='{retrying}']"), "status", "created").await?;
    browser
        .until(
            "only the retrying row",
            "return document.querySelectorAll('#task-list tbody tr[data-task-id]').length === 1",
            json!([]),
        )
        .await?;
    browser.click("#filter-retrying").await?;
    node.post(&format!("/v1/tasks/{retrying}/cancel"), json!({})).await?;

    // Paged: 25 a page, older ones behind "Older".
    let mut echoes = Vec::new();
    for i in 0..25 {
        echoes.push(node.create(json!({ "text": format!("page filler {i}") })).await?);
    }
    for id in &echoes {
        node.wait_status(id, "completed").await?;
    }
    browser
        .until(
            "25 rows",
            "return document.querySelectorAll('#task-list tbody tr[data-task-id]').length === 25",
            json!([]),
        )
        .await?;
    browser.until("an older page", "return !document.getElementById('page-next').disabled", json!([])).await?;
    browser.click("#page-next").await?;
    browser.until_data(&row, "status", "completed").await?;
    browser.click("#page-prev").await?;
    browser.until_data(&format!("#task-list tr[data-task-id='{}']", echoes[24]), "status", "completed").await?;

    // A permission request: its options are buttons; clicking one completes the task.
    let ask = fake_task(&node, "!permission").await?;
    browser.goto(&node.url(&format!("/ui#/task/{ask}"))).await?;
    browser.until_data("#task-status", "status", "awaiting_input").await?;
    browser.find("#resume button[data-option-id='allow-once']").await?;
    browser.screenshot("task-permission").await?;
    // A free answer names no offered option: the node refuses it, and the page says why.
    browser.type_into("#resume-text", "maybe").await?;
    browser.click("#resume-send").await?;
    browser
        .until("the refusal", "return document.getElementById('view-error').textContent.startsWith('400')", json!([]))
        .await?;
    browser.click("#resume button[data-option-id='allow-once']").await?;
    browser.until_data("#task-status", "status", "completed").await?;
    browser.until("the result", "return (document.getElementById('result') || {}).textContent", json!([])).await?;
    let result = browser.run("return document.getElementById('result').textContent", json!([])).await?;
    assert!(result.as_str().unwrap_or("").contains("allowed"), "{result}");
    let done = node.task(&ask).await?;
    assert_eq!(done["status"], "completed");
    browser.screenshot("task").await?;

    // Stop the target from the targets view: its runtime goes down.
    browser.goto(&node.url("/ui#/targets")).await?;
    browser.until_data("[data-target-id=fake]", "state", "up").await?;
    browser.click("[data-target-id=fake] button.stop").await?;
    browser.until_data("[data-target-id=fake]", "state", "down").await?;

    // Threads: the list and the inspection view; continue a thread.
    let (status, v) = node.post("/v1/threads", json!({"agent_a_id": "fake", "agent_b_id": "echo"})).await?;
    assert_eq!(status, 201, "{v}");
    let thread = v["thread"]["thread_id"].as_str().ok_or("no thread id")?.to_owned();
    browser.goto(&node.url("/ui#/threads")).await?;
    browser.find(&format!("#thread-list tr[data-thread-id='{thread}']")).await?;
    browser.screenshot("threads").await?;
    browser.goto(&node.url(&format!("/ui#/thread/{thread}"))).await?;
    browser.until("who speaks next", "return document.body.innerText.includes('fake → echo')", json!([])).await?;
    browser.type_into("#continue-intent", "demo.echo").await?;
    browser.type_into("#continue-text", "hello from the console").await?;
    browser.click("#continue-form button[type=submit]").await?;
    browser
        .until("the first turn", "return document.querySelectorAll('#turns tbody tr').length === 1", json!([]))
        .await?;
    browser.until("echo → fake next", "return document.body.innerText.includes('echo → fake')", json!([])).await?;
    browser.screenshot("thread").await?;

    // Node: the supervision tree, storage figures, identity.
    browser.goto(&node.url("/ui#/node")).await?;
    browser.find("#supervision li[data-service=task_supervisor]").await?;
    browser.find("#supervision li[data-runtime=loopback]").await?;
    let (_, identity) = node.get("/v1/node/identity").await?;
    let key = identity["public_key"]["key"].as_str().ok_or("no key")?.to_owned();
    browser.until("the public key", "return document.body.innerText.includes(arguments[0])", json!([key])).await?;
    assert!(!browser.scrolls_sideways().await?, "node view scrolls sideways at 1280 px");
    browser.screenshot("node").await?;

    // Keyboard: from the top of a fresh page, Tab reaches the skip link, then the views; Enter
    // opens one.
    browser.goto("about:blank").await?;
    browser.goto(&node.url("/ui#/node")).await?;
    browser.find("#supervision").await?;
    let focused = "return document.activeElement ? (document.activeElement.textContent || '').trim() : ''";
    browser.press("\u{E004}").await?;
    assert_eq!(browser.run(focused, json!([])).await?, json!("Skip to content"));
    for _ in 0..2 {
        browser.press("\u{E004}").await?;
    }
    assert_eq!(browser.run(focused, json!([])).await?, json!("Targets"));
    browser.press("\u{E007}").await?;
    browser.until_data("[data-target-id=fake]", "state", "down").await?;

    // Dark mode and a narrow window.
    browser.color_scheme("dark").await?;
    browser.goto(&node.url("/ui#/tasks")).await?;
    browser.until_data(&format!("#task-list tr[data-task-id='{ask}']"), "status", "completed").await?;
    let bg = browser.run("return getComputedStyle(document.body).backgroundColor", json!([])).await?;
    assert_eq!(bg, json!("rgb(19, 21, 25)"), "dark background");
    browser.screenshot("tasks-dark").await?;
    browser.window(420, 900).await?;
    browser.goto(&node.url(&format!("/ui#/task/{ask}"))).await?;
    browser.until_data("#task-status", "status", "completed").await?;
    assert!(!browser.scrolls_sideways().await?, "task view scrolls sideways in a narrow window");
    browser.screenshot("task-narrow").await?;
    Ok(())
}

#[tokio::test]
async fn with_auth_on_the_console_asks_for_a_token_and_then_uses_it() -> Result {
    let Some((driver, chromium)) = browser_binaries() else { return Ok(()) };
    let key = "console-test-admin-key-0123456789";
    let node =
        Node::start_with(NodeOpts { anonymous_register: false, ..opts(&["--require-auth", "--admin-key", key]) })?;
    let browser = Browser::start(&driver, &chromium).await?;
    browser.goto(&node.url("/ui#/tasks")).await?;
    browser
        .until(
            "the token message",
            "const m = document.getElementById('auth-message'); return !m.hidden && m.textContent.includes('needs a token')",
            json!([]),
        )
        .await?;
    browser.screenshot("auth").await?;
    // A task made with the token, then the page given it.
    let resp = node
        .http
        .post(node.url("/v1/tasks"))
        .bearer_auth(key)
        .json(&json!({"target_agent_id": "echo", "intent": "demo.echo", "payload": {"text": "hi"}}))
        .send()
        .await?;
    assert_eq!(resp.status(), 202);
    let task: Value = resp.json().await?;
    let id = task["task"]["task_id"].as_str().ok_or("no id")?.to_owned();
    browser.type_into("#token-input", key).await?;
    browser.click("#token-form button[type=submit]").await?;
    browser.until_data(&format!("#task-list tr[data-task-id='{id}']"), "status", "completed").await?;
    browser.until("the message gone", "return document.getElementById('auth-message').hidden", json!([])).await?;
    browser.until("the live feed", "return document.getElementById('live').textContent === 'live'", json!([])).await?;
    // A wrong token is refused, and said so.
    browser.run("document.getElementById('token-input').value = ''; return true", json!([])).await?;
    browser.type_into("#token-input", "alink_nope_nope").await?;
    browser.click("#token-form button[type=submit]").await?;
    browser
        .until(
            "the refusal",
            "const m = document.getElementById('auth-message'); return !m.hidden && m.textContent.includes('refused the token')",
            json!([]),
        )
        .await?;
    Ok(())
}
