//! `waypoint ui`'s HTTP API against a real server on a free port: every body is the CLI's JSON
//! document for the same question, errors map to ui.md's statuses, actions go through the
//! CLI's service (same refusals), and the token, Origin and read-only rules hold.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use waypoint_store_postgres::testing::TestDatabase;

use crate::cli_harness::{Run, Sandbox};
use crate::ui_harness::{agent, cli_ok, unescape_html, wait_until, UiServer};

/// The name that must always render as text.
pub const XSS_NAME: &str = "<img src=x onerror=alert(1)>";

/// A plan file whose second step fails (stderr `boom: out of memory`, exit 3) twice.
pub const FAILING_PLAN: &str = r#"
name = "train model"
[[steps]]
name = "fetch"
run = "echo fetched"
[[steps]]
name = "train"
run = "echo training; echo 'boom: out of memory' >&2; exit 3"
retries = 1
[[steps]]
name = "publish"
run = "echo published"
"#;

/// The plans the dashboard tests look at.
#[derive(Debug)]
pub struct Plans {
    /// A plan file's plan that failed at step 2 after two attempts.
    pub failed: String,
    /// A plumbing plan interrupted after step 1 of 3.
    pub interrupted: String,
    /// A plan named [`XSS_NAME`], interrupted before its first step.
    pub xss: String,
}

/// Makes [`Plans`] through the CLI.
pub fn populate(sandbox: &Sandbox) -> Plans {
    let file = sandbox.write("train.toml", FAILING_PLAN);
    sandbox.run(&["run", file.to_str().expect("a UTF-8 path")]).expect_code(1);
    let failed = sandbox.only_plan_id();
    cli_ok(sandbox, &["plan", "create", "--id", "tour-1", "--name", "nightly tour", "--total-steps", "3"]);
    cli_ok(sandbox, &["plan", "start", "tour-1", "--phase", "strategize"]);
    cli_ok(sandbox, &["plan", "step-started", "tour-1", "--step", "1", "--decision", "d-1"]);
    cli_ok(sandbox, &["plan", "checkpoint", "tour-1", "--step", "1", "--decision", "d-1", "--name", "plan"]);
    cli_ok(sandbox, &["plan", "interrupt", "tour-1", "--reason", "deploy freeze"]);
    cli_ok(sandbox, &["plan", "create", "--id", "xss-1", "--name", XSS_NAME, "--total-steps", "2"]);
    cli_ok(sandbox, &["plan", "start", "xss-1", "--phase", "strategize"]);
    cli_ok(sandbox, &["plan", "interrupt", "xss-1", "--reason", "waiting"]);
    Plans { failed, interrupted: "tour-1".to_owned(), xss: "xss-1".to_owned() }
}

