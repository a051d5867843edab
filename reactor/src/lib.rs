//! The reactor layer of pistachio: N event loops, one [`mio::Poll`] per
//! thread, in the image of Pistache's `Aio::Reactor`.
//!
//! * Each worker thread owns an [`EventHandler`] made for it by a factory that is
//!   called **on that thread**, so the handler needs neither `Send` nor locks
//!   (Pistache clones its handler once per `SyncImpl`).
//! * Any thread can post a message to a worker through its [`Mailbox`]: a
//!   crossbeam channel plus a [`mio::Waker`] (Pistache's `PollableQueue`).
//!   Consecutive posts share one wake-up.
//! * Each worker has a deadline heap; the earliest deadline bounds the poll
//!   timeout and expired timers are delivered to [`EventHandler::on_timer`].
//! * [`Reactor::shutdown`] stops every worker and returns only after all of
//!   them have exited.
//!
//! # Semantics worth knowing
//!
//! Events come from `mio`, which is edge-triggered: a handler that stops
//! reading before `WouldBlock` gets no new event for the bytes left behind.
//! Within one loop iteration the order is: I/O events, then mailbox messages,
//! then expired timers, then [`EventHandler::on_tick`].
//!
//! # Example
//!
//! ```
//! use pistachio_reactor::{Context, EventHandler, Reactor};
//!
//! struct Counter {
//!     seen: u64,
//! }
//!
//! impl EventHandler for Counter {
//!     type Message = std::sync::mpsc::Sender<u64>;
//!     type Timer = ();
//!
//!     fn on_event(&mut self, _: &mut Context<'_, Self>, _: &pistachio_reactor::mio::event::Event) {}
//!
//!     fn on_message(&mut self, _: &mut Context<'_, Self>, reply: Self::Message) {
//!         self.seen += 1;
//!         reply.send(self.seen).unwrap();
//!     }
//! }
//!
//! let mut reactor = Reactor::builder().threads(2).spawn(|_worker| Counter { seen: 0 })?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! reactor.mailbox(1).post(tx).unwrap();
//! assert_eq!(rx.recv().unwrap(), 1);
//! reactor.shutdown(); // joins both workers
//! # Ok::<(), std::io::Error>(())
//! ```

mod timer;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::{debug, error};
use mio::{Events, Poll, Registry, Token, Waker};

pub use mio;
pub use timer::TimerId;

use timer::Timers;

/// The token reserved for each worker's [`mio::Waker`]. Handlers must not
/// register sources with it.
pub const WAKE_TOKEN: Token = Token(usize::MAX);

/// Linux keeps at most 15 bytes of a thread name (`TASK_COMM_LEN` - 1).
pub const MAX_THREAD_NAME_LEN: usize = 15;

/// The per-worker event handler. One instance lives on each worker thread
/// for the reactor's whole life.
pub trait EventHandler: Sized + 'static {
    /// What other threads post to this worker through its [`Mailbox`].
    type Message: Send + 'static;
    /// What a timer carries back to [`EventHandler::on_timer`] when it fires.
    type Timer: 'static;

    /// A readiness event for a source this handler registered.
    fn on_event(&mut self, ctx: &mut Context<'_, Self>, event: &mio::event::Event);

    /// A message posted to this worker.
    fn on_message(&mut self, ctx: &mut Context<'_, Self>, msg: Self::Message);

    /// A timer armed with [`Context::set_timer`] reached its deadline.
    fn on_timer(&mut self, ctx: &mut Context<'_, Self>, timer: Self::Timer) {
        let _ = (ctx, timer);
    }

    /// Called once per loop iteration, after events, messages and timers.
    fn on_tick(&mut self, ctx: &mut Context<'_, Self>) {
        let _ = ctx;
    }

    /// The reactor is shutting down; the worker exits when this returns.
    fn on_shutdown(&mut self, ctx: &mut Context<'_, Self>) {
        let _ = ctx;
    }
}

/// What a handler can do with its worker while handling a callback.
pub struct Context<'a, H: EventHandler> {
    registry: &'a Registry,
    timers: &'a mut Timers<H::Timer>,
    mailbox: &'a Mailbox<H::Message>,
    worker: usize,
    now: Instant,
}

