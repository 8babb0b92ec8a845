#!/usr/bin/env python3
"""Prints one 'N passed, N failed' line for meson test logs.

Each doctest program contributes its test cases (from its own summary line);
any other test program counts as one. A program that crashed or timed out
before doctest printed its summary counts as one failure.
"""
import json
import re
import sys

passed = failed = 0
summary = re.compile(r"\[doctest\] test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed")
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            ok = t.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
            m = summary.search(t.get("stdout", "") or "")
            if m:
                passed += int(m.group(2))
                failed += int(m.group(3))
                if not ok and int(m.group(3)) == 0:
                    failed += 1  # it failed after its summary (a leak, a crash at exit)
            elif ok:
                passed += 1
            else:
                failed += 1
print(f"{passed} passed, {failed} failed")