#[test]
fn every_read_answers_with_the_clis_document() {
    let sandbox = Sandbox::new();
    let plans = populate(&sandbox);
    let server = UiServer::start(&sandbox, &[]);

    let (status, listed) = server.get_json("/api/v1/plans");
    assert_eq!(status, 200);
    assert_eq!(listed["plans"], cli_ok(&sandbox, &["plan", "list"])["plans"]);
    assert_eq!(listed["next_cursor"], Value::Null);
    // Key order is the CLI's too: the document is the same text, not just the same value.
    let (_, text) = server.get("/api/v1/plans/tour-1");
    assert!(text.starts_with("{\"plan_id\":\"tour-1\",\"phase\""), "keys in the CLI's order: {text}");

    let id = &plans.failed;
    let prefix = &id[..6];
    let (_, summary) = server.get_json(&format!("/api/v1/plans/{prefix}"));
    assert_eq!(summary, cli_ok(&sandbox, &["plan", "show", id]));
    let (_, history) = server.get_json(&format!("/api/v1/plans/{id}/history"));
    assert_eq!(history, cli_ok(&sandbox, &["plan", "history", id]));
    let (_, logs) = server.get_json(&format!("/api/v1/plans/{id}/logs"));
    assert_eq!(logs, cli_ok(&sandbox, &["plan", "logs", id]));
    let (_, one) = server.get_json(&format!("/api/v1/plans/{id}/logs?step=2&attempt=1"));
    assert_eq!(one, cli_ok(&sandbox, &["plan", "logs", id, "--step", "2", "--attempt", "1"]));
    assert_eq!(one["logs"][0]["stderr"], "boom: out of memory\n");
    let (_, preview) = server.get_json(&format!("/api/v1/plans/{id}/resume-preview"));
    assert_eq!(preview, cli_ok(&sandbox, &["resume", id, "--dry-run"]));
    assert_eq!(preview["steps"][1]["action"], "rerun");

    let (_, steps) = server.get_json(&format!("/api/v1/plans/{id}/steps"));
    assert_eq!(steps, cli_ok(&sandbox, &["plan", "show", id, "--steps"]));
    let train = &steps["steps"][1];
    assert_eq!((train["name"].as_str(), train["status"].as_str()), (Some("train"), Some("failed")));
    let attempts = train["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{train}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["attempt"], n + 1);
        assert_eq!(attempt["outcome"], "failed");
        assert_eq!(attempt["exit_code"], 3);
        assert!(attempt["started_at"].as_str() <= attempt["ended_at"].as_str(), "{attempt}");
    }
    assert_eq!(steps["steps"][0]["attempts"][0]["outcome"], "completed");
    assert_eq!(steps["steps"][2]["status"], "pending");

    // Plumbing steps have attempts too (one started, one checkpoint).
    let (_, tour) = server.get_json("/api/v1/plans/tour-1/steps");
    assert_eq!(tour["steps"][0]["name"], "plan");
    assert_eq!(tour["steps"][0]["attempts"][0]["outcome"], "completed");

    let (status, health) = server.get("/healthz");
    assert_eq!((status, health.trim()), (200, "ok"));
}

#[test]
fn the_list_filters_searches_and_pages() {
    let sandbox = Sandbox::new();
    let plans = populate(&sandbox);
    for n in 0..4 {
        cli_ok(&sandbox, &["plan", "create", "--id", &format!("extra-{n}"), "--name", &format!("extra {n}")]);
    }
    let server = UiServer::start(&sandbox, &[]);
    let all: Vec<Value> = cli_ok(&sandbox, &["plan", "list"])["plans"].as_array().cloned().expect("plans");
    assert_eq!(all.len(), 7);

    // Two at a time, following next_cursor, gives the whole listing in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/plans?limit=2&cursor={c}"),
            None => "/api/v1/plans?limit=2".to_owned(),
        };
        let (status, page) = server.get_json(&path);
        assert_eq!(status, 200, "{page}");
        let rows = page["plans"].as_array().expect("plans");
        assert!(rows.len() <= 2);
        seen.extend(rows.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, all);

    let (_, failed) = server.get_json("/api/v1/plans?status=failed");
    let ids: Vec<&str> =
        failed["plans"].as_array().expect("plans").iter().filter_map(|p| p["plan_id"].as_str()).collect();
    assert_eq!(ids, [plans.failed.as_str()]);
    let (_, resumable) = server.get_json("/api/v1/plans?resumable=true");
    assert_eq!(resumable["plans"], cli_ok(&sandbox, &["plan", "list", "--resumable"])["plans"]);
    let (_, found) = server.get_json("/api/v1/plans?q=TOUR");
    assert_eq!(found["plans"].as_array().map(Vec::len), Some(1));
    assert_eq!(found["plans"][0]["plan_id"], "tour-1");

    for (query, mentions) in
        [("limit=0", "limit"), ("limit=501", "limit"), ("status=sleeping", "status"), ("cursor=nonsense", "cursor")]
    {
        let (status, error) = server.get_json(&format!("/api/v1/plans?{query}"));
        assert_eq!(status, 400, "{query}: {error}");
        assert_eq!(error["error"]["code"], "invalid_value");
        assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains(mentions)), "{error}");
    }
}

