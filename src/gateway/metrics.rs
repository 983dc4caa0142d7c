//! `GET /metrics`, in the text format Prometheus scrapes (OpenMetrics 1.0, from the
//! `prometheus-client` crate). Three sources:
//!
//! - The node's own registry ([`crate::metrics`]): Chord work, bytes per protocol, repairs,
//!   node-wide lookups, and libp2p's metrics.
//! - What the HTTP server itself counts as it answers: requests by route, method and status,
//!   their latency, lookups done for the API (with their hops), bytes of files sent and
//!   received. Atomic counters, updated once per request or body chunk.
//! - What the node holds, read only when scraped (a [`Collector`]): files and bytes by role,
//!   storage used and its limit, inbound transfers under way and served. Nothing on the
//!   node's own paths changes for them, so collecting costs no throughput.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Shared;
use crate::files::{Files, Role};

/// What Prometheus is told the answer is.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route's pattern (`/files/*name`), never the path: names would make one series
    /// per file.
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

/// Seconds, from 1 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 8))
}

/// The gateway's metrics and the registry that shows them with the node's.
pub(super) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    lookups: Family<ResultLabels, Counter>,
    lookup_hops: Histogram,
    lookup_seconds: Histogram,
    file_bytes: Family<DirectionLabels, Counter>,
}

impl Metrics {
    pub(super) fn new(files: Files) -> Metrics {
        let requests = Family::default();
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let lookups = Family::default();
        let lookup_hops = Histogram::new([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0]);
        let lookup_seconds = latency_histogram();
        let file_bytes = Family::default();
        let mut registry = Registry::default();
        registry.register(
            "chord_gateway_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "chord_gateway_request_duration_seconds",
            "Time until the response headers of an HTTP request, by route",
            request_seconds.clone(),
        );
        registry.register(
            "chord_gateway_lookups",
            "Lookups of a name done for the HTTP API, by result",
            lookups.clone(),
        );
        registry.register(
            "chord_gateway_lookup_hops",
            "Hops of the HTTP API's successful lookups",
            lookup_hops.clone(),
        );
        registry.register(
            "chord_gateway_lookup_duration_seconds",
            "Time the HTTP API's lookups took",
            lookup_seconds.clone(),
        );
        registry.register(
            "chord_gateway_file_bytes",
            "Bytes of files sent to HTTP clients and received from them",
            file_bytes.clone(),
        );
        registry.register_collector(Box::new(NodeCollector { files }));
        Metrics {
            registry,
            requests,
            request_seconds,
            lookups,
            lookup_hops,
            lookup_seconds,
            file_bytes,
        }
    }

    fn request(&self, route: String, method: String, status: u16, took: Duration) {
        self.request_seconds
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    /// A lookup for the API ended: with its hops, or failed.
    pub(super) fn looked_up(&self, hops: Option<u32>, seconds: f64) {
        let result = if hops.is_some() { "ok" } else { "failed" };
        self.lookups.get_or_create(&ResultLabels { result }).inc();
        self.lookup_seconds.observe(seconds);
        if let Some(hops) = hops {
            self.lookup_hops.observe(hops.into());
        }
    }

    /// File bytes went to an HTTP client.
    pub(super) fn sent(&self, bytes: u64) {
        let labels = DirectionLabels { direction: "sent" };
        self.file_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// File bytes came from an HTTP client.
    pub(super) fn received(&self, bytes: u64) {
        let labels = DirectionLabels {
            direction: "received",
        };
        self.file_bytes.get_or_create(&labels).inc_by(bytes);
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(state): State<Shared>) -> Response {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let mut text = String::new();
    let encoded = state
        .files
        .metrics()
        .with_registry(|node| encode_registry(&mut text, node))
        .and_then(|()| encode_registry(&mut text, &state.metrics.registry))
        .and_then(|()| encode_eof(&mut text));
    match encoded {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::warn!("cannot encode the metrics: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The middleware that counts every answer (outermost, so refusals count too). The time is
/// until the headers: a streamed body's own time is the client's as much as ours.
pub(super) async fn count_requests(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    // `/files/{*name}` is shown as `/files/*name`: braces inside label values are legal, but
    // simple parsers of the text format stop at them, and PromQL needs no escaping without.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".into(), |m| m.as_str().replace(['{', '}'], ""));
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .metrics
        .request(route, method, status, started.elapsed());
    response
}

/// The node's side, read at each scrape.
#[derive(Debug)]
struct NodeCollector {
    files: Files,
}

/// One gauge or counter family with one label, written at once.
fn family<V: Copy>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    label: &str,
    values: &[(&str, V)],
    encode: impl Fn(V, prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (value_label, value) in values {
        let labels = [(label, *value_label)];
        encode(*value, metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(value: u64, encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
    ConstGauge::new(value as i64).encode(encoder)
}

fn counter(value: u64, encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
    ConstCounter::new(value).encode(encoder)
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (mut count, mut bytes) = ([0u64; 2], [0u64; 2]);
        for meta in self.files.list() {
            let at = usize::from(meta.role == Role::Replica);
            count[at] += 1;
            bytes[at] += meta.size;
        }
        let by_role = |v: [u64; 2]| [("owner", v[0]), ("replica", v[1])];
        family(
            &mut encoder,
            (
                "chord_files_held",
                "Files this node holds, by role.",
                MetricType::Gauge,
            ),
            "role",
            &by_role(count),
            gauge,
        )?;
        family(
            &mut encoder,
            (
                "chord_files_held_bytes",
                "Bytes of the files this node holds, by role.",
                MetricType::Gauge,
            ),
            "role",
            &by_role(bytes),
            gauge,
        )?;
        let usage = self.files.store().usage();
        let used = encoder.encode_descriptor(
            "chord_storage_used_bytes",
            "Bytes this node's store uses: files, tombstones, transfers under way.",
            None,
            MetricType::Gauge,
        )?;
        gauge(usage.used, used)?;
        if let Some(limit) = usage.limit {
            let limit_encoder = encoder.encode_descriptor(
                "chord_storage_limit_bytes",
                "Bytes this node's store may use (--max-storage).",
                None,
                MetricType::Gauge,
            )?;
            gauge(limit, limit_encoder)?;
        }
        let t = self.files.transfers();
        family(
            &mut encoder,
            (
                "chord_transfers_active",
                "Inbound transfers being served, by kind.",
                MetricType::Gauge,
            ),
            "kind",
            &[("get", t.active_gets), ("put", t.active_puts)],
            gauge,
        )?;
        family(
            &mut encoder,
            (
                "chord_transfers_served",
                "Inbound transfers served and ended since the node started, by kind.",
                MetricType::Counter,
            ),
            "kind",
            &[("get", t.finished_gets), ("put", t.finished_puts)],
            counter,
        )?;
        family(
            &mut encoder,
            (
                "chord_transfer_bytes",
                "File bytes moved by inbound transfers that ended: sent by gets, received by puts.",
                MetricType::Counter,
            ),
            "direction",
            &[("sent", t.bytes_sent), ("received", t.bytes_received)],
            counter,
        )?;
        let under = encoder.encode_descriptor(
            "chord_files_under_replicated",
            "Owned files that fewer than R - 1 replica holders confirmed in the last repair round.",
            None,
            MetricType::Gauge,
        )?;
        gauge(self.files.under_replicated(), under)
    }
}
