//! `SO_REUSEPORT`: per-worker listeners spread connections over the
//! workers, and several servers can share one port.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pistachio_rest::http::{
    ConnectionInfo, Endpoint, Handler, ListenerOptions, Options, Request, ResponseWriter,
    StatusCode,
};
use pistachio_tests::client::AnyClient;
use pistachio_tests::init_logging;

struct PerWorker {
    connections: Arc<[AtomicUsize; 2]>,
    name: &'static str,
}

impl Handler for PerWorker {
    fn on_request(&self, _req: Request, resp: ResponseWriter) {
        resp.send(StatusCode::OK, self.name);
    }
    fn on_connection(&self, info: &ConnectionInfo) {
        self.connections[info.worker].fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn per_worker_listeners_spread_connections_over_the_workers() {
    init_logging();
    for tls in [false, true] {
        let counts: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let mut options = Options::default().threads(2).per_worker_listeners(true);
        if tls {
            options = options.tls(pistachio_tests::server::server_tls_config());
        }
        let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
        endpoint
            .serve_threaded(PerWorker {
                connections: Arc::clone(&counts),
                name: "a",
            })
            .unwrap();
        let port = endpoint.local_addr().port();
        for i in 0..100 {
            let mut client = AnyClient::connect(port, tls).unwrap();
            let r = client
                .request("/")
                .unwrap_or_else(|e| panic!("tls={tls} #{i}: {e}"));
            assert_eq!((r.status, r.text().as_str()), (200, "a"));
        }
        let spread = [
            counts[0].load(Ordering::SeqCst),
            counts[1].load(Ordering::SeqCst),
        ];
        assert_eq!(spread[0] + spread[1], 100, "{spread:?}");
        // The kernel hashes connections over the two sockets: both get a
        // fair share (the odds of 90+ on one side are below 1e-15).
        assert!(spread.iter().all(|&n| n >= 10), "tls={tls}: {spread:?}");
        let report = endpoint.shutdown_graceful(Duration::from_secs(5));
        assert_eq!(report.connections_cut, 0);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a worker's listener survived the shutdown"
        );
    }
}

#[test]
fn two_servers_can_share_a_port() {
    init_logging();
    let mut reuse = ListenerOptions::default();
    reuse.reuse_port = true;
    let counts: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut first = Endpoint::bind(
        "127.0.0.1:0",
        Options::default().threads(1).listener(reuse.clone()),
    )
    .unwrap();
    let port = first.local_addr().port();
    let mut second = Endpoint::bind(
        ("127.0.0.1", port),
        Options::default().threads(1).listener(reuse),
    )
    .unwrap();
    first
        .serve_threaded(PerWorker {
            connections: Arc::clone(&counts),
            name: "first",
        })
        .unwrap();
    second
        .serve_threaded(PerWorker {
            connections: Arc::clone(&counts),
            name: "second",
        })
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let mut client = AnyClient::connect(port, false).unwrap();
        seen.insert(client.request("/").unwrap().text());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["first", "second"]);
    // One server goes away; the other carries on alone.
    first.shutdown_graceful(Duration::from_secs(5));
    for _ in 0..20 {
        let mut client = AnyClient::connect(port, false).unwrap();
        assert_eq!(client.request("/").unwrap().text(), "second");
    }
}
