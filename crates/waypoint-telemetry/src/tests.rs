//! What turns trace export on and how: the `OTEL_*` variables as `TraceConfig` reads them.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_otlp::Protocol;

use super::{TraceConfig, DEFAULT_SERVICE_NAME};

fn config(vars: &[(&str, &str)]) -> Option<TraceConfig> {
    checked(vars).expect("a valid configuration")
}

fn checked(vars: &[(&str, &str)]) -> Result<Option<TraceConfig>, String> {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    TraceConfig::from_env(|name| vars.get(name).cloned())
}

#[test]
fn nothing_set_is_off() {
    assert_eq!(config(&[]), None);
    assert_eq!(config(&[("OTEL_SERVICE_NAME", "ci"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]), None);
    assert_eq!(config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]), None);
}

#[test]
fn an_endpoint_turns_it_on_with_the_default_service_name() {
    let on = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]).expect("on");
    assert_eq!(on.service_name, DEFAULT_SERVICE_NAME);
    assert_eq!(on.request_timeout, Duration::from_secs(10));
    assert_eq!(on.protocol, Protocol::HttpBinary, "protobuf unless asked otherwise");
    let traces_only = config(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces"),
        ("OTEL_SERVICE_NAME", "nightly"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
    ])
    .expect("on");
    assert_eq!(traces_only.service_name, "nightly");
    assert_eq!(traces_only.request_timeout, Duration::from_millis(2500));
}

#[test]
fn the_protocol_is_one_of_the_two_otlp_http_ones() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    let json = config(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).expect("on");
    assert_eq!(json.protocol, Protocol::HttpJson);
    let traces_wins = config(&[
        endpoint,
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
    ])
    .expect("on");
    assert_eq!(traces_wins.protocol, Protocol::HttpBinary);
    let grpc = checked(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
    assert!(grpc.contains("http/protobuf or http/json"), "{grpc}");
}

#[test]
fn disabled_wins_over_an_endpoint() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    assert_eq!(config(&[endpoint, ("OTEL_SDK_DISABLED", "true")]), None);
    assert_eq!(config(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]), None);
    assert_eq!(config(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]), None);
    assert!(config(&[endpoint, ("OTEL_SDK_DISABLED", "false")]).is_some());
}
