#!/usr/bin/env python3
"""Contract suite 1: Schemathesis against the real binary.

Starts BINARY on a free loopback port with a fresh data directory, seeds
it (seed.py), and runs Schemathesis over openapi.yaml with every check,
the examples, coverage, fuzzing and stateful phases, a fixed seed and a
bounded number of examples per operation. Reads the run's NDJSON events
into per-operation counts of test cases and failing ones, prints them and
the Check-style summary line

    NN%: Checks: N, Failures: F, Errors: E

(N test cases, F of them with a failing check, E errors: Schemathesis
errors, a server that died, or a run that did not finish). Exits non-zero
on any failure or error. A missing tool or binary is an error, never a
pass.

Usage: run_schemathesis.py [--examples N] [--seed S] [--keep DIR] BINARY"""
import argparse
import collections
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from strata_server import ServerError, StrataServer  # noqa: E402
import seed as seeding  # noqa: E402

PHASES = "examples,coverage,fuzzing,stateful"
WALL_LIMIT = 600  # seconds; the run is bounded by examples, this only stops a hang


def summary(checks, failures, errors):
    pct = 0 if checks == 0 else int(100 * (checks - failures - errors) / checks)
    return f"{pct}%: Checks: {checks}, Failures: {failures}, Errors: {errors}"


def case_label(value):
    return f"{value.get('method', '?').upper()} {value.get('path', '?')}"


def read_events(path):
    """Per operation: [cases, failing cases]; plus failures by check code
    and the number of errored scenarios."""
    per_op = collections.defaultdict(lambda: [0, 0])
    by_check = collections.Counter()
    errored = 0
    finished = False
    with open(path) as f:
        for line in f:
            ev = json.loads(line)
            if "EngineFinished" in ev:
                finished = True
            sf = ev.get("ScenarioFinished")
            if sf is None:
                if "NonFatalError" in ev or "FatalError" in ev:
                    errored += 1
                continue
            if sf.get("status") == "error":
                errored += 1
            rec = sf.get("recorder") or {}
            stateful = sf.get("phase") == "stateful"
            cases = rec.get("cases") or {}
            checks = rec.get("checks") or {}
            for cid, node in cases.items():
                value = node.get("value") or {}
                results = checks.get(cid)
                if not results:
                    continue  # filtered out or never sent: not a test case
                # a scenario tests one operation (its undocumented methods
                # included); a stateful one walks several
                label = case_label(value) if stateful else rec.get("label", case_label(value))
                per_op[label][0] += 1
                failed = [c for c in results if c.get("status") == "failure"]
                if failed:
                    per_op[label][1] += 1
                    for c in failed:
                        by_check[c.get("name", "?")] += 1
    return per_op, by_check, errored, finished


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--examples", type=int, default=int(os.environ.get("STRATA_CONTRACT_EXAMPLES", "30")))
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--workers", default="2")
    ap.add_argument("--keep", help="keep Schemathesis reports in this directory")
    args = ap.parse_args()

    st = shutil.which("st", path=os.path.dirname(sys.executable))
    if st is None:
        print(f"schemathesis: no 'st' beside {sys.executable} (run scripts/contract)")
        print(summary(1, 0, 1))
        return 1
    spec = os.path.join(ROOT, "openapi.yaml")
    report_dir = args.keep or tempfile.mkdtemp(prefix="strata-st-")
    os.makedirs(report_dir, exist_ok=True)
    for old in glob.glob(os.path.join(report_dir, "*.ndjson")) + glob.glob(os.path.join(report_dir, "*.json")):
        os.unlink(old)

    errors = 0
    extra_checks = 0
    try:
        with StrataServer(os.path.abspath(args.binary)) as srv:
            t0 = time.monotonic()
            made = seeding.seed(srv.url)
            print(f"seeded {srv.url} in {time.monotonic() - t0:.1f}s: "
                  + ", ".join(f"{v} {k}" for k, v in made.items()), flush=True)
            env = dict(os.environ)
            env["SCHEMATHESIS_HOOKS"] = "contract_hooks"
            env["STRATA_CONTRACT_SPEC"] = spec
            env["STRATA_CONTRACT_URL"] = srv.url  # the hooks keep a dependency target alive
            env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
            cmd = [st, "--config-file", os.path.join(HERE, "schemathesis.toml"), "--no-color",
                   "run", spec, "--url", srv.url, "--checks", "all", "--phases", PHASES,
                   "--seed", str(args.seed), "--max-examples", str(args.examples),
                   "--header", f"Authorization: Bearer {srv.token}",
                   "--workers", args.workers, "--request-timeout", "30",
                   "--report", "ndjson,json", "--report-dir", report_dir,
                   "--output-truncate", "true"]
            print("running: " + " ".join(cmd[1:]), flush=True)
            t0 = time.monotonic()
            try:
                proc = subprocess.run(cmd, env=env, cwd=report_dir, timeout=WALL_LIMIT,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                output, code = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as e:
                output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
                code = None
            elapsed = time.monotonic() - t0
            # Schemathesis's own report: failures with their reproductions
            tail = output[output.find("=================================== FAILURES"):] if "FAILURES" in output else output[-6000:]
            print(tail[-20000:])
            extra_checks += 1
            if not srv.alive():
                print("FAILED: the server died during the run; its log:\n" + srv.log_tail())
                errors += 1
    except ServerError as e:
        print(f"schemathesis: {e}")
        print(summary(1, 0, 1))
        return 1
    extra_checks += 1
    if srv.exit_code != 0:
        print(f"FAILED: the server exited with {srv.exit_code} after SIGTERM; its log:\n{srv.log_tail(6000)}")
        errors += 1

    events = glob.glob(os.path.join(report_dir, "*.ndjson"))
    if code is None:
        print(f"FAILED: Schemathesis did not finish within {WALL_LIMIT}s")
        errors += 1
    if not events:
        print("FAILED: Schemathesis wrote no event log")
        print(summary(extra_checks, 0, errors + 1))
        return 1
    per_op, by_check, errored, finished = read_events(events[0])
    if not finished:
        print("FAILED: the event log has no end (Schemathesis stopped early)")
        errors += 1
    errors += errored
    cases = sum(v[0] for v in per_op.values())
    failing = sum(v[1] for v in per_op.values())

    print(f"\nSchemathesis {PHASES}, seed {args.seed}, {args.examples} examples per operation, "
          f"{elapsed:.0f}s, exit code {code}")
    width = max((len(k) for k in per_op), default=10)
    print(f"{'operation':<{width}}  {'cases':>6}  {'failed':>6}")
    for label in sorted(per_op, key=lambda s: (s.split(" ", 1)[1], s)):
        n, f = per_op[label]
        print(f"{label:<{width}}  {n:>6}  {f:>6}")
    print(f"{'total':<{width}}  {cases:>6}  {failing:>6}  ({len(per_op)} operations)")
    if by_check:
        print("failing checks: " + ", ".join(f"{k} {v}" for k, v in by_check.most_common()))
    if code not in (0, None) and failing == 0 and errors == 0:
        print(f"FAILED: Schemathesis exited with {code} though no case failed")
        errors += 1
    if not args.keep:
        shutil.rmtree(report_dir, ignore_errors=True)
    print(summary(cases + extra_checks, failing, errors))
    return 0 if failing == 0 and errors == 0 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
