#!/usr/bin/env python3
"""Contract suite 2b: a TypeScript client generated from openapi.yaml
(openapi-typescript types + openapi-fetch) and a round trip through the
real binary that uses only it (roundtrip.mts).

Checks: the types generate without a warning; roundtrip.mts compiles
with tsc --strict against them; each round-trip step; the server ran
throughout and exited cleanly. Tools come from .cache/contract-node
(installed by scripts/contract from package-lock.json); if they or node
are missing, that is an error, never a pass. The last line is

    NN%: Checks: N, Failures: F, Errors: E

Usage: run_typescript_client.py BINARY"""
import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from strata_server import ServerError, StrataServer  # noqa: E402

SPEC = os.path.join(ROOT, "openapi.yaml")
NODE_DIR = os.path.join(ROOT, ".cache", "contract-node")
BUILD = os.path.join(NODE_DIR, "build")
CHECKS = re.compile(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)")
TSCONFIG = {
    "compilerOptions": {
        "target": "es2022", "module": "nodenext", "moduleResolution": "nodenext",
        "lib": ["es2022", "dom"], "types": [], "strict": True, "noEmitOnError": True,
        "skipLibCheck": False, "outDir": ".", "rootDir": ".",
    },
    "files": ["roundtrip.mts", "schema.d.ts"],
}


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    n = failed = errors = 0

    def record(ok, name, detail=""):
        nonlocal n, failed
        n += 1
        if ok:
            print(f"ok   {name}" + (f" ({detail})" if detail else ""), flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: {detail}", flush=True)
        return ok

    def finish():
        ok = n - failed - errors
        print(f"{int(100 * ok / n) if n else 0}%: Checks: {n}, Failures: {failed}, Errors: {errors}")
        return 0 if failed == 0 and errors == 0 else 1

    node = shutil.which("node")
    gen = os.path.join(NODE_DIR, "node_modules", ".bin", "openapi-typescript")
    tsc = os.path.join(NODE_DIR, "node_modules", ".bin", "tsc")
    missing = [p for p in (node, gen, tsc) if not p or not os.path.exists(p)]
    if missing:
        print(f"ERROR tools missing: node={node}, {gen}, {tsc} (run scripts/contract)")
        errors += 1
        n += 1
        return finish()

    shutil.rmtree(BUILD, ignore_errors=True)
    os.makedirs(BUILD)
    # a default makes a property optional to send, not required
    p = subprocess.run([gen, SPEC, "-o", os.path.join(BUILD, "schema.d.ts"),
                        "--default-non-nullable", "false"], cwd=BUILD,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    noise = [ln for ln in p.stdout.splitlines()
             if ln.strip() and "openapi-typescript" not in ln and "→" not in ln]
    ok = p.returncode == 0 and not noise
    if not record(ok, "generate the TypeScript types (no warnings)",
                  "" if ok else ("\n".join(noise) or p.stdout[-2000:])):
        return finish()

    shutil.copy(os.path.join(HERE, "roundtrip.mts"), BUILD)
    with open(os.path.join(BUILD, "tsconfig.json"), "w") as f:
        json.dump(TSCONFIG, f, indent=1)
    p = subprocess.run([tsc, "-p", BUILD], cwd=BUILD, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=300)
    if not record(p.returncode == 0, "the round trip compiles (tsc --strict) against the generated types",
                  p.stdout[-4000:]):
        return finish()

    try:
        with StrataServer(binary) as srv:
            p = subprocess.run([node, os.path.join(BUILD, "roundtrip.mjs"), srv.url, srv.token], cwd=BUILD,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=300)
            # the round trip's own summary is folded into ours below; only
            # one "Checks:" line may reach the test log
            print(CHECKS.sub(lambda m: "round trip: %s checks, %s failures, %s errors" % m.groups(),
                             p.stdout), end="", flush=True)
            alive = srv.alive()
    except ServerError as e:
        print(f"ERROR server: {e}")
        errors += 1
        n += 1
        return finish()
    m = None
    for m in CHECKS.finditer(p.stdout):
        pass
    if m is None:
        print(f"ERROR the round trip printed no summary (exit code {p.returncode})")
        errors += 1
        n += 1
    else:
        rn, rf, re_ = map(int, m.groups())
        n, failed, errors = n + rn, failed + rf, errors + re_
        if p.returncode != 0 and rf + re_ == 0:
            print(f"ERROR the round trip exited with {p.returncode}")
            errors += 1
    clean = alive and srv.exit_code == 0
    record(clean, "the server ran throughout and exited cleanly",
           "" if clean else f"alive={alive}, exit code {srv.exit_code}: {srv.log_tail()}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