#[test]
fn errors_carry_the_clis_codes_and_uimd_statuses() {
    let sandbox = Sandbox::new();
    populate(&sandbox);
    cli_ok(&sandbox, &["plan", "create", "--id", "abcd-1"]);
    cli_ok(&sandbox, &["plan", "create", "--id", "abcd-2"]);
    let server = UiServer::start(&sandbox, &[]);

    let (status, missing) = server.get_json("/api/v1/plans/no-such-plan");
    assert_eq!(status, 404);
    let cli = sandbox.run(&["plan", "show", "no-such-plan"]).expect_error(3, "plan_not_found");
    assert_eq!(missing, cli);
    // An id given in part, too short to look up, is answered as the CLI answers it.
    let (status, short) = server.get_json("/api/v1/plans/ab");
    assert_eq!(status, 404);
    let cli = sandbox.run(&["plan", "show", "ab"]).expect_error(3, "plan_not_found");
    assert_eq!(short, cli);
    let (status, ambiguous) = server.get_json("/api/v1/plans/abcd");
    assert_eq!(status, 400);
    assert_eq!(ambiguous["error"]["code"], "ambiguous_id");
    let (status, invalid) = server.get_json("/api/v1/plans/not%20an%20id");
    assert_eq!((status, invalid["error"]["code"].as_str()), (400, Some("invalid_value")));
    let (status, _) = server.get_json("/api/v1/plans/tour-1/logs?step=0");
    assert_eq!(status, 400);
    let (status, nothing) = server.get_json("/api/v1/nothing-here");
    assert_eq!((status, nothing["error"]["code"].as_str()), (404, Some("not_found")));

    // Actions are POST only.
    let response = agent().get(server.url("/api/v1/plans/tour-1/cancel")).call().expect("an answer");
    assert_eq!(response.status(), 405);
    // Approving or rejecting a plan that does not wait is the CLI's invalid_state; a rejection
    // needs its reason.
    let (status, error) = server.post_json("/api/v1/plans/tour-1/approve", &json!({}));
    assert_eq!((status, error["error"]["code"].as_str()), (409, Some("invalid_state")), "{error}");
    let cli = sandbox.run(&["plan", "approve", "tour-1", "--by", "dashboard"]).expect_error(7, "invalid_state");
    assert_eq!(error["error"]["message"], cli["error"]["message"]);
    let (status, _) = server.post_json("/api/v1/plans/tour-1/reject", &json!({}));
    assert_eq!(status, 400);
}

#[test]
fn a_person_approves_a_waiting_plan_and_pauses_another_from_the_dashboard() {
    let sandbox = Sandbox::new();
    let plan = sandbox.write(
        "plan.toml",
        "name = \"release\"\n[[steps]]\nname = \"build\"\nrun = \"true\"\n[[steps]]\nname = \"deploy\"\nrun = \"true\"\napproval = \"Deploy?\"\n",
    );
    let waiting = sandbox.run(&["run", plan.to_str().unwrap()]).json();
    assert_eq!(waiting["outcome"], "waiting");
    let id = waiting["plan_id"].as_str().unwrap().to_owned();
    let server = UiServer::start(&sandbox, &[]);
    let (status, shown) = server.get_json(&format!("/api/v1/plans/{id}"));
    assert_eq!((status, shown["status"].as_str()), (200, Some("waiting")), "{shown}");
    assert_eq!(shown["waiting_for"]["question"], "Deploy?");
    let (status, approved) =
        server.post_json(&format!("/api/v1/plans/{id}/approve"), &json!({"by": "alice", "comment": "go"}));
    assert_eq!((status, approved["status"].as_str()), (200, Some("interrupted")), "{approved}");
    let (status, again) = server.post_json(&format!("/api/v1/plans/{id}/reject"), &json!({"reason": "no"}));
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("invalid_state")), "{again}");
    let (status, paused) = server.post_json(&format!("/api/v1/plans/{id}/pause"), &json!({}));
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")), "{paused}");
    let history = sandbox.run(&["plan", "history", &id]).json().to_string();
    assert!(history.contains("step_approved") && history.contains("alice"), "{history}");
}

