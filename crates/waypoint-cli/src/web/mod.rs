//! `waypoint ui`: the web dashboard and its JSON HTTP API over any store (`shared/spec/ui.md`),
//! and `plan report`, the same plan page as one self-contained HTML file. axum on a small tokio
//! runtime serves it; the store is reached only through the service the CLI uses, on tokio's
//! blocking threads. `reads.rs` answers with the CLI's JSON documents, `pages.rs` renders HTML
//! (maud escapes every value), `server.rs` routes and guards, `live.rs` notices changes for
//! Server-Sent Events and the metrics, `metrics.rs` exports them.

mod live;
mod metrics;
mod pages;
mod reads;
mod server;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use clap::Args;
use waypoint_domain::PlanId;

use crate::error::{exit, CliError};
use crate::steps::steps_doc;
use crate::store::{LocationExt, StoreLocation};
use crate::text::shown_path;
use crate::ui::Ui;

pub const UI_LONG_ABOUT: &str = "\
Serves a web dashboard and the JSON HTTP API it is built on, over this store (--store as everywhere), until \
you stop it with Ctrl-C. It prints the address to open.

The pages: every plan with its status, progress, whether it can resume and why not, updated live (filter \
by status, queue or text); each plan's summary in words, a timeline of its steps with every attempt drawn \
to scale, their outputs and logs, what a resume would do, its history, and buttons for what it allows now \
(cancel, pause, approve or reject a waiting step, fork); and the queues, with who runs what.

