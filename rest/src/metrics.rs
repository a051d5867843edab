//! [`Metrics`]: Prometheus metrics of the exchanges and the transport,
//! and the `/metrics` handler that exposes them (cargo feature `metrics`).

use std::fmt;
use std::sync::{Arc, Mutex};

use pistachio_http::{
    Exchange, HeadAction, Hooks, Http2Counters, Http2Stats, Method, Middleware, Request,
};
use pistachio_transport::{TransportSnapshot, TransportStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::request::RestRequest;
use crate::response::RestResponse;

/// `Content-Type` of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `route` label of exchanges no route answered: unmatched paths
/// (`404`), the router's `405` and `OPTIONS` answers, the HTTP layer's own
/// refusals. Raw paths are never labels: clients choose them.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Upper bounds, in seconds, of the request duration histogram's buckets.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The label of a method: the standard ones by name, anything else as
/// `OTHER` (an extension method is as many label values as clients send),
/// `UNKNOWN` for a request the server could not parse.
fn method_label(method: Option<&Method>) -> &'static str {
    let Some(method) = method else {
        return "UNKNOWN";
    };
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN
        .iter()
        .find(|m| *m == method)
        .map_or("OTHER", |m| match *m {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::OPTIONS => "OPTIONS",
            Method::TRACE => "TRACE",
            _ => "CONNECT",
        })
}

/// Prometheus metrics of a server (as `axum-prometheus` or
/// `actix-web-prom` give their users), on the `prometheus-client` crate:
/// a [`Middleware`] that counts every exchange, and a handler that
/// answers the scrape.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `pistachio_http_requests_total` | counter | `method`, `route`, `status` |
/// | `pistachio_http_request_duration_seconds` | histogram | `method`, `route` |
/// | `pistachio_http_requests_in_flight` | gauge | |
/// | `pistachio_http_request_body_bytes_total` | counter (declared `Content-Length`s) | |
/// | `pistachio_http_response_body_bytes_total` | counter | |
/// | `pistachio_transport_received_bytes_total` | counter | |
/// | `pistachio_transport_sent_bytes_total` | counter | |
/// | `pistachio_connections_accepted_total` | counter | |
/// | `pistachio_connections_open` | gauge | |
/// | `pistachio_tls_handshakes_total` | counter | |
/// | `pistachio_tls_handshake_failures_total` | counter | `reason` |
/// | `pistachio_tls_error_queue_drained_total` | counter | |
/// | `pistachio_http2_connections_total` | counter | |
/// | `pistachio_http2_streams_total` | counter | |
/// | `pistachio_http2_streams_refused_total` | counter | |
/// | `pistachio_http2_resets_received_total` | counter | |
/// | `pistachio_http2_closes_total` | counter | `reason` (`protocol_error`, `abuse`, `timeout`) |
///
/// `route` is the template of the route that answered (`/users/:id`, see
/// [`RequestInfo::route`](pistachio_http::RequestInfo::route)), or
/// [`UNMATCHED_ROUTE`]; never the raw path. The transport figures come
/// from the endpoints given to [`Metrics::watch_transport`], the HTTP/2
/// ones from those given to [`Metrics::watch_http2`] (summed; a family
/// appears once something is watched).
///
/// Install it endpoint-wide ([`Options::middleware`]) to count the
/// answers the HTTP layer makes itself (`400`, `408`, `413`, `414`,
/// `431`) too, and serve [`Metrics::handler`] on a route:
///
/// [`Options::middleware`]: pistachio_http::Options::middleware
///
/// ```
/// use pistachio_rest::metrics::Metrics;
/// use pistachio_rest::{Endpoint, Options, RestRequest, RestResponse, Router, StatusCode};
/// use std::io::{Read, Write};
///
/// let metrics = Metrics::new();
/// let mut router = Router::new();
/// router.get("/users/:id", |_req: RestRequest, resp: RestResponse| {
///     resp.send(StatusCode::OK, "someone")
/// });
/// router.get("/metrics", metrics.handler());
/// let options = Options::default().threads(1).middleware(metrics.clone());
/// let mut endpoint = Endpoint::bind("127.0.0.1:0", options)?;
/// metrics.watch_transport(endpoint.transport_stats());
/// endpoint.serve_threaded(router)?;
///
/// let ask = |path: &str| -> std::io::Result<String> {
///     let mut client = std::net::TcpStream::connect(endpoint.local_addr())?;
///     write!(client, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
///     let mut response = String::new();
///     client.read_to_string(&mut response)?;
///     Ok(response)
/// };
/// ask("/users/42")?;
/// let scrape = ask("/metrics")?;
/// assert!(scrape.contains(
///     r#"pistachio_http_requests_total{method="GET",route="/users/:id",status="200"} 1"#
/// ));
/// endpoint.shutdown();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    request_bytes: Counter,
    response_bytes: Counter,
    transport: Arc<TransportCollector>,
    http2: Arc<Http2Collector>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("in_flight", &self.inner.in_flight.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The transport figures, read at each scrape.
#[derive(Debug, Default)]
struct TransportCollector {
    watched: Mutex<Vec<TransportStats>>,
}

impl TransportCollector {
    fn sum(&self) -> Option<TransportSnapshot> {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let mut snapshots = watched.iter().map(TransportStats::snapshot);
        let mut sum = snapshots.next()?;
        for s in snapshots {
            sum.bytes_received += s.bytes_received;
            sum.bytes_sent += s.bytes_sent;
            sum.connections_accepted += s.connections_accepted;
            sum.connections_open += s.connections_open;
            sum.tls_handshakes += s.tls_handshakes;
            for (total, one) in sum.handshake_failures.iter_mut().zip(s.handshake_failures) {
                total.1 += one.1;
            }
            // Process-wide already: the same in every snapshot.
        }
        Some(sum)
    }
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for TransportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let Some(s) = self.sum() else {
            return Ok(());
        };
        counter(
            &mut encoder,
            "pistachio_transport_received_bytes",
            "Bytes read from connections (for TLS, decrypted).",
            s.bytes_received,
        )?;
        counter(
            &mut encoder,
            "pistachio_transport_sent_bytes",
            "Bytes written to connections (for TLS, before encryption).",
            s.bytes_sent,
        )?;
        counter(
            &mut encoder,
            "pistachio_connections_accepted",
            "Connections accepted.",
            s.connections_accepted,
        )?;
        let open = ConstGauge::new(i64::try_from(s.connections_open).unwrap_or(i64::MAX));
        open.encode(encoder.encode_descriptor(
            "pistachio_connections_open",
            "Connections open now.",
            None,
            open.metric_type(),
        )?)?;
        counter(
            &mut encoder,
            "pistachio_tls_handshakes",
            "TLS handshakes completed.",
            s.tls_handshakes,
        )?;
        let mut family = encoder.encode_descriptor(
            "pistachio_tls_handshake_failures",
            "TLS handshakes that did not complete, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in s.handshake_failures {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        counter(
            &mut encoder,
            "pistachio_tls_error_queue_drained",
            "OpenSSL error-queue entries drained by the transport (whole process).",
            s.error_queue_drained,
        )
    }
}