impl<H: EventHandler> fmt::Debug for Context<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("worker", &self.worker)
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}

impl<H: EventHandler> Context<'_, H> {
    /// The worker's `mio` registry, to (de)register sources.
    pub fn registry(&self) -> &Registry {
        self.registry
    }

    /// Index of this worker, `0..threads`.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The time the current loop iteration started (after `poll` returned).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// This worker's own mailbox, e.g. to hand to another thread.
    pub fn mailbox(&self) -> &Mailbox<H::Message> {
        self.mailbox
    }

    /// Arms a timer that fires at `deadline` (or at once if it is past).
    pub fn set_timer(&mut self, deadline: Instant, timer: H::Timer) -> TimerId {
        self.timers.insert(deadline, timer)
    }

    /// Arms a timer that fires `after` from the start of this iteration.
    pub fn set_timeout(&mut self, after: Duration, timer: H::Timer) -> TimerId {
        let deadline = self.now + after;
        self.timers.insert(deadline, timer)
    }

    /// Cancels a timer; returns its payload if it had not fired yet.
    pub fn cancel_timer(&mut self, id: TimerId) -> Option<H::Timer> {
        self.timers.cancel(id)
    }
}

enum Envelope<M> {
    Msg(M),
    Shutdown,
}

struct MailboxShared {
    waker: Waker,
    /// Set by the first poster after the worker drained its queue, so that a
    /// burst of posts costs one `eventfd` write rather than one each.
    wake_pending: AtomicBool,
}

/// A handle for posting messages to one worker from any thread.
///
/// Cheap to clone; `Send` and `Sync` when the message type is `Send`.
#[must_use]
pub struct Mailbox<M> {
    tx: Sender<Envelope<M>>,
    shared: Arc<MailboxShared>,
    worker: usize,
}

impl<M> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
            worker: self.worker,
        }
    }
}

impl<M> fmt::Debug for Mailbox<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// The worker behind a [`Mailbox`] has stopped; the message is handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed<M>(pub M);

impl<M> fmt::Display for Closed<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reactor worker has stopped")
    }
}

impl<M: fmt::Debug> std::error::Error for Closed<M> {}

impl<M> Mailbox<M> {
    /// Index of the worker this mailbox delivers to.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Queues `msg` for the worker and wakes it. Fails only once the worker
    /// has stopped.
    pub fn post(&self, msg: M) -> Result<(), Closed<M>> {
        self.send(Envelope::Msg(msg)).map_err(|env| match env {
            Envelope::Msg(m) => Closed(m),
            Envelope::Shutdown => unreachable!("posted a message, got back a shutdown"),
        })
    }

    fn send(&self, env: Envelope<M>) -> Result<(), Envelope<M>> {
        self.tx.send(env).map_err(|e| e.0)?;
        if !self.shared.wake_pending.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.shared.waker.wake() {
                // The message is queued; it will be seen on the next wake-up.
                debug!("waking worker {} failed: {e}", self.worker);
            }
        }
        Ok(())
    }
}

/// Configures and starts a [`Reactor`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `spawn` is called"]
pub struct Builder {
    threads: usize,
    name_prefix: String,
    events_capacity: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            threads: 1,
            name_prefix: "pistachio-w".to_owned(),
            events_capacity: 1024,
        }
    }
}

impl Builder {
    /// Number of worker threads (at least 1). Default 1.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Worker threads are named `{prefix}{index}`, cut to
    /// [`MAX_THREAD_NAME_LEN`] bytes. Default `pistachio-w`.
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Capacity of each worker's `mio::Events` buffer. Default 1024.
    pub fn events_capacity(mut self, n: usize) -> Self {
        self.events_capacity = n.max(1);
        self
    }

