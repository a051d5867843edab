#!/usr/bin/env python3
"""Writes the seed corpus for the `request_parser` fuzz target.

Each seed is a mode byte, optional split positions and a request (see
fuzz_targets/request_parser.rs). Run from this directory:

    python3 gen_seeds.py
"""

import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "request_parser")

BYTEWISE = object()

SEEDS = {
    "get": (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", []),
    "get_query_headers": (
        b"GET /search?q=pistachio&page=2 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"User-Agent: curl/8.5.0\r\n"
        b"Accept: */*\r\n"
        b"Accept-Encoding: gzip, deflate\r\n"
        b"Cookie: a=1; b=2\r\n"
        b"\r\n",
        [5, 17, 40],
    ),
    "pipelined": (
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        [27, 28, 30],
    ),
    "post_content_length": (
        b"POST /api/items HTTP/1.1\r\n"
        b"Host: localhost\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 18\r\n"
        b"\r\n"
        b'{"name":"walnut"}\n',
        [60, 100],
    ),
    "post_then_get": (
        b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /g HTTP/1.1\r\nHost: h\r\n\r\n",
        BYTEWISE,
    ),
    "chunked_ext_trailers": (
        b"PUT /upload HTTP/1.1\r\n"
        b"Host: h\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Trailer: Digest\r\n"
        b"\r\n"
        b"5;name=value;flag\r\nhello\r\n"
        b"7 ; q=\"quoted\"\r\n, world\r\n"
        b"0\r\n"
        b"Digest: sha-256=abc\r\n"
        b"X-Done: yes\r\n"
        b"\r\n",
        [70, 75, 90, 120],
    ),
    "chunked_bytewise": (
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"A\r\n0123456789\r\n0\r\n\r\n",
        BYTEWISE,
    ),
    "http10_keepalive": (
        b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        [],
    ),
    "absolute_form": (
        b"GET http://example.org:81/path?x=y HTTP/1.1\r\nHost: ignored\r\n\r\n",
        [12],
    ),
    "options_asterisk": (b"OPTIONS * HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", []),
    "head_leading_crlf_bare_lf": (
        b"\r\n\nHEAD /x HTTP/1.1\nHost: h\n\n",
        BYTEWISE,
    ),
    "expect_continue": (
        b"PUT /big HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
        b"Content-Length: 3\r\n\r\nabc",
        [50],
    ),
    "bad_cl_and_te": (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        [],
    ),
    "bad_conflicting_cl": (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\nabcd",
        [],
    ),
    "bad_chunk_size": (
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffff\r\n",
        [],
    ),
    "bad_version": (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", []),
    "bad_missing_host": (b"DELETE /r/1 HTTP/1.1\r\n\r\n", []),
    "bad_obs_fold": (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", []),
    "bad_gzip_chunked": (
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        [],
    ),
}


def encode(request, splits):
    if splits is BYTEWISE:
        return b"\x80" + request
    assert len(splits) < 16
    return bytes([len(splits)]) + b"".join(struct.pack("<H", s) for s in splits) + request


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (request, splits) in sorted(SEEDS.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(encode(request, splits))


if __name__ == "__main__":
    main()
