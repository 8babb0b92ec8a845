#!/usr/bin/env python3
"""Every public async function documents its result, its error codes and
its cancellation: in the public headers named below, each declaration of
a function returning boost::asio::awaitable<...> must follow a /// block
that names its errors ("Errors:", "Never fails", or "Same results" for an
overload documented just above it), and the block or the file's opening
\\file comment must say how cancellation works. Prints what is missing;
exits 1 if anything is.

    tests/api_docs_check.py SOURCE_ROOT
"""
import re
import sys
from pathlib import Path

HEADERS = ["crust/service.hpp", "crust/status_server.hpp"]

def check(path: Path) -> list[str]:
    lines = path.read_text().split("\n")
    file_block = []
    for l in lines:
        if l.startswith("#pragma once"):
            break
        file_block.append(l)
    file_says_cancel = "cancel" in " ".join(file_block).lower()
    problems = []
    for i, l in enumerate(lines):
        if "awaitable<" not in l or l.strip().startswith("///") or "co_await" in l:
            continue
        if not re.search(r"awaitable<.*>\s*[a-z_]+\(", l + (lines[i + 1] if i + 1 < len(lines) else "")):
            continue
        j = i - 1
        block = []
        while j >= 0 and lines[j].strip().startswith("///"):
            block.insert(0, lines[j].strip()[3:].strip())
            j -= 1
        text = " ".join(block)
        name = re.search(r"([a-z_]+)\(", l + (lines[i + 1] if i + 1 < len(lines) else ""))
        where = f"{path}:{i + 1} {name.group(1) if name else '?'}"
        if not block:
            problems.append(f"{where}: no /// comment")
            continue
        if not re.search(r"Errors?:|Never fails|Same results|errors? (of|as)", text):
            problems.append(f"{where}: the comment names no error codes")
        if "cancel" not in text.lower() and not file_says_cancel:
            problems.append(f"{where}: the comment says nothing of cancellation")
    return problems

def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    problems = []
    for h in HEADERS:
        problems += check(root / h)
    for p in problems:
        print(p)
    print(f"api docs: {len(problems)} problem(s)")
    return 1 if problems else 0

if __name__ == "__main__":
    sys.exit(main())
