//! The HTTP surface of `waypoint ui`: the routes, the JSON API's handlers and errors, the pages,
//! and the guard every request passes (token, Origin, read-only, security headers). Every store
//! call runs on tokio's blocking threads, never on its async workers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use waypoint_domain::{Attempt, StepNumber};

use super::live::Live;
use super::metrics::Metrics;
use super::pages::{self, Mode};
use super::reads::{Decision, PageQuery, Stores};
use crate::error::{exit, CliError};

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    pub stores: Stores,
    pub token: Option<String>,
    pub live: Live,
    pub metrics: Arc<Metrics>,
}

type Shared = Arc<App>;

/// The cookie the page sets after `/?token=…`, so a browser need not send the header.
const TOKEN_COOKIE: &str = "waypoint_ui_token";

/// Only this server's own scripts and styles; nothing from another host, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(plans_page))
        .route("/plans/{id}", get(plan_page))
        .route("/queues", get(queues_page))
        .route("/fragments/queues", get(queues_fragment))
        .route("/fragments/plans", get(plans_fragment))
        .route("/fragments/plans/{id}", get(plan_fragment))
        .route("/assets/app.css", get(|| async { asset("text/css; charset=utf-8", pages::CSS) }))
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", pages::JS) }))
        .route("/assets/icon.svg", get(|| async { asset("image/svg+xml", pages::ICON) }))
        .route("/api/v1/plans", get(api_plans))
        .route("/api/v1/plans/{id}", get(api_plan))
        .route("/api/v1/queues", get(api_queues))
        .route("/api/v1/plans/{id}/steps", get(api_steps))
        .route("/api/v1/plans/{id}/history", get(api_history))
        .route("/api/v1/plans/{id}/logs", get(api_logs))
        .route("/api/v1/plans/{id}/resume-preview", get(api_preview))
        .route("/api/v1/plans/{id}/cancel", post(api_cancel))
        .route("/api/v1/plans/{id}/fork", post(api_fork))
        .route("/api/v1/plans/{id}/{action}", post(api_decide))
        .route("/api/v1/events", get(api_events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// A CLI error as the API answers it: the CLI's error object, under the HTTP status ui.md maps
/// it to.
#[derive(Debug)]
pub struct ApiError(pub CliError);

impl From<CliError> for ApiError {
    fn from(error: CliError) -> Self {
        Self(error)
    }
}

pub fn http_status(error: &CliError) -> StatusCode {
    match error.code {
        "read_only" | "cross_origin" => return StatusCode::FORBIDDEN,
        "unauthorized" => return StatusCode::UNAUTHORIZED,
        "not_implemented" => return StatusCode::NOT_IMPLEMENTED,
        _ => {}
    }
    match error.exit {
        exit::USAGE => StatusCode::BAD_REQUEST,
        exit::NOT_FOUND => StatusCode::NOT_FOUND,
        exit::NOT_ELIGIBLE | exit::CONFLICT | exit::INVALID_COMMAND => StatusCode::CONFLICT,
        exit::STORE_UNREADABLE => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (http_status(&self.0), Json(self.0.to_json())).into_response()
    }
}

/// A CLI error on a page: the same status, as HTML.
struct PageError(CliError);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mode = Mode::Served { read_only: false };
        (http_status(&self.0), Html(pages::error_page(mode, &self.0).into_string())).into_response()
    }
}

/// Runs a store call on the blocking threads.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, CliError> + Send + 'static,
) -> Result<T, CliError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(CliError::unexpected(format!("a store call stopped: {e}"))))
}

/// Renders a page on the blocking threads; a failure is the error page.
async fn html_page(render: impl FnOnce() -> Result<String, CliError> + Send + 'static) -> Response {
    match blocking(render).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => PageError(e).into_response(),
    }
}

fn mode(app: &App) -> Mode {
    Mode::Served { read_only: app.stores.read_only }
}

fn page_query(query: &HashMap<String, String>) -> Result<PageQuery, CliError> {
    PageQuery::parse(|key| query.get(key).cloned())
}

async fn plans_page(State(app): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let mode = mode(&app);
    html_page(move || {
        let query = page_query(&query)?;
        let page = app.stores.listing(&query)?;
        Ok(pages::plans_page(mode, &page, &query, Utc::now()).into_string())
    })
    .await
}

async fn plans_fragment(State(app): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    html_page(move || {
        let query = page_query(&query)?;
        let page = app.stores.listing(&query)?;
        Ok(pages::plans_live(&page, &query, Utc::now()).into_string())
    })
    .await
}

async fn plan_page(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    let mode = mode(&app);
    html_page(move || {
        let plan = super::plan_page_data(&app.stores, &id)?;
        Ok(pages::plan_page(mode, &plan, Utc::now()).into_string())
    })
    .await
}