#[test]
fn actions_work_and_refusals_are_the_clis() {
    let sandbox = Sandbox::new();
    let plans = populate(&sandbox);
    let server = UiServer::start(&sandbox, &[]);

    // Fork the failed plan at step 2: a new plan holding step 1.
    let (status, fork) = server.post_json(&format!("/api/v1/plans/{}/fork", plans.failed), &json!({"from_step": 2}));
    assert_eq!(status, 200, "{fork}");
    let fork_id = fork["plan_id"].as_str().expect("the fork's id");
    assert_eq!(fork, cli_ok(&sandbox, &["plan", "show", fork_id]));
    assert_eq!(fork["forked_from"]["plan_id"], plans.failed.as_str());
    assert_eq!(fork["last_completed_step"], 1);

    // A fork past the completed steps is refused as the CLI refuses it.
    let (status, refused) = server.post_json(&format!("/api/v1/plans/{}/fork", plans.failed), &json!({"from_step": 9}));
    assert_eq!(status, 409, "{refused}");
    let cli = sandbox.run(&["plan", "fork", &plans.failed, "--from-step", "9"]);
    assert_eq!(refused["error"]["code"], cli.json()["error"]["code"]);
    assert_eq!(refused["error"]["message"], cli.json()["error"]["message"]);
    let (status, _) = server.post_json(&format!("/api/v1/plans/{}/fork", plans.failed), &json!({}));
    assert_eq!(status, 400);

    // Cancel works once; the second is the CLI's refusal.
    let (status, cancelled) =
        server.post_json("/api/v1/plans/tour-1/cancel", &json!({"reason": "not needed any more"}));
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled, cli_ok(&sandbox, &["plan", "show", "tour-1"]));
    let (status, again) = server.post_json("/api/v1/plans/tour-1/cancel", &json!({}));
    assert_eq!(status, 409, "{again}");
    let cli = sandbox.run(&["plan", "cancel", "tour-1"]);
    assert_eq!(again, cli.json());

    // Another site's page may not act.
    let response = agent()
        .post(server.url("/api/v1/plans/xss-1/cancel"))
        .header("Content-Type", "application/json")
        .header("Origin", "http://evil.example")
        .send("{}")
        .expect("an answer");
    assert_eq!(response.status(), 403);
    // Nor a form (no JSON body type).
    let response = agent()
        .post(server.url("/api/v1/plans/xss-1/cancel"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send("reason=x")
        .expect("an answer");
    assert_eq!(response.status(), 400);
    assert_eq!(cli_ok(&sandbox, &["plan", "show", "xss-1"])["status"], "interrupted");
}

#[test]
fn read_only_refuses_every_action() {
    let sandbox = Sandbox::new();
    populate(&sandbox);
    let server = UiServer::start(&sandbox, &["--read-only"]);
    let before = sandbox.store_bytes();
    for (path, body) in [
        ("/api/v1/plans/tour-1/cancel", json!({})),
        ("/api/v1/plans/tour-1/fork", json!({"from_step": 2})),
        ("/api/v1/plans/tour-1/pause", json!({})),
        ("/api/v1/plans/tour-1/approve", json!({})),
        ("/api/v1/plans/tour-1/reject", json!({"reason": "no"})),
    ] {
        let (status, error) = server.post_json(path, &body);
        assert_eq!((status, error["error"]["code"].as_str()), (403, Some("read_only")), "{path}");
    }
    let (status, _) = server.get("/");
    assert_eq!(status, 200);
    assert_eq!(sandbox.store_bytes(), before, "a read-only dashboard writes nothing");
}

#[test]
fn a_token_guards_every_request() {
    let sandbox = Sandbox::new();
    populate(&sandbox);
    let token = "t0ken-for-the-dashboard-tests";
    let server = UiServer::start(&sandbox, &["--token", token]);
    assert_eq!(server.token.as_deref(), Some(token), "the printed address carries the token");
    for path in ["/", "/api/v1/plans", "/metrics", "/healthz", "/assets/app.js"] {
        let response = agent().get(server.url(path)).call().expect("an answer");
        assert_eq!(response.status(), 401, "{path} without the token");
    }
    let response =
        agent().get(server.url("/api/v1/plans")).header("Authorization", "Bearer wrong-token-of-some-length").call();
    assert_eq!(response.expect("an answer").status(), 401);
    let (status, _) = server.get("/api/v1/plans");
    assert_eq!(status, 200);
    // /?token= sets the cookie and leaves the address bar clean.
    let response = agent().get(server.url(&format!("/?token={token}"))).call().expect("an answer");
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    let cookie = response.headers()["set-cookie"].to_str().expect("a cookie").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value");
    let response = agent().get(server.url("/")).header("Cookie", pair).call().expect("an answer");
    assert_eq!(response.status(), 200);
    let response = agent().get(server.url(&format!("/?status=failed&token={token}"))).call().expect("an answer");
    assert_eq!(response.headers()["location"], "/?status=failed", "the other parameters stay");
    let response = agent().get(server.url("/?token=nope-nope-nope-nope")).call().expect("an answer");
    assert_eq!(response.status(), 401);
}

/// `waypoint ui ARGS`, which must refuse to start (without a token from the environment).
fn ui_refused(sandbox: &Sandbox, args: &[&str]) -> Run {
    Run::from_output(sandbox.command(args).env_remove("WAYPOINT_UI_TOKEN").output().expect("waypoint runs"))
}

#[test]
fn the_server_refuses_to_start_where_it_should() {
    let sandbox = Sandbox::new();
    populate(&sandbox);
    // Any address but loopback needs a token.
    let refused = ui_refused(&sandbox, &["ui", "--listen", "0.0.0.0:0"]);
    let error = refused.expect_error(2, "token_required");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("--token")), "{error}");
    let short = ui_refused(&sandbox, &["ui", "--listen", "0.0.0.0:0", "--token", "short"]);
    short.expect_error(2, "invalid_value");
    let odd = ui_refused(&sandbox, &["ui", "--listen", "0.0.0.0:0", "--token", "a token with spaces and & in it"]);
    odd.expect_error(2, "invalid_value");
    // A taken port is named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its address").port();
    let busy = ui_refused(&sandbox, &["ui", "--listen", &format!("127.0.0.1:{port}")]);
    let error = busy.expect_error(2, "listen_failed");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains(&port.to_string())), "{error}");
    let garbage = ui_refused(&sandbox, &["ui", "--listen", "nowhere"]);
    garbage.expect_error(2, "invalid_value");
}