/// The HTTP/2 counters, read at each scrape.
#[derive(Debug, Default)]
struct Http2Collector {
    watched: Mutex<Vec<Http2Counters>>,
}

impl Collector for Http2Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if watched.is_empty() {
            return Ok(());
        }
        let mut sum = Http2Stats::default();
        for s in watched.iter().map(Http2Counters::snapshot) {
            sum.connections += s.connections;
            sum.streams += s.streams;
            sum.streams_refused += s.streams_refused;
            sum.resets_received += s.resets_received;
            sum.protocol_errors += s.protocol_errors;
            sum.abuse_closes += s.abuse_closes;
            sum.timeouts += s.timeouts;
        }
        drop(watched);
        counter(
            &mut encoder,
            "pistachio_http2_connections",
            "HTTP/2 connections started (ALPN h2 or the h2c preface).",
            sum.connections,
        )?;
        counter(
            &mut encoder,
            "pistachio_http2_streams",
            "HTTP/2 streams that carried a request to a handler.",
            sum.streams,
        )?;
        counter(
            &mut encoder,
            "pistachio_http2_streams_refused",
            "HTTP/2 streams refused beyond SETTINGS_MAX_CONCURRENT_STREAMS.",
            sum.streams_refused,
        )?;
        counter(
            &mut encoder,
            "pistachio_http2_resets_received",
            "HTTP/2 streams the clients reset (RST_STREAM).",
            sum.resets_received,
        )?;
        let mut family = encoder.encode_descriptor(
            "pistachio_http2_closes",
            "HTTP/2 connections the server ended: the client's protocol error, \
             abuse (ENHANCE_YOUR_CALM) or a timeout (zero window, unacknowledged SETTINGS).",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in [
            ("protocol_error", sum.protocol_errors),
            ("abuse", sum.abuse_closes),
            ("timeout", sum.timeouts),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Metrics at zero, watching no transport yet.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let in_flight = Gauge::default();
        let request_bytes = Counter::default();
        let response_bytes = Counter::default();
        registry.register(
            "pistachio_http_requests",
            "HTTP exchanges, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "pistachio_http_request_duration_seconds",
            "From the request head to the last byte of the answer handed to the transport",
            durations.clone(),
        );
        registry.register(
            "pistachio_http_requests_in_flight",
            "Requests whose head was received and whose exchange is not over",
            in_flight.clone(),
        );
        registry.register(
            "pistachio_http_request_body_bytes",
            "Request body bytes, as declared by Content-Length",
            request_bytes.clone(),
        );
        registry.register(
            "pistachio_http_response_body_bytes",
            "Response body bytes handed to the transport",
            response_bytes.clone(),
        );
        let transport = Arc::new(TransportCollector::default());
        registry.register_collector(Box::new(Arc::clone(&transport)));
        let http2 = Arc::new(Http2Collector::default());
        registry.register_collector(Box::new(Arc::clone(&http2)));
        Metrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                requests,
                durations,
                in_flight,
                request_bytes,
                response_bytes,
                transport,
                http2,
            }),
        }
    }

    /// Reports the connection and TLS figures of `stats` (from
    /// [`Endpoint::transport_stats`](pistachio_http::Endpoint::transport_stats))
    /// too; several endpoints are summed.
    pub fn watch_transport(&self, stats: TransportStats) {
        self.inner
            .transport
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stats);
    }

    /// Reports the HTTP/2 counters of `counters` (from
    /// [`Endpoint::http2_counters`](pistachio_http::Endpoint::http2_counters))
    /// too; several endpoints are summed.
    pub fn watch_http2(&self, counters: Http2Counters) {
        self.inner
            .http2
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(counters);
    }

    /// The registry, to register metrics of the service's own (they are
    /// exposed with these).
    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Everything, in the Prometheus text exposition format (version
    /// 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry())
        {
            log::warn!("encoding metrics: {e}");
        }
        text
    }

    /// A route handler answering the scrape: `200` with
    /// [`Metrics::encode`] as [`PROMETHEUS_TEXT`].
    pub fn handler(&self) -> impl Fn(RestRequest, RestResponse) + Send + Sync + 'static {
        let metrics = self.clone();
        move |_req: RestRequest, mut resp: RestResponse| {
            resp.set_mime(PROMETHEUS_TEXT);
            resp.send(pistachio_http::StatusCode::OK, metrics.encode());
        }
    }
}