async fn plan_fragment(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    let mode = mode(&app);
    html_page(move || {
        let plan = super::plan_page_data(&app.stores, &id)?;
        Ok(pages::plan_live(mode, &plan, Utc::now()).into_string())
    })
    .await
}

/// The queue overview: every queue (as `queue list`) and who runs what in each.
fn queue_board(stores: &Stores) -> Result<pages::QueueBoard, CliError> {
    let queues = stores.queues()?;
    let running = queues.iter().map(|q| stores.running_in(&q.queue)).collect::<Result<Vec<_>, _>>()?;
    Ok(pages::QueueBoard { queues, running })
}

async fn queues_page(State(app): State<Shared>) -> Response {
    let mode = mode(&app);
    html_page(move || Ok(pages::queues_page(mode, &queue_board(&app.stores)?).into_string())).await
}

async fn queues_fragment(State(app): State<Shared>) -> Response {
    html_page(move || Ok(pages::queues_live(&queue_board(&app.stores)?).into_string())).await
}

/// `queue list --format json`'s document, built by the same function.
async fn api_queues(State(app): State<Shared>) -> Result<Response, ApiError> {
    let queues = blocking(move || app.stores.queues()).await?;
    Ok(Json(crate::commands::queues_doc(&queues)).into_response())
}

async fn api_plans(
    State(app): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let body = blocking(move || {
        let query = page_query(&query)?;
        let page = app.stores.listing(&query)?;
        Ok(serde_json::to_string(&page.doc()).expect("a page serializes"))
    })
    .await?;
    Ok(json_text(body))
}

async fn api_plan(State(app): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let summary = blocking(move || {
        let id = app.stores.resolve(&id)?;
        Ok(app.stores.summary(&id)?.0)
    })
    .await?;
    Ok(Json(summary).into_response())
}

async fn api_steps(State(app): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let doc = blocking(move || {
        let id = app.stores.resolve(&id)?;
        app.stores.steps(&id)
    })
    .await?;
    Ok(Json(doc).into_response())
}

async fn api_history(State(app): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let doc = blocking(move || {
        let id = app.stores.resolve(&id)?;
        app.stores.history(&id)
    })
    .await?;
    Ok(Json(doc).into_response())
}

async fn api_logs(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let number = |key: &str| -> Result<Option<u32>, CliError> {
        match query.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .map(Some)
                .ok_or_else(|| CliError::usage("invalid_value", format!("{key} {text:?} is not a number from 1"))),
        }
    };
    let step = number("step")?.map(StepNumber::new).transpose().map_err(|e| bad(e.to_string()))?;
    let attempt = number("attempt")?.map(Attempt::new).transpose().map_err(|e| bad(e.to_string()))?;
    let doc = blocking(move || {
        let id = app.stores.resolve(&id)?;
        app.stores.logs(&id, step, attempt)
    })
    .await?;
    Ok(Json(doc).into_response())
}

/// A JSON document serialized where it was built (its keys in the CLI's order).
fn json_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn bad(message: String) -> CliError {
    CliError::usage("invalid_value", message)
}

async fn api_preview(State(app): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let doc = blocking(move || {
        let id = app.stores.resolve(&id)?;
        let preview = app.stores.preview(&id)?;
        Ok(serde_json::to_string(&preview.doc()).expect("a preview serializes"))
    })
    .await?;
    Ok(json_text(doc))
}

/// An action's JSON body (an empty body is `{}`).
fn action_body(headers: &HeaderMap, body: &Bytes) -> Result<serde_json::Value, CliError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json_type {
        return Err(CliError::usage("usage", "send the action's body as JSON (Content-Type: application/json)"));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| CliError::usage("invalid_value", format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(CliError::usage("invalid_value", "the body must be a JSON object"));
    }
    Ok(value)
}

async fn api_cancel(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = action_body(&headers, &body)?;
    let reason = match body.get("reason") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(reason)) => Some(reason.clone()),
        Some(_) => return Err(bad("reason must be a string".to_owned()).into()),
    };
    let summary = blocking(move || {
        let id = app.stores.resolve(&id)?;
        app.stores.cancel(&id, reason.as_deref())
    })
    .await?;
    Ok(Json(summary).into_response())
}

async fn api_fork(
    State(app): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = action_body(&headers, &body)?;
    let from_step = body
        .get("from_step")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| bad("give from_step, the step the new plan runs first (a number from 1)".to_owned()))?;
    let summary = blocking(move || {
        let id = app.stores.resolve(&id)?;
        app.stores.fork(&id, from_step)
    })
    .await?;
    Ok(Json(summary).into_response())
}