#[test]
fn changes_are_streamed_and_counted() {
    let sandbox = Sandbox::new();
    populate(&sandbox);
    let server = UiServer::start(&sandbox, &[]);
    let port = server.base.rsplit(':').next().expect("a port").to_owned();
    let mut events = TcpStream::connect(format!("127.0.0.1:{port}")).expect("the server accepts");
    events.set_read_timeout(Some(Duration::from_secs(60))).expect("a timeout");
    write!(events, "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n")
        .expect("the request is sent");
    let mut reader = BufReader::new(events);
    let mut line = String::new();
    reader.read_line(&mut line).expect("a status line");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // A change made once the server answers is never missed, whenever the poller looks.
    cli_ok(&sandbox, &["plan", "cancel", "xss-1", "--reason", "streamed"]);
    let mut data = None;
    while data.is_none() {
        line.clear();
        reader.read_line(&mut line).expect("the stream goes on");
        if let Some(json) = line.trim().strip_prefix("data:") {
            let summary: Value = serde_json::from_str(json.trim()).expect("a summary");
            // Changes made just before the server started may be sent first: wait for this one.
            if summary["plan_id"] == "xss-1" && summary["status"] == "cancelled" {
                data = Some(summary);
            }
        }
    }
    let summary = data.expect("a plan event");
    assert_eq!(summary, cli_ok(&sandbox, &["plan", "show", "xss-1"]));
    assert_eq!(summary["status"], "cancelled");

    // Steps run while the server watches are counted.
    let file = sandbox.write(
        "ok.toml",
        "name = \"ok\"\n[[steps]]\nname = \"a\"\nrun = \"true\"\n[[steps]]\nname = \"b\"\nrun = \"true\"\n",
    );
    sandbox.run(&["run", file.to_str().expect("UTF-8")]).expect_code(0);
    wait_until("the metrics to count two completed steps", || {
        let (_, text) = server.get("/metrics");
        text.contains("waypoint_steps_completed_total 2")
    });
    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200);
    for expected in [
        "waypoint_plans{status=\"failed\"} 1",
        "waypoint_plans{status=\"cancelled\"} 1",
        "waypoint_plans{status=\"completed\"} 1",
        "waypoint_step_attempts_total 2",
        "waypoint_step_duration_seconds_count{outcome=\"completed\"} 2",
        "# EOF",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
}

