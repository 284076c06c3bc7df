#!/usr/bin/env python3
"""Attach one 100,000-word child to a master with 50 such children, against
re-aggregating all 51 from scratch (POST /corpus/<child>/rebuild walks to the
master and rebuilds its aggregate), in the same run on the same server.
Usage: trees.py PORT [ROUNDS]
TREES_WORDS and TREES_CHILDREN change the sizes (a smaller tree for a slow
store: the attach should cost the same whatever the number of children).
TREES_TIMEOUT is the per-request timeout in seconds (600)."""
import http.client
import json
import os
import statistics
import sys
import time

WORDS = int(os.environ.get("TREES_WORDS", 100_000))
CHILDREN = int(os.environ.get("TREES_CHILDREN", 50))


def request(conn, method, path, body=None, ctype="application/json"):
    headers = {"Content-Type": ctype} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
    return data


def main():
    port = int(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    conn = http.client.HTTPConnection("127.0.0.1", port,
                                      timeout=int(os.environ.get("TREES_TIMEOUT", 600)))
    # child i holds words i*W/2 .. i*W/2+W-1 (W = WORDS): each shares half with the next
    for i in range(CHILDREN + 1):
        text = "\n".join(f"w{i * (WORDS // 2) + j:08d}" for j in range(WORDS)).encode()
        request(conn, "POST", f"/corpus/c{i}/versions?corpus_type=base&language=en", text,
                "text/plain")
    t0 = time.perf_counter()
    request(conn, "POST", "/trees", json.dumps(
        {"master": "m", "language": "en",
         "children": [f"c{i}" for i in range(CHILDREN)]}).encode())
    create = time.perf_counter() - t0
    attach, scratch = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        request(conn, "POST", "/trees/m/children", json.dumps({"id": f"c{CHILDREN}"}).encode())
        attach.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rep = json.loads(request(conn, "POST", "/corpus/c0/rebuild"))
        scratch.append(time.perf_counter() - t0)
        assert rep["reaggregated"] == [{"type": "corpus", "id": "m"}], rep
        if r + 1 < rounds:
            request(conn, "DELETE", f"/trees/m/children/c{CHILDREN}")
    size = json.loads(request(conn, "GET", "/corpus/m"))["vocabulary_size"]
    a, s = statistics.median(attach), statistics.median(scratch)
    print(f"master with {CHILDREN} children of {WORDS} words created in {create:.2f} s")
    print(f"attach 1 child:             median {a * 1000:8.1f} ms  ({', '.join(f'{x*1000:.0f}' for x in attach)})")
    print(f"re-aggregate {CHILDREN + 1} children:   median {s * 1000:8.1f} ms  ({', '.join(f'{x*1000:.0f}' for x in scratch)})")
    print(f"ratio from-scratch / incremental: {s / a:.1f}x   (master vocabulary {size} words)")


if __name__ == "__main__":
    main()
