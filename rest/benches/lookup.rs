//! Run with `cargo bench -p pistachio-rest --bench lookup`
//!
//! Route lookup cost with 10, 1 000 and 10 000 routes: the segment tree
//! makes it depend on the path's segments, not on the number of routes.
//! Prints nanoseconds per lookup and the ratio to the 10-route router.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pistachio_rest::{Method, RestRequest, RestResponse, Router, StatusCode};

/// The i-th route: a mix of fixed, parameter, optional and splat segments.
fn pattern(i: usize) -> String {
    match i % 4 {
        0 => format!("/api/v1/resource{i}"),
        1 => format!("/api/v1/resource{i}/:id"),
        2 => format!("/api/v2/resource{i}/:id/items/:item?"),
        _ => format!("/files/bucket{i}/*/meta"),
    }
}

/// A request path that matches the i-th route.
fn path(i: usize) -> String {
    match i % 4 {
        0 => format!("/api/v1/resource{i}"),
        1 => format!("/api/v1/resource{i}/42"),
        2 => format!("/api/v2/resource{i}/7/items/9"),
        _ => format!("/files/bucket{i}/photo.jpg/meta"),
    }
}

fn router(routes: usize) -> Router {
    let mut router = Router::new();
    for i in 0..routes {
        router.get(&pattern(i), |_req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::OK, "")
        });
    }
    // The same four shapes of path in every router, so only the route
    // count changes between runs.
    router
}

/// Nanoseconds per lookup of `paths` (cycled) in `router`.
fn measure(router: &Router, paths: &[String]) -> f64 {
    let lookups = 400_000;
    // Warm up.
    for p in paths.iter().cycle().take(lookups / 10) {
        black_box(router.find_route(&Method::GET, black_box(p)));
    }
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for p in paths.iter().cycle().take(lookups) {
            let found = router.find_route(&Method::GET, black_box(p));
            assert!(found.is_some(), "{p}");
            black_box(found);
        }
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / lookups as f64
}

fn main() {
    println!("{:>8} {:>14} {:>10}", "routes", "ns/lookup", "ratio");
    let mut base = None;
    for routes in [10, 1_000, 10_000] {
        let router = router(routes);
        // Paths of the first routes (present in every router) and of the
        // last ones (the most recently added), four of each shape.
        let paths: Vec<String> = (0..8).chain(routes - 8..routes).map(path).collect();
        let ns = measure(&router, &paths);
        let ratio = ns / *base.get_or_insert(ns);
        println!("{routes:>8} {ns:>14.1} {ratio:>10.2}");
    }
}
