#!/usr/bin/env python3
"""Content streams in bounded memory, measured on the real binary.

Starts BINARY (extra arguments from STRATA_MEMORY_ARGS, e.g. an S3 blob
store), then:
  1. uploads one content of STRATA_MEMORY_MIB (200) MiB as bytes;
  2. reads it with 16 concurrent GETs, decoded (the blob is zstd);
  3. reads it with 16 concurrent GETs passed through (Accept-Encoding: zstd);
  4. reads a range from its middle;
and for each step reports the server's peak RSS over its idle RSS (the
peak is reset between steps through /proc/PID/clear_refs). Every body is
checked against the content's SHA-256 and the Repr-Digest sent. A step
whose peak grows by LIMIT_MIB (64) or more fails, as does a wrong body.
Prints the Check-style line "NN%: Checks: N, Failures: F, Errors: E".

Usage: content_memory.py BINARY"""
import base64
import hashlib
import http.client
import os
import shlex
import sys
import tempfile
import threading
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "api_contract"))

from strata_server import ServerError, StrataServer  # noqa: E402

LIMIT_MIB = 64
MIB = 1 << 20
CLIENTS = 16


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def make_content(path, mib):
    """Half-compressible bytes (hex text of random bytes): zstd stores them
    in about half the size, so reads really decode."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(mib):
            block = os.urandom(MIB // 2).hex().encode()
            f.write(block)
            h.update(block)
    return h.hexdigest()


def connect(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=300)


def upload(srv, path, rid):
    conn = connect(srv.url)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        conn.request("POST", f"/literature/{rid}/versions?title=T&authors=A&source=s", body=f,
                     headers={"Content-Type": "application/octet-stream",
                              "Content-Length": str(size),
                              "Authorization": f"Bearer {srv.token}"})
        r = conn.getresponse()
        body = r.read()
    conn.close()
    return r.status, body


def read_content(srv, rid, headers, results, i):
    try:
        conn = connect(srv.url)
        headers = dict(headers, Authorization=f"Bearer {srv.token}")
        conn.request("GET", f"/literature/{rid}/versions/latest/content", headers=headers)
        r = conn.getresponse()
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = r.read(256 << 10)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        conn.close()
        results[i] = (r.status, h.hexdigest(), n, r.getheader("Repr-Digest"),
                      r.getheader("Content-Encoding"))
    except Exception as e:  # a dropped transfer is a failed check
        results[i] = ("error", str(e), 0, None, None)


def repr_digest(hexdigest):
    return "sha-256=:" + base64.b64encode(bytes.fromhex(hexdigest)).decode() + ":"


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    mib = int(os.environ.get("STRATA_MEMORY_MIB", "200"))
    extra = shlex.split(os.environ.get("STRATA_MEMORY_ARGS", ""))
    checks = failures = errors = 0
    tmp = tempfile.mkdtemp(prefix="strata-mem-")
    path = os.path.join(tmp, "content")
    want = make_content(path, mib)
    limit = f"{mib + 64}M"
    try:
        with StrataServer(os.path.abspath(sys.argv[1]),
                          extra_args=["--max-body", limit, "--max-decoded-body", limit,
                                      "--threads", "4"] + extra) as srv:
            pid = srv.proc.pid
            idle = rss_kib(pid, "VmRSS")
            print(f"{mib} MiB content; server idle RSS {idle / 1024:.1f} MiB"
                  + (f" ({' '.join(extra)})" if extra else ""))

            def step(name, fn):
                nonlocal checks, failures
                reset_peak(pid)
                ok = fn()
                peak = rss_kib(pid, "VmHWM")
                grew = (peak - idle) / 1024
                checks += 2
                verdict = "ok" if grew < LIMIT_MIB else f"FAILED (limit {LIMIT_MIB} MiB)"
                print(f"  {name}: peak RSS {peak / 1024:.1f} MiB, {grew:+.1f} MiB over idle: "
                      f"{verdict}")
                if grew >= LIMIT_MIB:
                    failures += 1
                if not ok:
                    failures += 1

            def do_upload():
                status, body = upload(srv, path, "big")
                if status != 201:
                    print(f"  upload answered {status}: {body[:300]!r}")
                    return False
                return True

            def do_reads(headers, want_encoding):
                def run():
                    results = [None] * CLIENTS
                    ts = [threading.Thread(target=read_content,
                                           args=(srv, "big", headers, results, i))
                          for i in range(CLIENTS)]
                    for t in ts:
                        t.start()
                    for t in ts:
                        t.join()
                    good = True
                    for res in results:
                        status, digest, n, rd, enc = res
                        if status != 200 or enc != want_encoding:
                            print(f"  a read answered {status} ({digest}), encoding {enc}")
                            good = False
                            continue
                        if want_encoding is None and digest != want:
                            print(f"  a decoded read got {n} bytes hashing {digest}")
                            good = False
                        if rd != repr_digest(digest):
                            print(f"  Repr-Digest {rd} does not match the body ({digest})")
                            good = False
                    return good
                return run

            def do_range():
                conn = connect(srv.url)
                first = mib * MIB // 2
                conn.request("GET", "/literature/big/versions/latest/content",
                             headers={"Range": f"bytes={first}-{first + 999}",
                                      "Authorization": f"Bearer {srv.token}"})
                r = conn.getresponse()
                body = r.read()
                conn.close()
                with open(path, "rb") as f:
                    f.seek(first)
                    expect = f.read(1000)
                if r.status != 206 or body != expect:
                    print(f"  range read answered {r.status}, {len(body)} bytes, "
                          f"{'equal' if body == expect else 'different'}")
                    return False
                return True

            step(f"one {mib} MiB upload", do_upload)
            step(f"{CLIENTS} concurrent GETs, decoded", do_reads({}, None))
            step(f"{CLIENTS} concurrent GETs, passed through (zstd)",
                 do_reads({"Accept-Encoding": "zstd"}, "zstd"))
            step("a 1000-byte range from the middle", do_range)
            if not srv.alive():
                print("FAILED: the server died; its log:\n" + srv.log_tail())
                errors += 1
    except ServerError as e:
        print(f"content_memory: {e}")
        errors += 1
    finally:
        os.unlink(path)
        os.rmdir(tmp)
    pct = 0 if checks == 0 else int(100 * (checks - failures) / checks)
    print(f"{pct}%: Checks: {checks}, Failures: {failures}, Errors: {errors}")
    return 0 if failures == 0 and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
