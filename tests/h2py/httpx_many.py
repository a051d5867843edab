#!/usr/bin/env python3
"""Many requests at once from one `httpx` client with HTTP/2 over TLS
(ALPN h2), run by `tests/tests/h2_clients.rs`.

    python3 httpx_many.py PORT CA_FILE COUNT

Sends COUNT requests to `/slow?id=I` at once, plus two downloads of
`/big` and an upload to `/sum`, all from one `httpx.AsyncClient`, and
checks that every answer is right and came over HTTP/2. Prints one JSON
line with what it saw; exits 1 with a message if anything differs.
"""

import asyncio
import json
import ssl
import sys

import httpx

_PERIOD = bytes((i * 31) % 251 for i in range(251))


def pattern(n):
    return (_PERIOD * (n // 251 + 1))[:n]


async def run(port, ca, count):
    ctx = ssl.create_default_context(cafile=ca)
    base = "https://127.0.0.1:%d" % port
    big = 2 * 1024 * 1024
    upload = pattern(3 * 1024 * 1024 + 5)
    async with httpx.AsyncClient(
        http2=True, verify=ctx, timeout=20.0, base_url=base
    ) as client:
        slow = [client.get("/slow", params={"id": str(i)}) for i in range(count)]
        other = [
            client.get("/big", params={"n": str(big)}),
            client.get("/big", params={"n": str(big)}),
            client.post("/sum", content=upload),
        ]
        answers = await asyncio.gather(*slow, *other)
    problems = []
    versions = sorted({r.http_version for r in answers})
    for i, r in enumerate(answers[:count]):
        if r.status_code != 200 or r.text != "slow %d" % i:
            problems.append("slow %d: %d %r" % (i, r.status_code, r.text[:60]))
    for r in answers[count : count + 2]:
        if r.status_code != 200 or r.content != pattern(big):
            problems.append("big: %d, %d bytes" % (r.status_code, len(r.content)))
    r = answers[-1]
    want = "%d %d" % (len(upload), sum(upload))
    if r.status_code != 200 or r.text != want:
        problems.append("sum: %d %r, want %r" % (r.status_code, r.text, want))
    if versions != ["HTTP/2"]:
        problems.append("versions %s" % versions)
    print(json.dumps({"answers": len(answers), "versions": versions, "problems": problems}))
    return not problems


def main(argv):
    if len(argv) != 4:
        print("usage: httpx_many.py PORT CA_FILE COUNT", file=sys.stderr)
        return 2
    ok = asyncio.run(run(int(argv[1]), argv[2], int(argv[3])))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