#[test]
fn pages_escape_plan_data_and_send_a_policy() {
    let sandbox = Sandbox::new();
    let plans = populate(&sandbox);
    let server = UiServer::start(&sandbox, &[]);
    let response = agent().get(server.url("/")).call().expect("an answer");
    let policy = response.headers()["content-security-policy"].to_str().expect("a policy").to_owned();
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
    for path in ["/".to_owned(), format!("/plans/{}", plans.xss), "/?q=img".to_owned()] {
        let (status, html) = server.get(&path);
        assert_eq!(status, 200, "{path}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{path}: the name as text");
        assert!(!html.contains("<img"), "{path}: no markup from a plan");
    }
    let (status, html) = server.get(&format!("/plans/{}", plans.failed));
    assert_eq!(status, 200);
    assert!(html.contains("boom: out of memory"), "the failed attempt's stderr is on the page");

    // The report: one file, the same page without actions or scripts.
    let report = sandbox.path("report.html");
    cli_ok(&sandbox, &["plan", "report", &plans.failed[..6], "--output", report.to_str().expect("UTF-8")]);
    let html = std::fs::read_to_string(&report).expect("the report");
    assert!(html.contains("boom: out of memory") && html.contains("train model"));
    assert!(!html.contains("<script") && !html.contains("/assets/"), "self-contained, no script");
    assert!(!html.contains("Cancel plan"), "no actions in a report");
    let xss = sandbox.run_rich(&["plan", "report", &plans.xss]);
    xss.expect_code(0);
    assert!(xss.stdout.contains("&lt;img src=x onerror=alert(1)&gt;") && !xss.stdout.contains("<img"));
}

/// A one-step plan file for the queue tests.
const QUEUED_PLAN: &str = "name = \"nightly build\"\n[[steps]]\nname = \"build\"\nrun = \"true\"\n";

/// Plans in two queues (`builds`, limited to 2, and `docs`) and one in none; `b-1` held by a
/// runner `worker-7`, the others waiting.
fn queued_plans(sandbox: &Sandbox) {
    let file = sandbox.write("build.toml", QUEUED_PLAN);
    let file = file.to_str().expect("a UTF-8 path");
    for (key, queue) in [("b-1", "builds"), ("b-2", "builds"), ("b-3", "builds"), ("d-1", "docs")] {
        cli_ok(sandbox, &["submit", file, "--queue", queue, "--key", key]);
    }
    cli_ok(sandbox, &["queue", "set", "builds", "--limit", "2"]);
    cli_ok(sandbox, &["plan", "start", "b-1", "--phase", "strategize", "--runner", "worker-7", "--lease", "10m"]);
    cli_ok(sandbox, &["plan", "create", "--id", "loose-1", "--name", "in no queue"]);
}