    /// Starts the workers. `factory(i)` runs on worker `i`'s own thread and
    /// makes its handler. Fails if a poll, waker or thread cannot be created;
    /// workers already started are then shut down.
    pub fn spawn<H, F>(self, factory: F) -> io::Result<Reactor<H::Message>>
    where
        H: EventHandler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        let mut reactor = Reactor {
            mailboxes: Vec::with_capacity(self.threads),
            threads: Vec::with_capacity(self.threads),
        };
        for worker in 0..self.threads {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKE_TOKEN)?;
            let (tx, rx) = crossbeam_channel::unbounded();
            let mailbox = Mailbox {
                tx,
                shared: Arc::new(MailboxShared {
                    waker,
                    wake_pending: AtomicBool::new(false),
                }),
                worker,
            };
            let name = thread_name(&self.name_prefix, worker);
            let factory = Arc::clone(&factory);
            let own_mailbox = mailbox.clone();
            let capacity = self.events_capacity;
            let spawned = std::thread::Builder::new().name(name).spawn(move || {
                let handler = factory(worker);
                drop(factory);
                run_worker(worker, poll, rx, own_mailbox, handler, capacity);
            });
            match spawned {
                Ok(thread) => {
                    reactor.mailboxes.push(mailbox);
                    reactor.threads.push(thread);
                }
                Err(e) => {
                    reactor.shutdown();
                    return Err(e);
                }
            }
        }
        Ok(reactor)
    }
}

/// `{prefix}{index}` cut to [`MAX_THREAD_NAME_LEN`] bytes on a character
/// boundary, so the name the OS shows is the name Rust reports.
pub fn thread_name(prefix: &str, index: usize) -> String {
    let mut name = format!("{prefix}{index}");
    if name.len() > MAX_THREAD_NAME_LEN {
        let mut cut = MAX_THREAD_NAME_LEN;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

/// A running set of worker threads. Dropping it shuts it down.
#[must_use = "dropping the reactor shuts it down"]
pub struct Reactor<M> {
    mailboxes: Vec<Mailbox<M>>,
    threads: Vec<JoinHandle<()>>,
}

impl<M> fmt::Debug for Reactor<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("threads", &self.mailboxes.len())
            .field("running", &!self.threads.is_empty())
            .finish()
    }
}

impl Reactor<()> {
    /// A [`Builder`] with default settings.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl<M> Reactor<M> {
    /// Number of workers.
    pub fn threads(&self) -> usize {
        self.mailboxes.len()
    }

    /// The mailbox of worker `i`.
    ///
    /// # Panics
    /// If `i >= self.threads()`.
    pub fn mailbox(&self, i: usize) -> &Mailbox<M> {
        &self.mailboxes[i]
    }

    /// Every worker's mailbox, in worker order.
    pub fn mailboxes(&self) -> &[Mailbox<M>] {
        &self.mailboxes
    }

    /// Stops every worker (each runs [`EventHandler::on_shutdown`]) and returns
    /// once all of them have exited. Messages posted before the call are
    /// delivered first. Idempotent.
    pub fn shutdown(&mut self) {
        for mailbox in &self.mailboxes {
            // A worker that already exited (it panicked) has dropped its receiver.
            let _ = mailbox.send(Envelope::Shutdown);
        }
        for (i, thread) in self.threads.drain(..).enumerate() {
            if thread.join().is_err() {
                error!("reactor worker {i} panicked");
            }
        }
    }
}

