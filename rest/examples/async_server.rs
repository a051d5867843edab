//! Run with `cargo run -p pistachio-rest --features tokio --example async_server`
//!
//! Async handlers on a tokio runtime next to blocking handlers on a bounded
//! pool, on one router served by the reactor threads:
//!
//! ```text
//! curl http://127.0.0.1:9080/sleep/250        # awaits a 250 ms timer
//! curl http://127.0.0.1:9080/users/7          # JSON from an async handler
//! curl -d 'hi' http://127.0.0.1:9080/echo     # async, request/response shape
//! curl http://127.0.0.1:9080/report           # blocking work on the pool
//! curl http://127.0.0.1:9080/healthz          # a plain sync handler
//! ```
//!
//! Stop with Ctrl-C.

use std::time::Duration;

use pistachio_rest::asynch::Runtime;
use pistachio_rest::blocking::BlockingPool;
use pistachio_rest::{
    Endpoint, HttpError, Json, Options, RestRequest, RestResponse, Router, StatusCode,
};
use serde::Serialize;

#[derive(Serialize)]
struct User {
    id: u32,
    name: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();

    // A runtime of its own for the async handlers (or
    // `Runtime::from_handle(handle)` for the application's runtime).
    let rt = Runtime::new(2)?;
    // Four threads for blocking work, at most 16 requests waiting; the
    // 17th gets `503 Service Unavailable` with `Retry-After: 1`.
    let pool = BlockingPool::builder().threads(4).queue(16).build()?;

    let mut router = Router::new();
    router
        .get(
            "/sleep/:ms",
            rt.reply(|req: RestRequest| async move {
                let ms: u64 = req.param("ms")?;
                tokio::time::sleep(Duration::from_millis(ms.min(5_000))).await;
                Ok::<_, HttpError>(format!("slept {ms} ms\n"))
            }),
        )
        .get(
            "/users/:id",
            rt.reply(|req: RestRequest| async move {
                let id: u32 = req.param("id")?;
                Ok::<_, HttpError>(Json(User {
                    id,
                    name: format!("user {id}"),
                }))
            }),
        )
        .post(
            "/echo",
            rt.handler(|req: RestRequest, resp: RestResponse| async move {
                let body = req.body().to_vec();
                resp.send(StatusCode::OK, body);
            }),
        )
        .get(
            "/report",
            pool.handler(|_req: RestRequest, resp: RestResponse| {
                // Stands for a blocking call: a file, a database driver.
                std::thread::sleep(Duration::from_millis(100));
                resp.send(StatusCode::OK, "report ready\n");
            }),
        )
        .get("/healthz", |_req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::OK, "ok\n")
        });

    let mut endpoint = Endpoint::bind("127.0.0.1:9080", Options::default().threads(2))?;
    println!("listening on http://{}", endpoint.local_addr());
    let stop = endpoint.shutdown_handle();
    ctrlc::set_handler(move || stop.shutdown())?;
    endpoint.serve(router)?;
    Ok(())
}
