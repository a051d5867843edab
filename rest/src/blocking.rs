//! [`BlockingPool`]: a fixed number of threads with a bounded queue, for
//! route handlers that block (file or database I/O, CPU-heavy work), so
//! that they never hold up a reactor thread.
//!
//! A reactor thread runs the router and every connection it owns; a handler
//! that blocks it stalls them all. Wrapping such a handler with
//! [`BlockingPool::handler`] hands each request to the pool instead: the
//! reactor thread is free again at once, and the pool's thread answers
//! through the same [`RestResponse`] (answering from another thread goes
//! through the connection's worker mailbox). When the queue is full, the
//! request is answered `503 Service Unavailable` with `Retry-After` right
//! away rather than waiting behind work the pool cannot take.

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use pistachio_http::header::{HeaderValue, RETRY_AFTER};
use pistachio_http::StatusCode;

use crate::request::RestRequest;
use crate::response::{reclaim, send_error, Home, HttpError, Outcome, RestResponse};

/// Body of the `503` answer of a full pool.
pub const BUSY_BODY: &str = "Service Unavailable: too many requests in progress";

type Job = Box<dyn FnOnce() + Send>;

/// How to build a [`BlockingPool`]; see [`BlockingPool::builder`].
#[derive(Debug, Clone)]
pub struct BlockingPoolBuilder {
    threads: usize,
    queue: usize,
    retry_after: Duration,
    name: String,
}

impl BlockingPoolBuilder {
    /// The number of threads (default 4; at least 1).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// How many requests may wait for a free thread (default 64). `0`
    /// takes a request only when a thread is idle and waiting. A request
    /// holds its queue place until a thread has taken it, so a burst can
    /// find the queue full for the instant before an idle thread wakes.
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n;
        self
    }

    /// The `Retry-After` of the `503` a full pool answers (default 1 s;
    /// sent in whole seconds, at least 1).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// The prefix of the threads' names (default `pistachio-blocking`).
    pub fn name(mut self, prefix: impl Into<String>) -> Self {
        self.name = prefix.into();
        self
    }

    /// Starts the threads.
    pub fn build(self) -> io::Result<BlockingPool> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(self.queue);
        let busy = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::with_capacity(self.threads);
        for i in 0..self.threads {
            let rx: Receiver<Job> = rx.clone();
            let busy = Arc::clone(&busy);
            let spawned = thread::Builder::new()
                .name(format!("{}-{i}", self.name))
                .spawn(move || {
                    for job in rx {
                        busy.fetch_add(1, Ordering::SeqCst);
                        // A panicking job has already answered 500 through
                        // its writer; the thread goes on with the next one.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                        busy.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    drop(tx);
                    for handle in threads {
                        let _ = handle.join();
                    }
                    return Err(e);
                }
            }
        }
        let secs = self.retry_after.as_secs().max(1);
        Ok(BlockingPool {
            inner: Arc::new(Inner {
                tx: Some(tx),
                threads: Mutex::new(threads),
                busy,
                retry_after: HeaderValue::from(secs),
                capacity: self.queue,
            }),
        })
    }
}

struct Inner {
    tx: Option<Sender<Job>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    busy: Arc<AtomicUsize>,
    retry_after: HeaderValue,
    capacity: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends each thread once it has run what was
        // already queued.
        self.tx = None;
        let me = thread::current().id();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in threads {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

/// Why [`BlockingPool::try_spawn`] did not take a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// Every thread is busy and the queue is full.
    Full,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Full => f.write_str("the blocking pool's queue is full"),
        }
    }
}

impl std::error::Error for SpawnError {}

