#!/usr/bin/env python3
"""PUTs /cache/NS/k0 .. k(N-1) over a few keep-alive connections.
Usage: preload.py PORT NS N [VALUE_BYTES]"""
import http.client
import sys
import threading


def worker(port, ns, start, stop, step, value):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(start, stop, step):
        conn.request("PUT", f"/cache/{ns}/k{i}", body=value,
                     headers={"Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        r.read()
        if r.status != 201:
            raise SystemExit(f"PUT k{i}: {r.status}")
    conn.close()


def main():
    port, ns, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    value = b"v" * size
    # keys go in ascending order per worker, so the last ones written are the
    # most recently used: the L1 ends up holding the highest key numbers
    threads = [threading.Thread(target=worker, args=(port, ns, w, n, 4, value))
               for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
