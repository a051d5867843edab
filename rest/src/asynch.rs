//! Async route handlers on a tokio runtime (cargo feature `tokio`).
//!
//! A route handler of a [`Router`](crate::Router) runs on a reactor thread,
//! which also serves every other connection that thread owns: it must not
//! wait. An async handler is spawned as a task on a tokio [`Runtime`]
//! instead; the reactor thread only spawns it and goes on. The task answers
//! through the same [`RestResponse`] as any handler (answering from another
//! thread goes through the connection's worker mailbox), so keep-alive,
//! pipelining, `HEAD` and TLS behave exactly as for sync handlers.
//!
//! Two shapes fit into `router.get(..)` like any handler:
//!
//! * [`Runtime::handler`]: `|req, resp| async move { .. }`, the shape of a
//!   sync handler, returning `()` or `Result<(), E: Into<HttpError>>`
//!   (an `Err` is answered as the error, as for sync handlers); the
//!   response can be streamed, sent as JSON, handed on;
//! * [`Runtime::reply`]: `|req| async move { .. }` returning a [`Reply`]
//!   (`(StatusCode, String)`, [`Json`](crate::Json), `Result<_, HttpError>`,
//!   …).
//!
//! A handler that panics (or whose future panics while polled) answers
//! `500` for its own request only: the panic is caught around every poll,
//! the future is dropped with the response it holds, and other requests on
//! the same connection and worker go on.
//!
//! ```
//! use pistachio_rest::asynch::Runtime;
//! use pistachio_rest::{HttpError, Json, RestRequest, RestResponse, Router, StatusCode};
//!
//! let rt = Runtime::new(2)?; // or Runtime::from_handle(tokio::runtime::Handle::current())
//! let mut router = Router::new();
//! router
//!     .get("/hello/:name", rt.reply(|req: RestRequest| async move {
//!         let name = req.param_str("name").unwrap_or_default().to_owned();
//!         // .. await a database, another service, a timer ..
//!         (StatusCode::OK, format!("hello {name}"))
//!     }))
//!     .get("/items/:id", rt.reply(|req: RestRequest| async move {
//!         let id: u32 = req.param("id")?; // 400 if not a number
//!         Ok::<_, HttpError>(Json(vec![id, id + 1]))
//!     }))
//!     .post("/echo", rt.handler(|req: RestRequest, resp: RestResponse| async move {
//!         let body = req.body().to_vec();
//!         resp.send(StatusCode::OK, body);
//!     }));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::blocking::{detach, finish, panic_message};
use crate::reply::Reply;
use crate::request::RestRequest;
use crate::response::{HttpError, Outcome, RestResponse};

/// A tokio runtime that async handlers are spawned on: one this crate
/// starts ([`Runtime::new`], multi-threaded) or the application's own
/// ([`Runtime::from_handle`]).
///
/// Cloning it is cheap; a runtime this crate started shuts down when the
/// last clone (and the last handler made from it) is dropped.
#[derive(Clone)]
pub struct Runtime {
    handle: Handle,
    // Declared after `handle`: the owned runtime goes last.
    _owned: Option<Arc<Owned>>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("owned", &self._owned.is_some())
            .finish_non_exhaustive()
    }
}

/// A runtime started by [`Runtime::new`], shut down on drop.
struct Owned(Option<tokio::runtime::Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if Handle::try_current().is_ok() {
                // Dropped from inside a runtime, where blocking is not
                // allowed: let the threads go without waiting for them.
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(5));
            }
        }
    }
}

