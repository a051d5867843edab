#!/usr/bin/env python3
"""Frame-level HTTP/2 cases played against a pistachio test server with
the `h2` library (hyper-h2), run by `tests/tests/h2_clients.rs`.

    python3 h2_cases.py CASE PORT [--tls CA_FILE]

Each case prints `ok CASE ...` and exits 0 when the server behaved, or
fails with a message (exit status 1). `h2` checks every frame the
server sends against the protocol and against the windows this client
advertised: a server that sent more than a window allows makes it raise
`FlowControlError`. The cases also keep their own count of the windows
they granted, independently of `h2`.

The server's routes (see the Rust test): `/version`, `/big?n=N` (N bytes
of the pattern below), `/trailers` (echoes the body's length and sum and
the trailer fields `x-checksum` and `x-note`), `/endless?id=ID` (a
streamed answer that ends only when the client goes).
"""

import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

import os

DEBUG = bool(os.environ.get("H2_CASES_DEBUG"))
IO_TIMEOUT = 5.0
DEADLINE = 15.0

_PERIOD = bytes((i * 31) % 251 for i in range(251))


def pattern(n):
    """The test server's deterministic body bytes: byte i is i*31 % 251."""
    return (_PERIOD * (n // 251 + 1))[:n]


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Client:
    """One HTTP/2 connection, driven by hand: windows are only opened
    when a case says so (`grant`)."""

    def __init__(self, port, ca, settings=None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        if ca:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            check(sock.selected_alpn_protocol() == "h2", "ALPN did not select h2")
        self.sock = sock
        self.started = time.monotonic()
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.flush()
        self.settings_acked = 0
        self.settings_sent = 1
        self.remote_settings = {}
        self.closed = None
        # Per stream: status, headers, body bytes, ended, reset code.
        self.streams = {}
        # Our own count of the windows we granted (connection: key 0).
        self.granted = {0: 65535}
        self.received = {0: 0}
        # `h2` applies every pending change at the first ACK: wait for
        # the one of the opening SETTINGS before sending others.
        self.until(lambda: self.settings_acked >= 1, "SETTINGS ACK")
        if settings:
            self.change_settings(settings)

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def change_settings(self, settings):
        """Sends SETTINGS and waits for the server's ACK (only then do
        the new values apply)."""
        self.settings_sent += 1
        want = self.settings_sent
        self.conn.update_settings(settings)
        self.flush()
        self.until(lambda: self.settings_acked >= want, "SETTINGS ACK")

    initial_window = 65535

    def request(self, path, method="GET", end_stream=True, extra=(), **priority):
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (":method", method),
            (":scheme", "https" if isinstance(self.sock, ssl.SSLSocket) else "http"),
            (":authority", "localhost"),
            (":path", path),
        ] + list(extra)
        self.conn.send_headers(sid, headers, end_stream=end_stream, **priority)
        self.flush()
        self.streams[sid] = {
            "status": None,
            "headers": {},
            "body": bytearray(),
            "ended": False,
            "reset": None,
        }
        self.granted[sid] = self.initial_window
        self.received[sid] = 0
        return sid

    def grant(self, sid, n):
        """Opens stream `sid`'s window (0: the connection's) by `n`."""
        if n > 0:
            self.conn.increment_flow_control_window(n, None if sid == 0 else sid)
            self.flush()
            self.granted[sid] += n

    def step(self):
        """Reads once and handles what came; False at end of stream."""
        check(time.monotonic() - self.started < DEADLINE, "the case took too long")
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise Failure("the server sent nothing for %.0f s" % IO_TIMEOUT)
        if not data:
            return False
        for ev in self.conn.receive_data(data):
            if DEBUG:
                print(ev, file=sys.stderr)
            self.on_event(ev)
        self.flush()
        return True

    def on_event(self, ev):
        if isinstance(ev, h2.events.SettingsAcknowledged):
            self.settings_acked += 1
            change = ev.changed_settings.get(SettingCodes.INITIAL_WINDOW_SIZE)
            if change is not None:
                # From the ACK on, the new value holds for every open
                # stream, by the difference (RFC 9113 §6.9.2).
                delta = change.new_value - self.initial_window
                self.initial_window = change.new_value
                for sid in self.streams:
                    self.granted[sid] += delta
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for code, change in ev.changed_settings.items():
                self.remote_settings[code] = change.new_value
        elif isinstance(ev, h2.events.ResponseReceived):
            s = self.streams[ev.stream_id]
            s["headers"] = dict(ev.headers)
            s["status"] = int(s["headers"][":status"])
        elif isinstance(ev, h2.events.DataReceived):
            sid = ev.stream_id
            n = ev.flow_controlled_length
            self.received[0] += n
            check(
                self.received[0] <= self.granted[0],
                "connection window exceeded: %d bytes received, %d granted"
                % (self.received[0], self.granted[0]),
            )
            if sid in self.streams and self.streams[sid]["reset"] is None:
                self.received[sid] += n
                check(
                    self.received[sid] <= self.granted[sid],
                    "stream %d window exceeded: %d bytes received, %d granted"
                    % (sid, self.received[sid], self.granted[sid]),
                )
                self.streams[sid]["body"] += ev.data
        elif isinstance(ev, h2.events.StreamEnded):
            self.streams[ev.stream_id]["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            if ev.stream_id in self.streams:
                self.streams[ev.stream_id]["reset"] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closed = ev.error_code

    def until(self, cond, what):
        while not cond():
            check(self.closed is None, "GOAWAY %s while waiting for %s" % (self.closed, what))
            if not self.step():
                raise Failure("connection closed while waiting for %s" % what)

    def done(self, sid):
        return self.streams[sid]["ended"] or self.streams[sid]["reset"] is not None

    def answer(self, sid):
        """Waits for stream `sid` to end, granting windows as it reads."""
        while not self.done(sid):
            check(self.closed is None, "GOAWAY %s on stream %d" % (self.closed, sid))
            if not self.step():
                raise Failure("connection closed before stream %d ended" % sid)
            self.top_up(sid)
        s = self.streams[sid]
        check(s["reset"] is None, "stream %d reset (%s)" % (sid, s["reset"]))
        return s

    def top_up(self, sid):
        """Keeps the connection and stream `sid` windows at least half open."""
        for key, full in ((0, 1 << 20), (sid, 1 << 20)):
            if key in self.granted and not (key != 0 and self.done(key)):
                left = self.granted[key] - self.received[key]
                if left < full // 2:
                    self.grant(key, full - left)

    def quiet(self, sid, secs):
        """Reads for `secs`: nothing may come for stream `sid`."""
        before = self.received[sid]
        end = time.monotonic() + secs
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                self.step()
            except Failure as e:
                if "sent nothing" not in str(e):
                    raise
        self.sock.settimeout(IO_TIMEOUT)
        check(
            self.received[sid] == before,
            "stream %d got %d bytes beyond its window"
            % (sid, self.received[sid] - before),
        )

    def goodbye(self):
        self.conn.close_connection()
        self.flush()
        self.sock.close()


def get_ok(c, path, want):
    sid = c.request(path)
    s = c.answer(sid)
    check(s["status"] == 200, "%s: status %s" % (path, s["status"]))
    check(bytes(s["body"]) == want, "%s: body %r" % (path, bytes(s["body"][:80])))


# ----- cases -----


def case_request_trailers(port, ca):
    """A request body in many DATA frames (beyond the server's first
    window, so it has to wait for WINDOW_UPDATE), then a trailer section
    (HEADERS with END_STREAM): the trailer fields reach the handler.
    Then trailers right after the head, with no body at all."""
    c = Client(port, ca)
    body = pattern(300_000)
    sid = c.request("/trailers", method="POST", end_stream=False)
    sent = 0
    while sent < len(body):
        room = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
        if room == 0:
            c.step()
            continue
        c.conn.send_data(sid, body[sent : sent + room])
        c.flush()
        sent += room
    c.conn.send_headers(sid, [("x-checksum", str(sum(body))), ("x-note", "last")], end_stream=True)
    c.flush()
    s = c.answer(sid)
    want = "%d %d x-checksum=%d x-note=last" % (len(body), sum(body), sum(body))
    check(s["status"] == 200, "status %s" % s["status"])
    check(s["body"].decode() == want, "got %r, want %r" % (s["body"].decode(), want))
    sid = c.request("/trailers", method="POST", end_stream=False)
    c.conn.send_headers(sid, [("x-checksum", "0"), ("x-note", "empty")], end_stream=True)
    c.flush()
    s = c.answer(sid)
    check(s["body"].decode() == "0 0 x-checksum=0 x-note=empty", "got %r" % s["body"].decode())
    c.goodbye()
    print("ok request_trailers %d bytes" % len(body))


def case_slow_credit(port, ca):
    """The client opens small windows and gives credit back only when
    they are used up, a little at a time and after a pause: the server
    never sends beyond either window, and everything arrives.
    First a tiny stream window (1000 bytes), the connection wide open;
    then three streams at once with large stream windows but the
    connection's 65535 bytes granted back in 4000-byte pieces."""
    c = Client(port, ca, {SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    c.grant(0, 1 << 24)
    n = 120_000
    sid = c.request("/big?n=%d" % n)
    frames = 0
    while not c.done(sid):
        before = c.received[sid]
        c.step()
        frames += c.received[sid] != before
        if not c.done(sid) and c.received[sid] == c.granted[sid]:
            time.sleep(0.001)
            c.grant(sid, 1000)
    s = c.answer(sid)
    check(bytes(s["body"]) == pattern(n), "phase 1: body differs (%d bytes)" % len(s["body"]))
    c.goodbye()

    c = Client(port, ca, {SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
    n = 150_000
    sids = [c.request("/big?n=%d" % n) for _ in range(3)]
    while not all(c.done(s) for s in sids):
        c.step()
        if c.received[0] == c.granted[0]:
            time.sleep(0.001)
            c.grant(0, 4000)
    for sid in sids:
        s = c.answer(sid)
        check(bytes(s["body"]) == pattern(n), "phase 2: stream %d differs" % sid)
    c.goodbye()
    print("ok slow_credit")


def case_window_settings_change(port, ca):
    """SETTINGS_INITIAL_WINDOW_SIZE changed while a stream is open
    (RFC 9113 §6.9.2). With 0 the server sends the head and no DATA;
    raised to 1 MiB, the open stream may take the difference at once,
    without any WINDOW_UPDATE for it. Then lowered mid-download, so the
    stream's window goes negative: the server must stop until
    WINDOW_UPDATEs bring it back above zero."""
    c = Client(port, ca, {SettingCodes.INITIAL_WINDOW_SIZE: 0})
    c.grant(0, 1 << 26)
    n = 600_000
    sid = c.request("/big?n=%d" % n)
    c.until(lambda: c.streams[sid]["status"] is not None, "the response head")
    c.quiet(sid, 0.3)
    c.change_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    c.until(lambda: c.done(sid), "the body on the raised window")
    s = c.streams[sid]
    check(bytes(s["body"]) == pattern(n), "raised window: body differs")

    n = 3 * 1024 * 1024
    sid = c.request("/big?n=%d" % n)
    c.until(lambda: c.received[sid] >= 400_000, "the first 400000 bytes")
    c.change_settings({SettingCodes.INITIAL_WINDOW_SIZE: 16384})
    debt = c.received[sid] - c.granted[sid]
    check(debt > 0, "the window was meant to go negative (%d)" % debt)
    # Credit that leaves the window at -1: still nothing may come.
    c.grant(sid, debt - 1)
    c.quiet(sid, 0.3)
    c.grant(sid, 16385)
    while not c.done(sid):
        if c.received[sid] == c.granted[sid]:
            c.grant(sid, 16384)
        c.step()
    check(bytes(c.streams[sid]["body"]) == pattern(n), "lowered window: body differs")
    c.goodbye()
    print("ok window_settings_change")


def case_reset_download(port, ca):
    """The client resets a long download midway (RST_STREAM CANCEL): the
    connection goes on serving new streams and large answers. (That the
    server's producer learns of the reset is checked by the Rust test.)"""
    c = Client(port, ca)
    sid = c.request("/endless?id=rst-%s" % ("tls" if ca else "plain"))
    while c.received[sid] < 200_000:
        c.step()
        c.top_up(sid)
    c.conn.reset_stream(sid, ErrorCodes.CANCEL)
    c.flush()
    c.streams[sid]["reset"] = ErrorCodes.CANCEL
    # Connection credit for whatever was already on the way.
    c.grant(0, 1 << 22)
    for i in range(3):
        get_ok(c, "/version", b"HTTP/2")
    get_ok(c, "/big?n=100000", pattern(100_000))
    check(c.closed is None, "GOAWAY %s" % c.closed)
    c.goodbye()
    print("ok reset_download")


def case_priority_ignored(port, ca):
    """PRIORITY frames, and HEADERS carrying priority, are parsed and
    ignored (RFC 9113 §5.3.2): on idle streams, on open ones, exclusive
    re-parenting midway through downloads; every stream is answered."""
    c = Client(port, ca, {SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    c.grant(0, 1 << 24)
    c.conn.prioritize(101, weight=200, depends_on=0)
    c.flush()
    n = 400_000
    a = c.request("/big?n=%d" % n, priority_weight=1, priority_depends_on=0)
    b = c.request(
        "/big?n=%d" % n,
        priority_weight=256,
        priority_depends_on=a,
        priority_exclusive=True,
    )
    d = c.request("/version", priority_weight=16, priority_depends_on=101)
    c.until(lambda: c.received[a] + c.received[b] > 50_000, "the first bytes")
    c.conn.prioritize(a, weight=32, depends_on=b, exclusive=True)
    c.conn.prioritize(b, weight=64, depends_on=0)
    c.conn.prioritize(103, weight=8, depends_on=a)
    c.flush()
    for sid, want in ((a, pattern(n)), (b, pattern(n)), (d, b"HTTP/2")):
        s = c.answer(sid)
        check(s["status"] == 200 and bytes(s["body"]) == want, "stream %d differs" % sid)
    check(c.closed is None, "GOAWAY %s" % c.closed)
    c.goodbye()
    print("ok priority_ignored")


CASES = {
    "request_trailers": case_request_trailers,
    "slow_credit": case_slow_credit,
    "window_settings_change": case_window_settings_change,
    "reset_download": case_reset_download,
    "priority_ignored": case_priority_ignored,
}


def main(argv):
    if len(argv) not in (3, 5) or argv[1] not in CASES:
        print("usage: h2_cases.py {%s} PORT [--tls CA]" % "|".join(CASES), file=sys.stderr)
        return 2
    ca = argv[4] if len(argv) == 5 and argv[3] == "--tls" else None
    try:
        CASES[argv[1]](int(argv[2]), ca)
    except Failure as e:
        print("FAIL %s: %s" % (argv[1], e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
