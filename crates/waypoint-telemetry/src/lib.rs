//! Waypoint's telemetry for the programs that run steps (the `waypoint` binary, the Python
//! module): trace export configured by the standard `OTEL_*` variables, and operator logs on
//! standard error chosen by `WAYPOINT_LOG` (or `RUST_LOG`). See ADR 0016.
//!
//! The spans themselves are made by the step engine in the application crate, through the
//! OpenTelemetry API; this crate only installs the SDK behind that API and takes it down. With no
//! `OTEL_*` endpoint set nothing is installed, the API stays a no-op, and nothing is printed.
//!
//! Export happens on the SDK's batch thread, never on the step path. [`Telemetry::shutdown`]
//! flushes what is left within [`FLUSH_BOUND`] and says, in one line on standard error, when
//! the collector could not be reached.

mod http;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{global, Context, ContextGuard};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// The longest the flush at exit may take, whatever the collector does: a closed port fails at
/// once, a collector that accepts and never answers is given up on after this.
pub const FLUSH_BOUND: Duration = Duration::from_millis(1250);

/// The service name when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "waypoint";

/// How long one export request may take before it counts as failed, when
/// `OTEL_EXPORTER_OTLP_TIMEOUT` does not say.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Trace export as the environment configures it, from [`Telemetry::from_env`] to
/// [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    /// The installed provider; `None` when tracing is off.
    provider: Option<SdkTracerProvider>,
    /// The first export failure, said once at shutdown.
    failure: Arc<Mutex<Option<String>>>,
}

/// Where and how traces go, read from the environment; `None` from [`TraceConfig::from_env`]
/// when tracing is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    /// `OTEL_SERVICE_NAME`, or [`DEFAULT_SERVICE_NAME`].
    pub service_name: String,
    /// The export request timeout (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds).
    pub request_timeout: Duration,
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`
    /// (the default) or `http/json`.
    pub protocol: Protocol,
}

impl TraceConfig {
    /// The configuration `var` (an environment lookup) describes: tracing is on when an OTLP
    /// endpoint is set, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The
    /// endpoint, protocol and headers themselves are read by the OTLP exporter, which follows
    /// the specification's rules for them. A protocol other than the two OTLP/HTTP ones is an
    /// error, in words.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let set = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT")).is_none() {
            return Ok(None);
        }
        let protocol = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            None => Protocol::HttpBinary,
            Some(p) if p == "http/protobuf" => Protocol::HttpBinary,
            Some(p) if p == "http/json" => Protocol::HttpJson,
            Some(other) => {
                return Err(format!(
                    "the OTLP protocol {other:?} is not supported; \
                     set OTEL_EXPORTER_OTLP_PROTOCOL to http/protobuf or http/json"
                ))
            }
        };
        let request_timeout = set("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .and_then(|ms| ms.parse().ok())
            .map_or(REQUEST_TIMEOUT, Duration::from_millis);
        Ok(Some(TraceConfig {
            service_name: set("OTEL_SERVICE_NAME").unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
            request_timeout,
            protocol,
        }))
    }
}

impl Telemetry {
    /// Installs trace export when the process's environment asks for it; otherwise does
    /// nothing. A configuration the exporter refuses (an endpoint that is not a URL, an
    /// unknown protocol) is said in one line on standard error, and the program runs untraced.
    pub fn from_env() -> Self {
        let failure = Arc::new(Mutex::new(None));
        let config = match TraceConfig::from_env(|name| std::env::var(name).ok()) {
            Ok(Some(config)) => config,
            Ok(None) => return Telemetry { provider: None, failure },
            Err(problem) => {
                warn(&format!("traces are off: {problem}"));
                return Telemetry { provider: None, failure };
            }
        };
        let built = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(config.protocol)
            .with_http_client(http::BlockingClient::new(config.request_timeout))
            .build();
        let exporter = match built {
            Ok(exporter) => exporter,
            Err(e) => {
                warn(&format!("traces are off: the OTLP exporter cannot be set up: {e}"));
                return Telemetry { provider: None, failure };
            }
        };
        let watched = Watched { inner: exporter, failure: failure.clone() };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(watched).build())
            .with_resource(Resource::builder().with_service_name(config.service_name).build())
            .build();
        global::set_tracer_provider(provider.clone());
        global::set_text_map_propagator(TraceContextPropagator::new());
        Telemetry { provider: Some(provider), failure }
    }

    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Makes the trace context this process was started in (`TRACEPARENT`, `TRACESTATE`, as a
    /// plan-file step's environment carries them) the parent of the spans this thread makes
    /// while the guard lives. `None` when tracing is off or there is no valid parent.
    pub fn parent_from_env(&self) -> Option<ContextGuard> {
        self.provider.as_ref()?;
        let carrier: std::collections::HashMap<String, String> =
            [("traceparent", "TRACEPARENT"), ("tracestate", "TRACESTATE")]
                .into_iter()
                .filter_map(|(key, var)| Some((key.to_owned(), std::env::var(var).ok()?)))
                .collect();
        let parent = global::get_text_map_propagator(|p| p.extract_with_context(&Context::current(), &carrier));
        parent.span().span_context().is_valid().then(|| parent.attach())
    }

    /// Exports what is left, within [`FLUSH_BOUND`], and stops export. When some spans could
    /// not be delivered, one line on standard error says so; nothing else is printed.
    pub fn shutdown(self) {
        let Some(provider) = self.provider else { return };
        let flushed = provider.shutdown_with_timeout(FLUSH_BOUND);
        let failed = self.failure.lock().unwrap_or_else(|p| p.into_inner()).take();
        let problem = match (failed, flushed) {
            (Some(reason), _) => Some(reason),
            (None, Err(opentelemetry_sdk::error::OTelSdkError::Timeout(_))) => {
                Some(format!("the collector did not answer within {} ms", FLUSH_BOUND.as_millis()))
            }
            (None, Err(e)) => Some(e.to_string()),
            (None, Ok(())) => None,
        };
        if let Some(problem) = problem {
            warn(&format!("some trace spans were not exported: {}", one_line(&problem)));
        }
    }
}

/// Sends `tracing` events to standard error at the level `WAYPOINT_LOG` names (`debug`, `info`,
/// `warn`, ...), or as `RUST_LOG`'s directives say (`waypoint=debug`); nothing when neither is
/// set. Standard output, and so every `--format json` document, is never written. Does nothing
/// when the program already has a subscriber.
pub fn init_logs() {
    let Some(directives) =
        ["WAYPOINT_LOG", "RUST_LOG"].iter().find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
    else {
        return;
    };
    let filter = match directives.trim().parse::<tracing_subscriber::filter::Targets>() {
        Ok(filter) => filter,
        Err(e) => {
            warn(&format!("WAYPOINT_LOG={directives} is not a log level (debug, info, warn, error): {e}"));
            return;
        }
    };
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false))
        .with(filter);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// One warning line on standard error.
fn warn(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "waypoint: warning: {text}");
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The OTLP exporter, keeping the first failure to say at shutdown instead of printing it
/// (export failures must not reach a run's output).
#[derive(Debug)]
struct Watched<E> {
    inner: E,
    failure: Arc<Mutex<Option<String>>>,
}

impl<E: SpanExporter> SpanExporter for Watched<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            self.failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.to_string());
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests;
