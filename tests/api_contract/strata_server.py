"""Starts the real strata binary on a free loopback port with a fresh data
directory, and stops it. Shared by the contract drivers.

    with StrataServer(binary) as srv:
        srv.url  # http://127.0.0.1:PORT

A binary that is missing, does not start, or does not print its listening
line within the timeout raises ServerError: the drivers turn that into a
failed run, never a pass."""
import hashlib
import os
import secrets
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

LISTENING = re.compile(rb"listening on (http://127\.0\.0\.1:(\d+))")


class ServerError(RuntimeError):
    pass


class StrataServer:
    def __init__(self, binary, start_timeout=30.0, extra_args=()):
        self.binary = binary
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.proc = None
        self.data_dir = None
        self.url = None
        self.log_path = None

    def __enter__(self):
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            raise ServerError(f"no strata binary at {self.binary} (build it first)")
        self.data_dir = tempfile.mkdtemp(prefix="strata-contract-")
        self.log_path = os.path.join(self.data_dir, "server.log")
        # Access control on: every suite sends this token (all three scopes),
        # as a deployed client would; its hash alone is in the token file.
        self.token = secrets.token_hex(32)
        tokens = os.path.join(self.data_dir, "tokens")
        with open(tokens, "w") as f:
            digest = hashlib.sha256(self.token.encode()).hexdigest()
            f.write(f"sha256:{digest} read,write,admin contract-suite\n")
        os.environ["STRATA_CONTRACT_TOKEN"] = self.token
        log = open(self.log_path, "wb")
        args = [self.binary, "--listen", "127.0.0.1:0", "--data-dir",
                os.path.join(self.data_dir, "data"), "--threads", "2",
                "--access-log", "off", "--log-level", "warn", "--auth-tokens", tokens
                ] + self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        seen = b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
                m = LISTENING.search(seen)
                if m:
                    self.url = m.group(1).decode()
                    return self
        tail = self.log_tail()
        self.__exit__(None, None, None)
        raise ServerError(f"{self.binary} did not start: stdout {seen[-300:]!r}; log: {tail}")

    def log_tail(self, n=2000):
        if getattr(self, "final_log", ""):
            return self.final_log[-n:]
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.exit_code = self.proc.returncode if self.proc else None
        # keep the end of the log (a sanitizer's report) before the directory goes
        self.final_log = self.log_tail(6000) if self.exit_code not in (0, None) else ""
        if self.data_dir and not os.environ.get("STRATA_CONTRACT_KEEP"):
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return False