/// A fixed number of threads with a bounded queue, for blocking route
/// handlers (the `spawn_blocking` of a server without an async runtime).
///
/// Cloning it is cheap and shares the threads. When the last clone (and
/// the last handler made from it) is dropped, the queue closes and the
/// threads are joined once they have run what was queued.
///
/// ```
/// use pistachio_rest::blocking::BlockingPool;
/// use pistachio_rest::{RestRequest, RestResponse, Router, StatusCode};
///
/// let pool = BlockingPool::builder().threads(4).queue(32).build()?;
/// let mut router = Router::new();
/// router.get("/report", pool.handler(|_req: RestRequest, resp: RestResponse| {
///     std::thread::sleep(std::time::Duration::from_millis(5)); // blocking work
///     resp.send(StatusCode::OK, "done");
/// }));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct BlockingPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPool")
            .field("threads", &self.threads())
            .field("busy", &self.busy())
            .field("queued", &self.queued())
            .field("queue", &self.inner.capacity)
            .finish()
    }
}

impl BlockingPool {
    /// A builder with the defaults: 4 threads, a queue of 64, `Retry-After: 1`.
    pub fn builder() -> BlockingPoolBuilder {
        BlockingPoolBuilder {
            threads: 4,
            queue: 64,
            retry_after: Duration::from_secs(1),
            name: "pistachio-blocking".to_owned(),
        }
    }

    /// A pool of `threads` threads and a queue of `queue` requests.
    pub fn new(threads: usize, queue: usize) -> io::Result<BlockingPool> {
        BlockingPool::builder()
            .threads(threads)
            .queue(queue)
            .build()
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.inner
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// How many jobs are running now.
    pub fn busy(&self) -> usize {
        self.inner.busy.load(Ordering::SeqCst)
    }

    /// How many jobs wait for a thread now.
    pub fn queued(&self) -> usize {
        self.inner.tx.as_ref().map_or(0, Sender::len)
    }

    /// Runs `job` on a pool thread, or gives it back untouched inside the
    /// error when the queue is full.
    pub fn try_spawn<F>(&self, job: F) -> Result<(), (SpawnError, F)>
    where
        F: FnOnce() + Send + 'static,
    {
        // The job travels in a slot, so that a refused one can be handed
        // back to the caller as it was.
        let slot = Arc::new(Mutex::new(Some(job)));
        let taken = Arc::clone(&slot);
        let boxed: Job = Box::new(move || {
            let job = taken.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(job) = job {
                job();
            }
        });
        let Some(tx) = self.inner.tx.as_ref() else {
            return Err((SpawnError::Full, take_back(&slot)));
        };
        match tx.try_send(boxed) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Err((SpawnError::Full, take_back(&slot)))
            }
        }
    }

    /// Wraps a route handler so that it runs on this pool: the router's
    /// thread only queues it. It takes the same handlers as
    /// [`Router::get`](crate::Router::get) (returning `()` or
    /// `Result<(), E: Into<HttpError>>`), and its errors and panics are
    /// answered the same way (the error, or `500`). A request that finds
    /// the queue full is answered `503 Service Unavailable` with
    /// `Retry-After`.
    pub fn handler<F, O>(&self, handler: F) -> impl Fn(RestRequest, RestResponse) + Send + Sync
    where
        F: Fn(RestRequest, RestResponse) -> O + Send + Sync + 'static,
        O: Outcome,
    {
        let pool = self.clone();
        let handler = Arc::new(handler);
        move |req: RestRequest, resp: RestResponse| {
            let (resp, home) = detach(resp);
            let refused_home = Arc::clone(&home);
            let handler = Arc::clone(&handler);
            let job = move || {
                let result = catch_unwind(AssertUnwindSafe(|| handler(req, resp).into_result()));
                finish(&home, result);
            };
            if let Err((SpawnError::Full, job)) = pool.try_spawn(job) {
                log::warn!("blocking pool full: answering 503");
                // Dropping the refused job drops its response, which hands
                // the writer back to `home`.
                drop(job);
                answer_busy(&refused_home, &pool.inner.retry_after);
            }
        }
    }
}

fn take_back<F>(slot: &Arc<Mutex<Option<F>>>) -> F {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .expect("a refused job is still in its slot")
}

