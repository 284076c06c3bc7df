#!/usr/bin/env python3
"""Adds up the Check counts from meson's testlog.json files.

Every Check binary prints "NN%: Checks: N, Failures: F, Errors: E". A test
binary that failed without such a line (a crash, a sanitizer report at
exit, a timeout) counts as one more failure. A contract case a backend
cannot run by design (a capability it does not declare) is not run; its
suite prints "SKIP: suite/backend/case: why" instead, counted as skipped.
Prints "N passed, N failed, N skipped" last and exits 1 if anything
failed."""
import json
import re
import sys

CHECKS = re.compile(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)")
SKIP = re.compile(r"^SKIP: ", re.M)


def main(paths):
    passed = failed = skipped = 0
    for path in paths:
        try:
            lines = open(path).read().splitlines()
        except OSError as e:
            print(f"missing test log {path}: {e}")
            failed += 1
            continue
        for line in lines:
            t = json.loads(line)
            out = (t.get("stdout") or "") + (t.get("stderr") or "")
            m = CHECKS.search(out)
            skipped += len(SKIP.findall(t.get("stdout") or ""))
            ok = t.get("result") == "OK"
            if m:
                n, f, e = map(int, m.groups())
                passed += n - f - e
                failed += f + e
                if not ok and f + e == 0:
                    failed += 1  # passed its checks but failed at exit
            else:
                failed += 0 if ok else 1
                if ok:
                    print(f"{path}: {t.get('name')} printed no Check summary")
                    failed += 1
            if not ok:
                print(f"FAILED: {path}: {t.get('name')} ({t.get('result')})")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