/// `pause`, `approve` and `reject`: the same service calls as `plan pause|approve|reject`, so a
/// refusal carries the same code and message. The body may name `by` (who decides; default
/// `dashboard`), `step`, and a `comment` (approve) or `reason` (reject: required; pause).
async fn api_decide(
    State(app): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = action_body(&headers, &body)?;
    let text = |key: &str| -> Result<Option<String>, CliError> {
        match body.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(bad(format!("{key} must be a string"))),
        }
    };
    let by = text("by")?.unwrap_or_else(|| "dashboard".to_owned());
    let by = waypoint_domain::Actor::parse(&by).map_err(|e| bad(e.to_string()))?;
    let step = match body.get("step") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .and_then(|n| waypoint_domain::StepNumber::new(n).ok())
                .ok_or_else(|| bad("step must be a step number (from 1)".to_owned()))?,
        ),
    };
    let decision = match action.as_str() {
        "pause" => Decision::Pause { by, reason: text("reason")? },
        "approve" => Decision::Approve { by, step, comment: text("comment")? },
        "reject" => Decision::Reject {
            by,
            step,
            reason: text("reason")?.ok_or_else(|| bad("give the reason for the rejection".to_owned()))?,
        },
        _ => return Err(ApiError(not_found_error())),
    };
    let summary = blocking(move || {
        let id = app.stores.resolve(&id)?;
        app.stores.decide(&id, decision)
    })
    .await?;
    Ok(Json(summary).into_response())
}

async fn api_events(State(app): State<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = app.live.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(summary) => return Some((Ok(Event::default().event("plan").data(&*summary)), receiver)),
                // A subscriber that fell behind missed some events: the next ones still come.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(app): State<Shared>) -> Result<Response, ApiError> {
    let text = blocking(move || {
        // Every plan's status, a batch of summaries at a time.
        let mut statuses = Vec::new();
        app.stores.walk_listing(false, 500, |page| {
            statuses.extend(app.stores.summarize(&page)?.into_iter().map(|s| s.status));
            Ok(true)
        })?;
        Ok(app.metrics.render(statuses))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

async fn healthz(State(app): State<Shared>) -> Result<Response, ApiError> {
    blocking(move || app.stores.health()).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n").into_response())
}

fn not_found_error() -> CliError {
    CliError::new(exit::NOT_FOUND, "not_found", "there is nothing at this address; the dashboard is at /")
}

async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        ApiError(not_found_error()).into_response()
    } else {
        PageError(not_found_error()).into_response()
    }
}

/// Every request passes here: the token (header, cookie, or `?token=` which sets the cookie),
/// then for actions the Origin check, and on the way out the security headers.
async fn guard(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = match check(&app, &request) {
        Ok(None) => next.run(request).await,
        Ok(Some(early)) => early,
        Err(error) => {
            let wants_html = !request.uri().path().starts_with("/api/")
                && request.uri().path() != "/metrics"
                && request.uri().path() != "/healthz";
            if wants_html {
                PageError(error).into_response()
            } else {
                ApiError(error).into_response()
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// `Ok(None)`: go on; `Ok(Some(response))`: answer this instead (the token's redirect).
fn check(app: &App, request: &Request) -> Result<Option<Response>, CliError> {
    if let Some(token) = &app.token {
        let query_token = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")).map(|v| v.to_owned()));
        if let Some(given) = query_token.filter(|_| request.method() == Method::GET) {
            if !same(&given, token) {
                return Err(unauthorized());
            }
            // The token leaves the address bar: it lives in a cookie from now on.
            let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            let rest: Vec<&str> = request
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|pair| !pair.is_empty() && !pair.starts_with("token="))
                .collect();
            let clean = match rest.is_empty() {
                true => request.uri().path().to_owned(),
                false => format!("{}?{}", request.uri().path(), rest.join("&")),
            };
            let mut response = Redirect::to(&clean).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).map_err(|_| CliError::unexpected("the token cannot be a cookie"))?,
            );
            return Ok(Some(response));
        }
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same(given.trim(), token));
        let cookie = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).any(|cookies| {
            cookies
                .split(';')
                .filter_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
                .any(|given| same(given, token))
        });
        if !bearer && !cookie {
            return Err(unauthorized());
        }
    }
    if request.method() == Method::POST {
        check_origin(request.headers())?;
    }
    Ok(None)
}

fn unauthorized() -> CliError {
    CliError::usage(
        "unauthorized",
        "this dashboard needs its token: send `Authorization: Bearer TOKEN`, or open the address `waypoint ui` printed (it ends in ?token=…)",
    )
}

/// An action from a page of another site is refused: its `Origin` must name this server.
fn check_origin(headers: &HeaderMap) -> Result<(), CliError> {
    let refused = |message: String| CliError::usage("cross_origin", message);
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Err(refused("actions are refused from another site's page".to_owned()));
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest).trim_end_matches('/');
    if host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
        return Err(refused(format!(
            "actions are refused from another origin ({origin}); use the dashboard's own page"
        )));
    }
    Ok(())
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