/// Takes a routed response away from the router, for a handler that will
/// finish after the router's call has returned: the new [`RestResponse`]
/// hands its writer back to the returned [`Home`] when dropped unanswered,
/// so that [`finish`] can still answer the handler's error (or `500`).
pub(crate) fn detach(resp: RestResponse) -> (RestResponse, Home) {
    let home: Home = Arc::new(Mutex::new(None));
    let errors = resp.errors;
    let mut resp = RestResponse::new(resp.into_writer(), Arc::clone(&home));
    resp.errors = errors;
    (resp, home)
}

/// Answers for a detached handler that has returned (`Ok`) or panicked
/// (`Err`): its error if it returned one, `500` if it panicked, nothing if
/// it answered (or handed the response on).
pub(crate) fn finish(home: &Home, result: Result<Result<(), HttpError>, Box<dyn Any + Send>>) {
    let error = match result {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error,
        Err(panic) => {
            log::warn!("route handler panicked: {}", panic_message(&*panic));
            HttpError::internal("Internal Server Error")
        }
    };
    match reclaim(home) {
        Some((writer, format)) => send_error(writer, &error, format),
        None => log::debug!("{error}: not sent, the response was already used"),
    }
}

/// The text of a panic payload, when it has one.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Answers `503` with `Retry-After` through `home`'s writer.
fn answer_busy(home: &Home, retry_after: &HeaderValue) {
    if let Some((mut writer, _)) = reclaim(home) {
        writer
            .headers_mut()
            .insert(RETRY_AFTER, retry_after.clone());
        writer.set_mime("text/plain; charset=utf-8");
        writer.send(StatusCode::SERVICE_UNAVAILABLE, BUSY_BODY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestClient;
    use crate::Router;

    #[test]
    fn try_spawn_hands_a_refused_job_back() {
        let pool = BlockingPool::new(1, 0).unwrap();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let (ran_tx, ran_rx) = crossbeam_channel::unbounded::<u32>();
        // Queue 0: a job is taken only by an idle thread; wait for it to be.
        let first = {
            let ran_tx = ran_tx.clone();
            move || {
                release_rx.recv().unwrap();
                ran_tx.send(1).unwrap();
            }
        };
        let mut first = Some(first);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(job) = first.take() {
            if let Err((SpawnError::Full, job)) = pool.try_spawn(job) {
                assert!(std::time::Instant::now() < deadline, "no idle thread");
                thread::sleep(Duration::from_millis(1));
                first = Some(job);
            }
        }
        let second = move || ran_tx.send(2).unwrap();
        let (error, second) = pool.try_spawn(second).unwrap_err();
        assert_eq!(error, SpawnError::Full);
        release_tx.send(()).unwrap();
        assert_eq!(ran_rx.recv().unwrap(), 1);
        // The refused job is intact: run it here.
        second();
        assert_eq!(ran_rx.recv().unwrap(), 2);
        assert_eq!(pool.threads(), 1);
    }

    #[test]
    fn drop_runs_what_was_queued_and_joins() {
        let pool = BlockingPool::new(2, 8).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded::<usize>();
        for i in 0..8 {
            let tx = tx.clone();
            assert!(pool.try_spawn(move || tx.send(i).unwrap()).is_ok());
        }
        drop(tx);
        drop(pool);
        let mut ran: Vec<usize> = rx.try_iter().collect();
        ran.sort_unstable();
        assert_eq!(ran, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn handler_answers_like_a_sync_one() {
        let pool = BlockingPool::new(2, 4).unwrap();
        let mut router = Router::new();
        router
            .get(
                "/sum/:a/:b",
                pool.handler(|req: RestRequest, resp: RestResponse| {
                    let (a, b): (u32, u32) = (req.param("a")?, req.param("b")?);
                    resp.send(StatusCode::OK, (a + b).to_string());
                    Ok::<(), HttpError>(())
                }),
            )
            .get(
                "/forgot",
                pool.handler(|_req: RestRequest, _resp: RestResponse| {}),
            );
        let client = TestClient::new(router);
        assert_eq!(client.get("/sum/2/3").send().text(), "5");
        let r = client.get("/sum/2/x").send();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text().contains(":b"), "{}", r.text());
        assert_eq!(
            client.get("/forgot").send().status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