The API (/api/v1) answers with the same JSON documents as `--format json`: GET /api/v1/plans \
(?status=&resumable=true&q=&queue=&limit=&cursor=), /api/v1/plans/ID, …/steps, …/history, …/logs, \
…/resume-preview, /api/v1/queues; POST …/cancel, …/pause, …/approve, …/reject and …/fork \
({\"from_step\": N}); GET /api/v1/events (Server-Sent Events), /metrics (Prometheus), /healthz.

It listens on 127.0.0.1 unless told otherwise. Any other address needs a token (--token or \
$WAYPOINT_UI_TOKEN: at least 16 letters, digits, `-`, `.`, `_` or `~`); with a token every request must \
carry it (`Authorization: Bearer TOKEN`, or the cookie the page sets after /?token=TOKEN). --read-only refuses every action (HTTP 403).";

pub const UI_EXAMPLES: &str = "\
Examples:
  waypoint ui                                    then open http://127.0.0.1:8080/
  waypoint ui --listen 127.0.0.1:9000 --read-only
  WAYPOINT_UI_TOKEN=$(openssl rand -hex 16) waypoint ui --listen 0.0.0.0:8080
  curl -s 127.0.0.1:8080/api/v1/plans?status=failed";

/// The shortest token accepted: a guessable token protects nothing.
const MIN_TOKEN: usize = 16;

#[derive(Debug, Args)]
pub struct UiArgs {
    /// The address to listen on; any address but loopback needs --token
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The secret every request must carry (at least 16 of A-Z a-z 0-9 - . _ ~)
    #[arg(long, value_name = "TOKEN", env = "WAYPOINT_UI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Show plans but refuse every action (cancel, pause, approve, reject, fork)
    #[arg(long)]
    pub read_only: bool,
}

/// `waypoint ui`: checks the address and token, opens the store, binds, prints the URL, serves.
pub fn serve(location: &StoreLocation, ui: &Ui, args: UiArgs) -> Result<(), CliError> {
    let addr = listen_address(&args.listen)?;
    let token = args.token.filter(|t| !t.is_empty());
    if let Some(token) = &token {
        check_token(token)?;
    } else if !addr.ip().is_loopback() {
        return Err(CliError::usage(
            "token_required",
            format!(
                "listening on {addr} lets other machines in, so it needs a token: give --token or set WAYPOINT_UI_TOKEN (at least {MIN_TOKEN} characters), or listen on 127.0.0.1"
            ),
        ));
    }
    let stores = reads::Stores::open(location, args.read_only)?;
    let listener = TcpListener::bind(addr).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => "the port is taken by another program".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)".to_owned(),
            _ => e.to_string(),
        };
        CliError::usage(
            "listen_failed",
            format!("cannot listen on {addr}: {why}; give another address with --listen 127.0.0.1:PORT"),
        )
        .with("listen", addr.to_string())
    })?;
    let bound =
        listener.local_addr().map_err(|e| CliError::unexpected(format!("cannot read the bound address: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| CliError::unexpected(format!("cannot set up the listener: {e}")))?;
    let url = match &token {
        Some(token) => format!("http://{bound}/?token={token}"),
        None => format!("http://{bound}/"),
    };
    if ui.json() {
        ui.stdout(
            &serde_json::json!({ "url": url, "listen": bound.to_string(), "read_only": args.read_only }).to_string(),
        );
    } else {
        ui.stdout(&format!("Waypoint dashboard on {}: open {url}", location.display()));
        ui.note("Ctrl-C stops it");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_io()
        .enable_time()
        .thread_name("waypoint-ui")
        .build()
        .map_err(|e| CliError::unexpected(format!("cannot start the server's runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| CliError::unexpected(format!("cannot set up the listener: {e}")))?;
        let live = live::Live::new();
        let metrics = Arc::new(metrics::Metrics::new());
        live::spawn_poller(stores.clone(), live.clone(), metrics.clone());
        let app = Arc::new(server::App { stores, token, live, metrics });
        axum::serve(listener, server::router(app))
            .await
            .map_err(|e| CliError::unexpected(format!("the server stopped: {e}")))
    })
}

/// `--listen`: an IP address and port, or a name that resolves to one (`localhost:8080`).
fn listen_address(text: &str) -> Result<SocketAddr, CliError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let invalid = || {
        CliError::usage(
            "invalid_value",
            format!("--listen {text:?} is not an address and port, such as 127.0.0.1:8080 or [::1]:8080"),
        )
    };
    if !text.contains(':') {
        return Err(invalid());
    }
    text.to_socket_addrs().map_err(|_| invalid())?.next().ok_or_else(invalid)
}

/// A token travels in the printed address, a header and a cookie: long enough not to be
/// guessed, and of characters none of them needs to escape.
fn check_token(token: &str) -> Result<(), CliError> {
    if token.chars().count() < MIN_TOKEN {
        return Err(CliError::usage(
            "invalid_value",
            format!("the token is too short; give at least {MIN_TOKEN} characters (e.g. `openssl rand -hex 16`)"),
        ));
    }
    if !token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')) {
        return Err(CliError::usage(
            "invalid_value",
            "the token may hold letters, digits, `-`, `.`, `_` and `~` only (it travels in an address and a cookie)",
        ));
    }
    Ok(())
}

/// Everything the plan page shows about the plan `given` names.
fn plan_page_data(stores: &reads::Stores, given: &str) -> Result<pages::PlanPage, CliError> {
    let id = stores.resolve(given)?;
    let (summary, view) = stores.summary(&id)?;
    let events = stores.events(&id)?;
    let steps = steps_doc(&id, &events, summary.status);
    let logs = stores.logs(&id, None, None)?;
    let preview = stores.preview(&id);
    Ok(pages::PlanPage { summary, view, steps, logs, preview, events })
}

/// `plan show ID --steps`: the attempt timeline, as JSON (the same document in either format).
pub fn show_steps(location: &StoreLocation, ui: &Ui, id: &PlanId) -> Result<(), CliError> {
    let service = location.open_read_only_for(id)?;
    let summary = futures::executor::block_on(service.build_resume_summary(id, None))?;
    let events = futures::executor::block_on(service.history(id))?;
    ui.json_document(&steps_doc(id, &events, summary.status));
    Ok(())
}

/// `plan report ID [--output FILE]`: the plan page as one file, without actions or scripts.
pub fn report(location: &StoreLocation, ui: &Ui, id: &PlanId, output: Option<&Path>) -> Result<(), CliError> {
    let stores = reads::Stores::open(location, true).map_err(|e| match e.code {
        "store_not_found" => CliError::from(waypoint_application::ServiceError::NotFound(id.clone())),
        _ => e,
    })?;
    let plan = plan_page_data(&stores, id.as_str())?;
    let html = pages::plan_page(pages::Mode::Report, &plan, Utc::now()).into_string();
    match output {
        None => ui.stdout(&html),
        Some(path) => {
            std::fs::write(path, html).map_err(|e| {
                CliError::new(exit::UNEXPECTED, "write_failed", format!("cannot write {}: {e}", shown_path(path)))
            })?;
            if ui.json() {
                ui.json_document(&serde_json::json!({ "plan_id": id, "report": path.display().to_string() }));
            } else {
                ui.stdout(&format!("report on plan {id} written to {}", shown_path(path)));
            }
        }
    }
    Ok(())
}
