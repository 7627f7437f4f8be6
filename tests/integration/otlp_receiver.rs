//! A collector stand-in for the trace tests: a small OTLP/HTTP receiver on loopback that
//! accepts `POST /v1/traces` in both protocols (`application/x-protobuf`, decoded with the
//! OTLP protobuf types; `application/json`, read as the OTLP JSON mapping) and keeps every span
//! it received. Also the two ways a collector can be unreachable: a closed port, and a port
//! that accepts connections and never answers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as ProtoValue;
use opentelemetry_proto::tonic::common::v1::KeyValue as ProtoKeyValue;
use prost::Message;
use serde_json::Value;

/// An attribute's value, as either protocol carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Other(String),
}

/// One span as the receiver got it; ids in lowercase hex, as `TRACEPARENT` writes them.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, Attr>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    /// The resource's `service.name`.
    pub service_name: String,
    /// The request's content type.
    pub content_type: String,
    /// The request's headers, names in lowercase.
    pub headers: BTreeMap<String, String>,
}

impl ReceivedSpan {
    pub fn str(&self, key: &str) -> &str {
        match self.attributes.get(key) {
            Some(Attr::Str(s)) => s,
            other => panic!("span {} has no string attribute {key}: {other:?}", self.name),
        }
    }

    pub fn int(&self, key: &str) -> i64 {
        match self.attributes.get(key) {
            Some(Attr::Int(n)) => *n,
            other => panic!("span {} has no integer attribute {key}: {other:?}", self.name),
        }
    }
}

/// The receiver; it stops listening when dropped.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Receiver {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { addr, spans }
    }

    /// The base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans named `name`, in the order received.
    pub fn named(&self, name: &str) -> Vec<ReceivedSpan> {
        self.spans().into_iter().filter(|s| s.name == name).collect()
    }
}

/// Answers requests on one connection until the client closes it.
fn serve(stream: TcpStream, kept: &Mutex<Vec<ReceivedSpan>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("a clonable stream"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let content_type = headers.get("content-type").cloned().unwrap_or_default();
        let with_headers = |spans: Vec<ReceivedSpan>| {
            spans.into_iter().map(|span| ReceivedSpan { headers: headers.clone(), ..span }).collect::<Vec<_>>()
        };
        let (status, answer) = if !request_line.starts_with("POST /v1/traces ") {
            ("404 Not Found", Vec::new())
        } else if content_type.starts_with("application/json") {
            kept.lock().unwrap().extend(with_headers(from_json(&body, &content_type)));
            ("200 OK", b"{}".to_vec())
        } else {
            kept.lock().unwrap().extend(with_headers(from_protobuf(&body, &content_type)));
            ("200 OK", Vec::new())
        };
        let head =
            format!("HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n", answer.len());
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&answer)).is_err() {
            return;
        }
    }
}

fn from_protobuf(body: &[u8], content_type: &str) -> Vec<ReceivedSpan> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        let attributes = resource.resource.map(|r| proto_attributes(&r.attributes)).unwrap_or_default();
        let service_name = match attributes.get("service.name") {
            Some(Attr::Str(s)) => s.clone(),
            _ => String::new(),
        };
        for scope in resource.scope_spans {
            for span in scope.spans {
                let status = span.status.unwrap_or_default();
                spans.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: proto_attributes(&span.attributes),
                    status_code: status.code,
                    status_message: status.message,
                    service_name: service_name.clone(),
                    content_type: content_type.to_owned(),
                    headers: BTreeMap::new(),
                });
            }
        }
    }
    spans
}

fn proto_attributes(attributes: &[ProtoKeyValue]) -> BTreeMap<String, Attr> {
    let value = |kv: &ProtoKeyValue| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(ProtoValue::StringValue(s)) => Attr::Str(s.clone()),
        Some(ProtoValue::IntValue(n)) => Attr::Int(*n),
        other => Attr::Other(format!("{other:?}")),
    };
    attributes.iter().map(|kv| (kv.key.clone(), value(kv))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OTLP JSON mapping: camelCase fields, ids in hex, 64-bit integers as strings.
fn from_json(body: &[u8], content_type: &str) -> Vec<ReceivedSpan> {
    let request: Value = serde_json::from_slice(body).expect("an OTLP JSON export request");
    let mut spans = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let attributes = json_attributes(&resource["resource"]["attributes"]);
        let service_name = match attributes.get("service.name") {
            Some(Attr::Str(s)) => s.clone(),
            _ => String::new(),
        };
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_ascii_lowercase();
                let code = match &span["status"]["code"] {
                    Value::Number(n) => n.as_i64().unwrap_or_default() as i32,
                    Value::String(s) if s == "STATUS_CODE_ERROR" => 2,
                    Value::String(s) if s == "STATUS_CODE_OK" => 1,
                    _ => 0,
                };
                spans.push(ReceivedSpan {
                    name: text(&span["name"]).clone(),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                    attributes: json_attributes(&span["attributes"]),
                    status_code: code,
                    status_message: span["status"]["message"].as_str().unwrap_or_default().to_owned(),
                    service_name: service_name.clone(),
                    content_type: content_type.to_owned(),
                    headers: BTreeMap::new(),
                });
            }
        }
    }
    spans
}

fn json_attributes(attributes: &Value) -> BTreeMap<String, Attr> {
    let value = |v: &Value| {
        if let Some(s) = v["stringValue"].as_str() {
            Attr::Str(s.to_owned())
        } else if let Some(n) = v["intValue"].as_i64().or_else(|| v["intValue"].as_str().and_then(|s| s.parse().ok())) {
            Attr::Int(n)
        } else {
            Attr::Other(v.to_string())
        }
    };
    let pairs = attributes.as_array().into_iter().flatten();
    pairs.map(|kv| (kv["key"].as_str().unwrap_or_default().to_owned(), value(&kv["value"]))).collect()
}

/// A port nothing listens on: connecting is refused at once.
pub fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    drop(listener);
    format!("http://{addr}")
}

/// A port that accepts connections and never reads or answers; it lets go when dropped.
#[derive(Debug)]
pub struct BlackHole {
    addr: SocketAddr,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl BlackHole {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let held = Arc::new(Mutex::new(Vec::new()));
        let kept = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
                kept.lock().unwrap().push(stream);
            }
        });
        BlackHole { addr, _held: held }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}