/// Counts every exchange it wraps: `on_head` (in flight, request bytes)
/// and `on_complete` (the rest).
impl Middleware for Metrics {
    fn on_head(&self, request: &Request) -> HeadAction {
        self.inner.in_flight.inc();
        if let Some(len) = request.content_length() {
            self.inner.request_bytes.inc_by(len);
        }
        HeadAction::Continue
    }

    fn on_complete(&self, exchange: &Exchange<'_>) {
        let request = exchange.request;
        // A request refused before it was parsed never passed `on_head`.
        if request.method().is_some() {
            // Never below zero, whatever the order of events.
            let _ = self.inner.in_flight.inner().fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| (n > 0).then(|| n - 1),
            );
        }
        let method = method_label(request.method());
        let route = request.route().unwrap_or(UNMATCHED_ROUTE).to_owned();
        self.inner
            .durations
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(exchange.total().as_secs_f64());
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status: exchange.status.as_u16(),
            })
            .inc();
        self.inner.response_bytes.inc_by(exchange.body_bytes);
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_HEAD | Hooks::ON_COMPLETE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_a_closed_set_of_labels() {
        assert_eq!(method_label(Some(&Method::GET)), "GET");
        assert_eq!(method_label(Some(&Method::CONNECT)), "CONNECT");
        let odd = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method_label(Some(&odd)), "OTHER");
        assert_eq!(method_label(None), "UNKNOWN");
    }

    #[test]
    fn a_fresh_registry_encodes_every_metric() {
        let metrics = Metrics::new();
        metrics.watch_transport(TransportStats::new());
        let text = metrics.encode();
        assert!(!text.contains("pistachio_http2"), "{text}");
        metrics.watch_http2(Http2Counters::default());
        let text = metrics.encode();
        // Families without a sample are left out until they have one.
        assert!(!text.contains("pistachio_http_requests_total"), "{text}");
        for name in [
            "pistachio_http_requests_in_flight 0",
            "pistachio_tls_error_queue_drained_total ",
            "pistachio_connections_open 0",
            "pistachio_tls_handshake_failures_total{reason=\"timeout\"} 0",
            "pistachio_http2_streams_total 0",
            "pistachio_http2_closes_total{reason=\"abuse\"} 0",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
    }
}
