//! Exchanges that finish when the socket has taken their last byte, for
//! both protocols: an answer is queued on the connection, its completion
//! record waits here with the connection's byte count that ends it
//! ([`Conn::sent`]), and is completed once the socket has accepted that
//! many bytes (or reported `ClientGone` if the connection closes first).

use std::collections::VecDeque;
use std::time::Instant;

use pistachio_transport::Conn;

use crate::middleware::Pending as Record;
use crate::writer::HttpMsg;
use crate::End;

/// An exchange waiting for its last byte to leave: it has finished once
/// the connection's [`Conn::sent`] reaches `mark`.
#[derive(Debug)]
pub(crate) struct Unsent {
    pub(crate) record: Box<Record>,
    pub(crate) mark: u64,
    pub(crate) keep_alive: bool,
    pub(crate) end: End,
}

impl Unsent {
    /// Reports the exchange finished; the record comes back for reuse.
    fn complete(self, now: Instant) -> Box<Record> {
        self.record.complete(self.keep_alive, self.end, now)
    }
}

/// The exchanges of one connection whose answers are queued but not yet
/// taken by the socket, oldest first.
#[derive(Debug, Default)]
pub(crate) struct UnsentQueue(VecDeque<Unsent>);

impl UnsentQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, done: Unsent) {
        self.0.push_back(done);
    }

    /// Finishes `done` at once when nothing waits before it and the socket
    /// takes the whole queue now (the usual case); else queues it. Returns
    /// the record of a finished exchange, for reuse.
    pub(crate) fn finish_or_queue(
        &mut self,
        conn: &mut Conn<'_, HttpMsg>,
        done: Unsent,
    ) -> Option<Box<Record>> {
        if self.0.is_empty() {
            conn.flush();
            if conn.sent() >= done.mark {
                return Some(done.complete(conn.now()));
            }
        }
        self.0.push_back(done);
        None
    }

    /// Finishes the exchanges whose last byte the socket has taken, writing
    /// what is queued first; asks for [`Protocol::on_sent`] if some are
    /// left. Returns the last finished record, for reuse.
    ///
    /// [`Protocol::on_sent`]: pistachio_transport::Protocol::on_sent
    pub(crate) fn settle(&mut self, conn: &mut Conn<'_, HttpMsg>) -> Option<Box<Record>> {
        let first = self.0.front()?;
        if conn.sent() < first.mark {
            conn.flush();
        }
        let (sent, now) = (conn.sent(), conn.now());
        let mut spare = None;
        while let Some(first) = self.0.front() {
            if first.mark > sent {
                conn.notify_sent();
                break;
            }
            spare = self.0.pop_front().map(|done| done.complete(now));
        }
        spare
    }

    /// The connection closed: whatever is left was queued in full but
    /// never taken in full by the socket.
    pub(crate) fn abandon(&mut self) {
        for done in self.0.drain(..) {
            done.record.complete(false, End::ClientGone, Instant::now());
        }
    }
}