impl Runtime {
    /// Starts a multi-threaded tokio runtime with `worker_threads` workers
    /// (at least 1), every driver (I/O, timers) enabled, threads named
    /// `pistachio-async-N`.
    pub fn new(worker_threads: usize) -> io::Result<Runtime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("pistachio-async")
            .enable_all()
            .build()?;
        Ok(Runtime {
            handle: rt.handle().clone(),
            _owned: Some(Arc::new(Owned(Some(rt)))),
        })
    }

    /// Spawns on the application's runtime. It must outlive the router:
    /// requests that arrive once it has shut down are answered `500`.
    pub fn from_handle(handle: Handle) -> Runtime {
        Runtime {
            handle,
            _owned: None,
        }
    }

    /// The runtime's handle, to spawn other work on it.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// An async route handler with the shape of a sync one: `handler(req,
    /// resp)` returns a future whose output is `()` or `Result<(), E>`
    /// (`E: Into<HttpError>`); an `Err` is answered as the error, unless
    /// the handler already answered. The result goes to
    /// [`Router::get`](crate::Router::get) and the other verbs.
    pub fn handler<F, Fut>(&self, handler: F) -> impl Fn(RestRequest, RestResponse) + Send + Sync
    where
        F: Fn(RestRequest, RestResponse) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Outcome,
    {
        let handle = self.handle.clone();
        let keep = self._owned.clone();
        let handler = Arc::new(handler);
        move |req: RestRequest, resp: RestResponse| {
            let _keep = &keep;
            let (resp, home) = detach(resp);
            let handler = Arc::clone(&handler);
            // The handler itself is called inside the task, under the same
            // panic guard as the polls of its future.
            let call = CatchUnwind::new(async move { handler(req, resp).await.into_result() });
            handle.spawn(async move {
                let result = call.await;
                finish(&home, result);
            });
        }
    }

    /// An async route handler that returns its answer: `reply(req)` returns
    /// a future whose output is a [`Reply`] (`(StatusCode, String)`,
    /// [`Json`](crate::Json), `Result<_, HttpError>`, …).
    pub fn reply<F, Fut>(&self, reply: F) -> impl Fn(RestRequest, RestResponse) + Send + Sync
    where
        F: Fn(RestRequest) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: Reply,
    {
        let handle = self.handle.clone();
        let keep = self._owned.clone();
        let reply = Arc::new(reply);
        move |req: RestRequest, resp: RestResponse| {
            let _keep = &keep;
            let reply = Arc::clone(&reply);
            let call = CatchUnwind::new(async move { reply(req).await });
            handle.spawn(async move {
                match call.await {
                    Ok(answer) => answer.reply(resp),
                    Err(panic) => {
                        log::warn!("route handler panicked: {}", panic_message(&*panic));
                        HttpError::internal("Internal Server Error").send(resp);
                    }
                }
            });
        }
    }
}

impl From<Handle> for Runtime {
    fn from(handle: Handle) -> Runtime {
        Runtime::from_handle(handle)
    }
}

/// A future that catches a panic of the future it wraps, at every poll,
/// and drops that future at once (with what it owns, the response above
/// all) when it panicked or finished.
struct CatchUnwind<F> {
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> CatchUnwind<F> {
    fn new(future: F) -> Self {
        CatchUnwind {
            inner: Some(Box::pin(future)),
        }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Pending;
        };
        let polled = catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.inner = None;
                Poll::Ready(Ok(output))
            }
            Err(panic) => {
                self.inner = None;
                Poll::Ready(Err(panic))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestClient;
    use crate::{Json, Router};
    use pistachio_http::StatusCode;

    #[test]
    fn replies_and_outcomes() {
        let rt = Runtime::new(1).unwrap();
        let mut router = Router::new();
        router
            .get("/status", rt.reply(|_req| async { StatusCode::ACCEPTED }))
            .get("/str", rt.reply(|_req| async { "text" }))
            .get("/bytes", rt.reply(|_req| async { vec![1u8, 2, 3] }))
            .get(
                "/pair",
                rt.reply(|_req| async { (StatusCode::IM_A_TEAPOT, String::from("tea")) }),
            )
            .get("/json", rt.reply(|_req| async { Json([1, 2]) }))
            .get(
                "/error",
                rt.reply(|_req| async { HttpError::forbidden("nope") }),
            )
            .get(
                "/result",
                rt.reply(|req: RestRequest| async move {
                    let n: u8 = req
                        .query("n")
                        .unwrap_or_default()
                        .parse()
                        .map_err(|_| HttpError::bad_request("n must be a number"))?;
                    Ok::<_, HttpError>(n.to_string())
                }),
            )
            .get(
                "/forgot",
                rt.handler(|_req: RestRequest, _resp: RestResponse| async {}),
            )
            .get(
                "/answered-then-fail",
                rt.handler(|_req: RestRequest, resp: RestResponse| async move {
                    resp.send(StatusCode::OK, "first");
                    Err::<(), _>(HttpError::internal("not sent"))
                }),
            );
        let client = TestClient::new(router);
        let get = |path: &str| {
            let r = client.get(path).send();
            (r.status.as_u16(), r.text())
        };
        assert_eq!(get("/status"), (202, String::new()));
        assert_eq!(get("/str"), (200, "text".into()));
        assert_eq!(client.get("/bytes").send().body, [1, 2, 3]);
        assert_eq!(get("/pair"), (418, "tea".into()));
        assert_eq!(get("/json"), (200, "[1,2]".into()));
        assert_eq!(get("/error"), (403, "nope".into()));
        assert_eq!(get("/result?n=7"), (200, "7".into()));
        assert_eq!(get("/result?n=700"), (400, "n must be a number".into()));
        assert_eq!(get("/forgot").0, 500);
        assert_eq!(get("/answered-then-fail"), (200, "first".into()));
    }
}
