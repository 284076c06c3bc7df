#!/usr/bin/env python3
"""Memory per idle keep-alive connection, strata against references.

    scripts/bench/conn_memory.py STRATA MINIMAL_MHD [CONNS] [ROUNDS]

Each server is started on loopback with a fresh state, warmed, and its
resident set read (VmRSS from /proc, which counts every page it touched).
Then CONNS clients each open a connection, make one request on it
(keep-alive) and stay idle; the resident set is read again once every
response is in. (after - before) / CONNS is the cost of one idle
connection. The servers take turns, ROUNDS times; the script prints each
run, then the median per server.

References: the minimal libmicrohttpd responder (scripts/bench/minimal_mhd.c,
libmicrohttpd's default per-connection memory), redis-server (PING) and
nginx serving a 100-byte static file, each where installed.
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, deadline=10.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def recv_response(sock, expect_end):
    """Reads until expect_end(data) says one whole response is in."""
    data = b""
    while not expect_end(data):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response ended")
        data += chunk
    return data


def http_done(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def measure(pid, port, request, done, conns):
    # warm: a few requests on short connections, so that lazily allocated
    # per-thread state is not counted against the idle connections
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        recv_response(s, done)
        s.close()
    time.sleep(0.3)
    before = rss_kib(pid)
    held = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        recv_response(s, done)
        held.append(s)
    time.sleep(0.5)
    after = rss_kib(pid)
    for s in held:
        s.close()
    return (after - before) / conns


HTTP_GET = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"


def start_strata(binary, tmp):
    port = free_port()
    data = tempfile.mkdtemp(dir=tmp)
    p = subprocess.Popen(
        [binary, "--listen", f"127.0.0.1:{port}", "--threads", "2", "--data-dir", data,
         "--access-log", "off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, port, HTTP_GET % b"/health", http_done


def start_minimal(binary, _tmp):
    port = free_port()
    p = subprocess.Popen([binary, str(port), "2"], stdout=subprocess.DEVNULL)
    return p, port, HTTP_GET % b"/health", http_done


def start_redis(_binary, tmp):
    port = free_port()
    p = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--maxclients", "10000", "--dir", tmp],
        stdout=subprocess.DEVNULL)
    return p, port, b"PING\r\n", lambda d: d.endswith(b"\r\n")


def start_nginx(_binary, tmp):
    port = free_port()
    root = tempfile.mkdtemp(dir=tmp)
    with open(os.path.join(root, "v"), "wb") as f:
        f.write(b"x" * 100)
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1;
pid {root}/nginx.pid; error_log {root}/error.log;
events {{ worker_connections 10000; }}
http {{ access_log off; keepalive_timeout 300; keepalive_requests 100000;
  client_body_temp_path {root}; proxy_temp_path {root}; fastcgi_temp_path {root};
  uwsgi_temp_path {root}; scgi_temp_path {root};
  server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }} }}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-p", root], stdout=subprocess.DEVNULL)
    return p, port, HTTP_GET % b"/v", http_done


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    strata, minimal = sys.argv[1], sys.argv[2]
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    servers = [("strata", start_strata, strata), ("minimal_mhd", start_minimal, minimal)]
    if shutil.which("redis-server"):
        servers.append(("redis", start_redis, None))
    if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
        os.environ["PATH"] += ":/usr/sbin"
        servers.append(("nginx", start_nginx, None))
    results = {name: [] for name, _, _ in servers}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, start, binary in servers:
                p, port, request, done = start(binary, tmp)
                try:
                    wait_port(port)
                    kib = measure(p.pid, port, request, done, conns)
                finally:
                    p.terminate()
                    p.wait(timeout=10)
                results[name].append(kib)
                print(f"round {r + 1} {name:12s} {kib:8.2f} KiB per idle connection", flush=True)
    print(f"\nmedians over {rounds} rounds, {conns} idle keep-alive connections each:")
    for name, vals in results.items():
        print(f"  {name:12s} {statistics.median(vals):8.2f} KiB"
              f"   (min {min(vals):.2f}, max {max(vals):.2f})")


if __name__ == "__main__":
    main()