impl<M> Drop for Reactor<M> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run_worker<H: EventHandler>(
    worker: usize,
    mut poll: Poll,
    rx: Receiver<Envelope<H::Message>>,
    mailbox: Mailbox<H::Message>,
    mut handler: H,
    capacity: usize,
) {
    let mut events = Events::with_capacity(capacity);
    let mut timers: Timers<H::Timer> = Timers::new();
    debug!("worker {worker} started");
    let mut now = Instant::now();
    loop {
        // `now` was read when the previous iteration started: a deadline
        // may fire up to one batch of work late, in exchange for one clock
        // read per iteration instead of two. It is also the `now` the
        // previous iteration popped expired timers with, which
        // `next_timeout` relies on.
        let timeout = timers.next_timeout(now);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            error!("worker {worker}: poll failed, worker stops: {e}");
            break;
        }
        now = Instant::now();
        let mut ctx = Context {
            registry: poll.registry(),
            timers: &mut timers,
            mailbox: &mailbox,
            worker,
            now,
        };
        let mut woken = false;
        for event in events.iter() {
            if event.token() == WAKE_TOKEN {
                woken = true;
            } else {
                handler.on_event(&mut ctx, event);
            }
        }
        let mut stop = false;
        if woken {
            mailbox.shared.wake_pending.store(false, Ordering::SeqCst);
            loop {
                match rx.try_recv() {
                    Ok(Envelope::Msg(msg)) => handler.on_message(&mut ctx, msg),
                    Ok(Envelope::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
                }
            }
        }
        while let Some(timer) = ctx.timers.pop_expired(ctx.now) {
            handler.on_timer(&mut ctx, timer);
        }
        handler.on_tick(&mut ctx);
        if stop {
            handler.on_shutdown(&mut ctx);
            break;
        }
    }
    debug!("worker {worker} stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Records, per worker, every message it received (Pistache's
    /// `reactor_test`: each handler sees exactly what was posted to it).
    struct Recorder {
        worker: usize,
        got: Vec<u32>,
        report: mpsc::Sender<(usize, Vec<u32>)>,
    }

    impl EventHandler for Recorder {
        type Message = u32;
        type Timer = ();
        fn on_event(&mut self, _: &mut Context<'_, Self>, _: &mio::event::Event) {}
        fn on_message(&mut self, ctx: &mut Context<'_, Self>, msg: u32) {
            assert_eq!(ctx.worker(), self.worker);
            self.got.push(msg);
        }
        fn on_shutdown(&mut self, _: &mut Context<'_, Self>) {
            self.report
                .send((self.worker, std::mem::take(&mut self.got)))
                .unwrap();
        }
    }

    #[test]
    fn each_worker_receives_exactly_what_was_posted_to_it() {
        let (report, results) = mpsc::channel();
        let report = std::sync::Mutex::new(report);
        let mut reactor = Reactor::builder()
            .threads(4)
            .spawn(move |worker| Recorder {
                worker,
                got: Vec::new(),
                report: report.lock().unwrap().clone(),
            })
            .unwrap();
        // Post from several threads at once: 4 posters x 4 workers x 250.
        std::thread::scope(|s| {
            for poster in 0..4u32 {
                let mailboxes = reactor.mailboxes().to_vec();
                s.spawn(move || {
                    for i in 0..250u32 {
                        for (w, mb) in mailboxes.iter().enumerate() {
                            mb.post(poster * 1_000_000 + w as u32 * 1000 + i).unwrap();
                        }
                    }
                });
            }
        });
        reactor.shutdown();
        let mut seen = 0;
        for (worker, got) in results.try_iter() {
            seen += 1;
            assert_eq!(got.len(), 1000, "worker {worker}");
            for poster in 0..4u32 {
                let mine: Vec<u32> = got
                    .iter()
                    .copied()
                    .filter(|m| m / 1_000_000 == poster)
                    .collect();
                let expected: Vec<u32> = (0..250)
                    .map(|i| poster * 1_000_000 + worker as u32 * 1000 + i)
                    .collect();
                assert_eq!(mine, expected, "worker {worker}, in order per poster");
            }
        }
        assert_eq!(
            seen, 4,
            "every worker ran on_shutdown before shutdown returned"
        );
    }

    struct TimerOrder {
        fired: Arc<std::sync::Mutex<Vec<u32>>>,
    }

    impl EventHandler for TimerOrder {
        type Message = Vec<(u64, u32)>;
        type Timer = u32;
        fn on_event(&mut self, _: &mut Context<'_, Self>, _: &mio::event::Event) {}
        fn on_message(&mut self, ctx: &mut Context<'_, Self>, plan: Self::Message) {
            let base = ctx.now();
            let mut cancel = Vec::new();
            for (ms, tag) in plan {
                let id = ctx.set_timer(base + Duration::from_millis(ms), tag);
                if tag == 999 {
                    cancel.push(id);
                }
            }
            for id in cancel {
                assert_eq!(ctx.cancel_timer(id), Some(999));
            }
        }
        fn on_timer(&mut self, _: &mut Context<'_, Self>, tag: u32) {
            self.fired.lock().unwrap().push(tag);
        }
    }

    #[test]
    fn timers_fire_in_deadline_order_and_cancelled_ones_never() {
        let fired = Arc::new(std::sync::Mutex::new(Vec::new()));
        let f2 = Arc::clone(&fired);
        let mut reactor = Reactor::builder()
            .spawn(move |_| TimerOrder {
                fired: Arc::clone(&f2),
            })
            .unwrap();
        let started = Instant::now();
        reactor
            .mailbox(0)
            .post(vec![(60, 3), (20, 1), (5, 999), (40, 2)])
            .unwrap();
        while fired.lock().unwrap().len() < 3 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(started.elapsed() >= Duration::from_millis(60));
        std::thread::sleep(Duration::from_millis(20));
        reactor.shutdown();
        assert_eq!(*fired.lock().unwrap(), vec![1, 2, 3]);
    }

    struct Sleeper {
        exited: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl EventHandler for Sleeper {
        type Message = ();
        type Timer = ();
        fn on_event(&mut self, _: &mut Context<'_, Self>, _: &mio::event::Event) {}
        fn on_message(&mut self, _: &mut Context<'_, Self>, _: ()) {}
        fn on_shutdown(&mut self, _: &mut Context<'_, Self>) {
            // A slow shutdown: shutdown() must still wait for it.
            std::thread::sleep(Duration::from_millis(50));
            self.exited.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn shutdown_returns_only_after_every_worker_exited() {
        let exited = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let e2 = Arc::clone(&exited);
        let mut reactor = Reactor::builder()
            .threads(3)
            .spawn(move |_| Sleeper {
                exited: Arc::clone(&e2),
            })
            .unwrap();
        let mailbox = reactor.mailbox(2).clone();
        reactor.shutdown();
        assert_eq!(exited.load(Ordering::SeqCst), 3);
        assert_eq!(
            mailbox.post(()),
            Err(Closed(())),
            "posting after shutdown fails"
        );
        reactor.shutdown(); // idempotent
    }

    struct NameProbe {
        names: mpsc::Sender<(Option<String>, String)>,
    }

    impl EventHandler for NameProbe {
        type Message = ();
        type Timer = ();
        fn on_event(&mut self, _: &mut Context<'_, Self>, _: &mio::event::Event) {}
        fn on_message(&mut self, _: &mut Context<'_, Self>, _: ()) {
            let rust = std::thread::current().name().map(str::to_owned);
            // What the kernel shows (`ps`, `top`, `/proc/.../comm`).
            let os = std::fs::read_to_string("/proc/thread-self/comm")
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_default();
            self.names.send((rust, os)).unwrap();
        }
    }

    #[test]
    fn thread_names_are_applied_and_cut_to_15_bytes() {
        assert_eq!(thread_name("pistachio-w", 3), "pistachio-w3");
        assert_eq!(thread_name("a-very-long-prefix-", 12), "a-very-long-pre");
        // Never cut inside a UTF-8 character.
        assert_eq!(thread_name("éééééééé", 1), "ééééééé");

        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let mut reactor = Reactor::builder()
            .threads(2)
            .name_prefix("pistachio-worker-thread-")
            .spawn(move |_| NameProbe {
                names: tx.lock().unwrap().clone(),
            })
            .unwrap();
        reactor.mailbox(1).post(()).unwrap();
        let (rust, os) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        reactor.shutdown();
        assert_eq!(rust.as_deref(), Some("pistachio-worke"));
        if cfg!(target_os = "linux") {
            assert_eq!(os, "pistachio-worke");
        }
    }
}
