//! The dashboard in a real browser: headless Chromium driven over WebDriver, as a person would
//! use it. The list shows plans made with the CLI and follows their changes without a reload,
//! the plan page shows a failed attempt's stderr, an action works and a refused one shows its
//! message, a plan named like markup shows as text. Each page is photographed (see
//! `ui_harness::screenshot_dir`).

use serde_json::json;

use crate::cli_harness::Sandbox;
use crate::ui_api::{populate, XSS_NAME};
use crate::ui_harness::{cli_ok, screenshot_dir, wait_until, Browser, UiServer};

#[test]
fn a_person_reads_and_acts_through_the_pages() {
    let sandbox = Sandbox::new();
    let plans = populate(&sandbox);
    // A plan waiting in a queue, for the queue column and the queues page.
    let build = sandbox.write("build.toml", "name = \"nightly build\"\n[[steps]]\nname = \"build\"\nrun = \"true\"\n");
    cli_ok(&sandbox, &["submit", build.to_str().expect("UTF-8"), "--queue", "builds", "--key", "build-1"]);
    cli_ok(&sandbox, &["submit", build.to_str().expect("UTF-8"), "--queue", "builds", "--key", "build-2"]);
    cli_ok(&sandbox, &["queue", "set", "builds", "--limit", "2"]);
    cli_ok(&sandbox, &["plan", "start", "build-1", "--phase", "strategize", "--runner", "worker-7", "--lease", "1h"]);
    let server = UiServer::start(&sandbox, &[]);
    let browser = Browser::start();
    let shots = screenshot_dir();

    // The list shows the plans the CLI made, with their status words.
    browser.goto(&server.url("/"));
    browser.wait_for("table.plans");
    let row = |id: &str| format!("tr[data-plan-id=\"{id}\"]");
    assert!(browser.text(&row(&plans.failed)).contains("failed"), "{}", browser.text("table.plans"));
    assert!(browser.text(&row(&plans.failed)).contains("train model"));
    assert!(browser.text(&row(&plans.interrupted)).contains("interrupted"));
    assert!(browser.text(&row(&plans.interrupted)).contains("1 of 3"));

    // A name made of markup is text: no image element, no script ran.
    assert_eq!(browser.text(&format!("{} td.name a", row(&plans.xss))), XSS_NAME);
    assert_eq!(browser.execute("return document.querySelectorAll('main img').length;", json!([])), json!(0));
    browser.wait_for("#live");
    wait_until("live updates to connect", || browser.text("#live").contains("on"));
    browser.screenshot(&shots.join("plans.png"));

    // A change made with the CLI appears without a reload.
    browser.execute("window.__notReloaded = true;", json!([]));
    cli_ok(&sandbox, &["plan", "cancel", &plans.xss, "--reason", "seen live"]);
    wait_until("the row to say cancelled", || browser.text(&row(&plans.xss)).contains("cancelled"));
    assert_eq!(browser.execute("return window.__notReloaded === true;", json!([])), json!(true), "no reload");

    // Search and the status filter, with the keyboard.
    browser.type_into("input[name=q]", "tour");
    browser.keys("input[name=q]", "\u{E007}");
    wait_until("the search to apply", || browser.current_url().contains("q=tour"));
    browser.wait_for("table.plans");
    assert!(browser.text("table.plans").contains("nightly tour"));
    assert!(!browser.text("table.plans").contains("train model"));

    // The failed plan's page: its failed attempt's stderr, its resume preview in words.
    browser.goto(&server.url(&format!("/plans/{}", plans.failed)));
    browser.wait_for("#plan-live");
    let summary = browser.text("table.summary");
    assert!(summary.contains("step 2 (train) · it failed: it runs again"), "{summary}");
    assert!(summary.contains("exited with code 3"), "{summary}");
    assert!(browser.text("main").contains("step 2 (train): runs again: it failed"), "{}", browser.text("main"));
    browser.click("#logs-2-1 summary");
    wait_until("the attempt's stderr to show", || browser.text("#logs-2-1 pre.stderr").contains("boom: out of memory"));
    browser.screenshot(&shots.join("plan.png"));

    // A refused action shows the refusal's message: there is no step 9 to fork from.
    browser.type_into("form[data-action=fork] input[name=from_step]", "9");
    browser.click("form[data-action=fork] button");
    wait_until("the refusal to show", || browser.text("#action-message").contains("step"));
    let shown = browser.text("#action-message");
    let cli = sandbox.run(&["plan", "fork", &plans.failed, "--from-step", "9"]);
    let message = cli.json()["error"]["message"].as_str().expect("the CLI's message").to_owned();
    assert!(shown.contains(&message), "the page shows {shown:?}, the CLI says {message:?}");

    // An action that works: cancel the interrupted plan from its page.
    browser.goto(&server.url(&format!("/plans/{}", plans.interrupted)));
    browser.type_into("form[data-action=cancel] input[name=reason]", "done by hand");
    browser.click("form[data-action=cancel] button");
    wait_until("the page to say cancelled", || browser.text("#action-message").contains("cancelled"));
    wait_until("the summary to follow", || browser.text(".ids").contains("cancelled"));
    assert_eq!(cli_ok(&sandbox, &["plan", "show", &plans.interrupted])["status"], "cancelled");
    assert!(browser.find("form[data-action=cancel]").is_none(), "a cancelled plan offers no cancel");

    // The queues, reached from the header with the keyboard; a queue's link lists its plans.
    browser.keys("nav.sections a[href=\"/queues\"]", "\u{E007}");
    browser.wait_for("table.queues");
    let builds = browser.text("tr[data-queue=builds]");
    assert!(builds.contains("worker-7: build-1"), "who runs what: {builds}");
    browser.screenshot(&shots.join("queues.png"));
    browser.click("tr[data-queue=builds] a");
    wait_until("the list of the queue's plans", || browser.current_url().contains("queue=builds"));
    browser.wait_for("table.plans");
    assert!(browser.text("table.plans").contains("nightly build"));
    assert!(!browser.text("table.plans").contains("train model"));
}
