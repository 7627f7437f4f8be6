//! The exporter's HTTP client: ureq, blocking, on the SDK's batch thread (which drives the
//! exporter's futures to completion itself), so no async runtime is started for traces.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// A blocking HTTP/1.1 client whose every request ends within its timeout, answered or not.
#[derive(Debug)]
pub(crate) struct BlockingClient {
    agent: ureq::Agent,
}

impl BlockingClient {
    pub(crate) fn new(timeout: Duration) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // A collector's refusal is an answer the exporter reads, not a transport error.
            .http_status_as_error(false)
            .build();
        BlockingClient { agent: config.into() }
    }
}

impl HttpClient for BlockingClient {
    fn send_bytes<'client, 'future>(
        &'client self,
        request: Request<Bytes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'future>>
    where
        'client: 'future,
        Self: 'future,
    {
        Box::pin(async move {
            let response = self.agent.run(request.map(|body| body.to_vec()))?;
            let (parts, mut body) = response.into_parts();
            let body = body.read_to_vec()?;
            Ok(Response::from_parts(parts, Bytes::from(body)))
        })
    }
}