#[test]
fn queues_answer_as_queue_list_and_filter_the_plan_list() {
    let sandbox = Sandbox::new();
    queued_plans(&sandbox);
    let server = UiServer::start(&sandbox, &[]);

    let cli = cli_ok(&sandbox, &["queue", "list"]);
    let (status, queues) = server.get_json("/api/v1/queues");
    assert_eq!(status, 200);
    assert_eq!(queues, cli);
    let (_, text) = server.get("/api/v1/queues");
    assert!(text.starts_with(r#"{"queues":[{"queue":"builds","limit":2,"queued":2,"running":1"#), "{text}");

    // `queue=` keeps what `plan list --queue` keeps, a page at a time.
    let (status, builds) = server.get_json("/api/v1/plans?queue=builds");
    assert_eq!(status, 200, "{builds}");
    let listed = cli_ok(&sandbox, &["plan", "list", "--queue", "builds"])["plans"].clone();
    assert_eq!(builds["plans"], listed);
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    let mut seen = Vec::new();
    let mut path = "/api/v1/plans?queue=builds&limit=1".to_owned();
    loop {
        let (status, page) = server.get_json(&path);
        assert_eq!(status, 200, "{page}");
        assert!(page["plans"].as_array().is_some_and(|p| p.len() <= 1), "{page}");
        seen.extend(page["plans"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/api/v1/plans?queue=builds&limit=1&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(Value::from(seen), listed);
    let (_, running) = server.get_json("/api/v1/plans?queue=builds&status=running");
    let ids: Vec<&str> =
        running["plans"].as_array().expect("plans").iter().filter_map(|p| p["plan_id"].as_str()).collect();
    assert_eq!(ids, ["b-1"]);
    let (_, none) = server.get_json("/api/v1/plans?queue=nobody-uses-this");
    assert_eq!(none["plans"], json!([]));
    let (status, error) = server.get_json("/api/v1/plans?queue=no%20such%20name");
    assert_eq!((status, error["error"]["code"].as_str()), (400, Some("invalid_value")), "{error}");

    // The list page filters the same way and keeps the filter in its form and links.
    let (status, html) = server.get("/?queue=docs");
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-plan-id="d-1""#), "{html}");
    for other in ["b-1", "b-2", "loose-1"] {
        assert!(!html.contains(&format!(r#"data-plan-id="{other}""#)), "{other} is not in docs");
    }
    assert!(html.contains(r#"name="queue" value="docs""#), "the form keeps the queue");

    // The queues page: each queue's counts as `queue list`, and who runs what.
    let (status, html) = server.get("/queues");
    assert_eq!(status, 200);
    let row = html
        .split(r#"<tr data-queue="builds">"#)
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("a row for builds");
    for cell in [">2<", ">1<", "worker-7", "/plans/b-1", "href=\"/?queue=builds\""] {
        assert!(row.contains(cell), "{cell:?} in the builds row: {row}");
    }
    assert!(html.contains(r#"<tr data-queue="docs">"#), "{html}");
    let (status, empty) = UiServer::start(&Sandbox::new(), &[]).get("/queues");
    assert_eq!(status, 200);
    assert!(empty.contains("No queues yet"), "{empty}");
}

/// A plan file whose one step has a name made of markup.
const XSS_STEP_PLAN: &str =
    "name = \"hostile step\"\n[[steps]]\nname = \"<img src=x onerror=alert(1)>\"\nrun = \"echo hi\"\n";

#[test]
fn a_step_named_like_markup_is_text_on_the_page_and_in_the_report() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("xss.toml", XSS_STEP_PLAN);
    sandbox.run(&["run", file.to_str().expect("UTF-8")]).expect_code(0);
    let id = sandbox.only_plan_id();
    let server = UiServer::start(&sandbox, &[]);
    let (status, page) = server.get(&format!("/plans/{id}"));
    assert_eq!(status, 200);
    let report = sandbox.run_rich(&["plan", "report", &id]);
    report.expect_code(0);
    for (what, html) in [("the plan page", &page), ("the report", &report.stdout)] {
        assert!(!html.contains("<img"), "{what}: no markup from a step's name");
        // In the steps and in the history, as text.
        let shown = html.matches("&lt;img src=x onerror=alert(1)&gt;").count();
        assert!(shown >= 2, "{what} shows the name {shown} times: {html}");
    }
}

#[test]
fn the_plan_page_says_what_plan_show_and_plan_history_say() {
    let sandbox = Sandbox::new();
    let plans = populate(&sandbox);
    let server = UiServer::start(&sandbox, &[]);
    let id = &plans.failed;
    let (status, html) = server.get(&format!("/plans/{id}"));
    assert_eq!(status, 200);
    let page = unescape_html(&html);
    // Above the history (which, as `plan history`, may name phases), no phase or processing
    // state: the status word and the steps' names.
    let above_history = page.split("id=\"h-history\"").next().expect("the page");
    for internal in ["strategize", "errored", "processing", "phase"] {
        assert!(!above_history.contains(internal), "{internal:?} on the page:\n{above_history}");
    }
    assert!(above_history.contains(">failed<"), "the status word");
    // `plan show`'s rows, in its words.
    let shown = sandbox.run_rich(&["plan", "show", id]);
    shown.expect_code(0);
    let next = shown.stdout.lines().find_map(|l| l.trim().strip_prefix("next")).expect("a next row").trim();
    assert_eq!(next, "step 2 (train) · it failed: it runs again");
    assert!(page.contains(next), "{next:?} on the page");
    assert!(page.contains(">resumable<") && page.contains("waypoint resume"), "{page}");
    // The history in words, as `plan history` prints it (lines it had to cut aside), never
    // the events' JSON.
    let history = sandbox.run_rich(&["plan", "history", id]);
    history.expect_code(0);
    let mut compared = 0;
    for line in history.stdout.lines().filter(|l| !l.contains('…')) {
        let kind = line.split_whitespace().nth(3).expect("a type");
        let said = line.split_once(&format!("{kind} ")).map_or("", |(_, rest)| rest).trim();
        if !said.is_empty() {
            assert!(page.contains(said), "{said:?} from `plan history` on the page");
            compared += 1;
        }
    }
    assert!(compared >= 5, "{}", history.stdout);
    assert!(page.contains("step 2 (train) · attempt 1"), "the failed attempt, named");
    // The preview, in the words of `resume --dry-run`.
    let dry_run = sandbox.run_rich(&["resume", id, "--dry-run"]);
    dry_run.expect_code(0);
    for (step, words) in
        [("1 (fetch)", "skipped: completed"), ("2 (train)", "runs again: it failed"), ("3 (publish)", "runs")]
    {
        let name = step.split(['(', ')']).nth(1).expect("a name");
        assert!(
            dry_run.stdout.lines().any(|l| l.contains(name) && l.trim_end().ends_with(words)),
            "{}",
            dry_run.stdout
        );
        assert!(page.contains(&format!("step {step}: {words}<")), "{step}: {words} on the page");
    }
    assert!(!page.contains("\"decision_id\""), "no event JSON");
}

#[test]
fn the_dashboard_serves_a_postgresql_store_and_says_when_it_is_gone() {
    let db = TestDatabase::create("ui_api");
    let url = db.url().to_owned();
    let sandbox = Sandbox::new();
    let file = sandbox.write("train.toml", FAILING_PLAN);
    sandbox.run(&["--store", &url, "run", file.to_str().expect("UTF-8")]).expect_code(1);
    cli_ok(&sandbox, &["--store", &url, "plan", "create", "--id", "pg-2", "--name", XSS_NAME]);
    let server = UiServer::start(&sandbox, &["--store", &url]);

    let listed = cli_ok(&sandbox, &["--store", &url, "plan", "list"]);
    let (status, page) = server.get_json("/api/v1/plans");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["plans"], listed["plans"]);
    assert_eq!(page["plans"].as_array().map(Vec::len), Some(2));
    let id = listed["plans"]
        .as_array()
        .and_then(|plans| plans.iter().find(|p| p["status"] == "failed"))
        .and_then(|p| p["plan_id"].as_str())
        .expect("the failed plan")
        .to_owned();
    let (status, steps) = server.get_json(&format!("/api/v1/plans/{id}/steps"));
    assert_eq!(status, 200);
    assert_eq!(steps, cli_ok(&sandbox, &["--store", &url, "plan", "show", &id, "--steps"]));

    let (status, html) = server.get("/");
    assert_eq!(status, 200);
    assert!(html.contains("train model") && html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    let (status, html) = server.get(&format!("/plans/{id}"));
    assert_eq!(status, 200);
    assert!(html.contains("boom: out of memory"), "the failed attempt's stderr");
    assert!(html.contains("step 2 (train)"), "steps by name");

    // The database goes away under the server: the API says the store is unavailable (503).
    drop(db);
    let (status, error) = server.get_json("/api/v1/plans");
    assert_eq!(status, 503, "{error}");
    assert!(error["error"]["code"].as_str().is_some_and(|c| c.starts_with("store_")), "{error}");
    let (status, _) = server.get("/healthz");
    assert_eq!(status, 503);
    let (status, html) = server.get("/");
    assert_eq!(status, 503);
    assert!(html.contains("Something is wrong"), "{html}");
}
