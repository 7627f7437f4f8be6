//! Drives `waypoint ui` for the dashboard's tests: a real server on a free port (it is started on
//! port 0 and prints the address it got), an HTTP client for its API, and a small WebDriver
//! client that drives headless Chromium through `chromedriver`. Chromium and chromedriver are
//! required: without them the browser tests fail, saying how to install them; they never skip.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli_harness::Sandbox;

/// How long to wait for a page, a server or a browser to get somewhere.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A running `waypoint ui`; stopped when dropped.
#[derive(Debug)]
pub struct UiServer {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    pub token: Option<String>,
    _stdout: BufReader<ChildStdout>,
}

impl UiServer {
    /// `waypoint ui --listen 127.0.0.1:0 EXTRA…` on the sandbox's store.
    pub fn start(sandbox: &Sandbox, extra: &[&str]) -> Self {
        let mut args = vec!["ui", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = sandbox
            .command(&args)
            .env_remove("WAYPOINT_UI_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("waypoint ui starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("waypoint ui prints its address");
        if line.trim().is_empty() {
            let mut stderr = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
            panic!("waypoint ui printed no address; stderr:\n{stderr}");
        }
        let printed: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON line ({e}): {line}"));
        let url = printed["url"].as_str().expect("a url").to_owned();
        let listen = printed["listen"].as_str().expect("the address").to_owned();
        let token = url.split_once("?token=").map(|(_, t)| t.to_owned());
        let server = Self { child, base: format!("http://{listen}"), token, _stdout: stdout };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut request = agent().get(format!("{}/healthz", self.base));
            if let Some(token) = &self.token {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            if request.call().is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "waypoint ui at {} never answered /healthz", self.base);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path` (with the token, if any): status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut request = agent().get(self.url(path));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().expect("a text body"))
    }

    /// GET `path` as JSON.
    #[track_caller]
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.get(path);
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"));
        (status, json)
    }

    /// POST a JSON body to `path` (with the token, if any), as the page does.
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut request = agent().post(self.url(path)).header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.send(body.to_string()).unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("a text body");
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}")))
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that hands back every status (an error status is an answer, not a failure).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_redirects(0)
        .build()
        .into()
}

/// Runs `waypoint ARGS` on the sandbox's store and asserts it succeeded.
#[track_caller]
pub fn cli_ok(sandbox: &Sandbox, args: &[&str]) -> Value {
    let run = sandbox.run(args);
    run.expect_code(0);
    if run.stdout.trim().is_empty() {
        Value::Null
    } else {
        run.json()
    }
}

/// The text an HTML page says: its character references decoded (the pages' templates escape
/// `&`, `<`, `>`, `"` and `'`), its markup left as it is.
pub fn unescape_html(html: &str) -> String {
    html.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// Waits for `condition`, panicking with `what` if it never holds.
#[track_caller]
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where the screenshots the browser tests take are written: `docs/screenshots/` when
/// `WAYPOINT_UPDATE_SCREENSHOTS=1` (to commit them), otherwise beside the test's build output.
pub fn screenshot_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf();
    let dir = if std::env::var_os("WAYPOINT_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        root.join("docs/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };
    std::fs::create_dir_all(&dir).expect("the screenshot folder can be made");
    dir
}

/// Headless Chromium driven over WebDriver by a `chromedriver` this struct starts and stops.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// The WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session. Panics, saying what to
    /// install, when either is missing: the browser tests never skip.
    pub fn start() -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the dashboard's browser tests need headless Chromium; install it with `apt-get install -y chromium chromium-driver` (.ci/run does) — package {package}"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        wait_until("chromedriver to answer", || {
            agent().get(format!("{base}/status")).call().is_ok_and(|r| r.status() == 200)
        });
        let profile = tempfile::tempdir().expect("a profile folder");
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            format!("--user-data-dir={}", profile.path().display()),
        ]);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut browser = Self { driver, base, session: String::new(), _profile: profile };
        let created = browser.command("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"].as_str().expect("a WebDriver session id").to_owned();
        browser
    }

    /// One WebDriver command; panics with the driver's answer if it fails.
    #[track_caller]
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let agent = agent();
        let mut response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            (_, body) => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        }
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("a WebDriver answer");
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(status == 200, "WebDriver {method} {path}: HTTP {status}: {text}");
        value["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", &self.session_path("/url"), Some(json!({"url": url})));
    }

    pub fn current_url(&self) -> String {
        self.command("GET", &self.session_path("/url"), None).as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` in the page (its `arguments` are `args`) and returns its value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.command("POST", &self.session_path("/execute/sync"), Some(json!({"script": script, "args": args})))
    }

    /// The element `css` selects, if there is one now.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = self.execute("return document.querySelector(arguments[0]);", json!([css]));
        found.get(ELEMENT).and_then(Value::as_str).map(str::to_owned)
    }

    /// Waits for the element `css` selects.
    #[track_caller]
    pub fn wait_for(&self, css: &str) -> String {
        let mut found = None;
        wait_until(&format!("an element {css:?}"), || {
            found = self.find(css);
            found.is_some()
        });
        found.expect("found")
    }

    /// The rendered text of the element `css` selects ("" when there is none).
    pub fn text(&self, css: &str) -> String {
        let text =
            self.execute("var e = document.querySelector(arguments[0]); return e ? e.innerText : '';", json!([css]));
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Clicks the element `css` selects, as a person would (WebDriver's click).
    #[track_caller]
    pub fn click(&self, css: &str) {
        let element = self.wait_for(css);
        self.command("POST", &self.session_path(&format!("/element/{element}/click")), None);
    }

    /// Types `text` into the element `css` selects, after clearing it.
    #[track_caller]
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css);
        self.command("POST", &self.session_path(&format!("/element/{element}/clear")), None);
        self.command("POST", &self.session_path(&format!("/element/{element}/value")), Some(json!({"text": text})));
    }

    /// Presses keys in the focused element (WebDriver's key codes, e.g. "\u{E007}" for Enter).
    pub fn keys(&self, css: &str, keys: &str) {
        let element = self.wait_for(css);
        self.command("POST", &self.session_path(&format!("/element/{element}/value")), Some(json!({"text": keys})));
    }

    /// A PNG of the whole page, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        // The window as tall as the page, so the screenshot shows all of it (measured in a
        // short window: a page is never shorter than its window).
        self.command("POST", &self.session_path("/window/rect"), Some(json!({"width": 1280, "height": 600})));
        let height = self.execute("return document.documentElement.scrollHeight;", json!([])).as_u64().unwrap_or(1000);
        self.command(
            "POST",
            &self.session_path("/window/rect"),
            Some(json!({"width": 1280, "height": height.clamp(600, 4000) + 120})),
        );
        self.execute(
            "window.scrollTo(0, 0); if (document.activeElement) { document.activeElement.blur(); }",
            json!([]),
        );
        let encoded = self.command("GET", &self.session_path("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("the screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::write(path, png).expect("the screenshot is written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = agent().delete(format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}
