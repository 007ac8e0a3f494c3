//! Sending one export request: OTLP/gRPC through tonic, or OTLP/HTTP with protobuf bodies through
//! reqwest. Says whether a failure is worth retrying (the OTLP specification's list) and how many
//! items a partially successful request had rejected.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::{
    metrics::v1::{
        metrics_service_client::MetricsServiceClient, ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
    },
    trace::v1::{
        trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    },
};
use prost::Message as _;
use tonic::{
    metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap},
    transport::Channel,
};

use super::{OtlpConfig, OtlpError, OtlpProtocol};

/// Why a request failed.
#[derive(Debug)]
pub(crate) struct SendError {
    pub retryable: bool,
    pub message: String,
}

/// A connection to the receiver for both signals.
pub(crate) enum Transport {
    Grpc {
        traces: Channel,
        metrics: Channel,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        traces_url: String,
        metrics_url: String,
        headers: reqwest::header::HeaderMap,
    },
}

impl Transport {
    /// Validates the endpoints and headers; connections are made on first use (a receiver that is
    /// not up yet is not an error).
    pub(crate) fn new(config: &OtlpConfig) -> Result<Self, OtlpError> {
        let (traces, metrics) = config.urls();
        match config.protocol {
            OtlpProtocol::Grpc => {
                let channel = |url: &str| {
                    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
                        .map_err(|_| OtlpError::Endpoint(url.to_owned()))?;
                    if endpoint.uri().scheme_str() == Some("https") {
                        return Err(OtlpError::GrpcTls(url.to_owned()));
                    }
                    Ok(endpoint
                        .timeout(config.timeout)
                        .connect_timeout(config.timeout.min(Duration::from_secs(5)))
                        .connect_lazy())
                };
                let mut metadata = MetadataMap::new();
                for (key, value) in &config.headers {
                    let bad = || OtlpError::Header(key.clone());
                    let key: AsciiMetadataKey =
                        key.to_ascii_lowercase().parse().map_err(|_| bad())?;
                    let value: AsciiMetadataValue = value.parse().map_err(|_| bad())?;
                    metadata.insert(key, value);
                }
                Ok(Self::Grpc {
                    traces: channel(&traces)?,
                    metrics: channel(&metrics)?,
                    metadata,
                })
            }
            OtlpProtocol::Http => {
                for url in [&traces, &metrics] {
                    let parsed =
                        reqwest::Url::parse(url).map_err(|_| OtlpError::Endpoint(url.clone()))?;
                    if !matches!(parsed.scheme(), "http" | "https") {
                        return Err(OtlpError::Endpoint(url.clone()));
                    }
                }
                let mut headers = reqwest::header::HeaderMap::new();
                for (key, value) in &config.headers {
                    let bad = || OtlpError::Header(key.clone());
                    let name = reqwest::header::HeaderName::from_bytes(key.as_bytes())
                        .map_err(|_| bad())?;
                    let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| bad())?;
                    headers.insert(name, value);
                }
                // reqwest's rustls has no provider of its own here; installing twice is harmless.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .connect_timeout(config.timeout.min(Duration::from_secs(5)))
                    .build()
                    .map_err(|e| OtlpError::Client(e.to_string()))?;
                Ok(Self::Http {
                    client,
                    traces_url: traces,
                    metrics_url: metrics,
                    headers,
                })
            }
        }
    }

    /// Sends spans; `Ok(rejected)` on success.
    pub(crate) async fn traces(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Result<i64, SendError> {
        match self {
            Self::Grpc {
                traces, metadata, ..
            } => {
                let mut client = TraceServiceClient::new(traces.clone());
                let mut request = tonic::Request::new(request);
                *request.metadata_mut() = metadata.clone();
                let response = client.export(request).await.map_err(grpc_error)?;
                Ok(response
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_spans))
            }
            Self::Http {
                client,
                traces_url,
                headers,
                ..
            } => {
                let body = post(client, traces_url, headers, request.encode_to_vec()).await?;
                let response =
                    ExportTraceServiceResponse::decode(body.as_ref()).unwrap_or_default();
                Ok(response.partial_success.map_or(0, |p| p.rejected_spans))
            }
        }
    }

    /// Sends metric points; `Ok(rejected)` on success.
    pub(crate) async fn metrics(
        &self,
        request: ExportMetricsServiceRequest,
    ) -> Result<i64, SendError> {
        match self {
            Self::Grpc {
                metrics, metadata, ..
            } => {
                let mut client = MetricsServiceClient::new(metrics.clone());
                let mut request = tonic::Request::new(request);
                *request.metadata_mut() = metadata.clone();
                let response = client.export(request).await.map_err(grpc_error)?;
                Ok(response
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_data_points))
            }
            Self::Http {
                client,
                metrics_url,
                headers,
                ..
            } => {
                let body = post(client, metrics_url, headers, request.encode_to_vec()).await?;
                let response =
                    ExportMetricsServiceResponse::decode(body.as_ref()).unwrap_or_default();
                Ok(response
                    .partial_success
                    .map_or(0, |p| p.rejected_data_points))
            }
        }
    }
}

/// The codes the OTLP specification says to retry.
fn grpc_error(status: tonic::Status) -> SendError {
    use tonic::Code;
    let retryable = matches!(
        status.code(),
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    );
    SendError {
        retryable,
        message: format!("gRPC {:?}: {}", status.code(), status.message()),
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &reqwest::header::HeaderMap,
    body: Vec<u8>,
) -> Result<bytes::Bytes, SendError> {
    let response = client
        .post(url)
        .headers(headers.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .await
        .map_err(|e| SendError {
            // Connection refused, reset, timed out: the receiver may come back.
            retryable: true,
            message: format!("POST {url}: {e}"),
        })?;
    let status = response.status();
    if status.is_success() {
        return response.bytes().await.map_err(|e| SendError {
            retryable: true,
            message: format!("POST {url}: reading the response: {e}"),
        });
    }
    Err(SendError {
        retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
        message: format!("POST {url}: HTTP {status}"),
    })
}
