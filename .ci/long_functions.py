#!/usr/bin/env python3
"""Non-test functions longer than a limit (default 80 lines); exits 1 if any.

Usage: python3 .ci/long_functions.py [--limit N] DIR...

A function runs from its `fn` line to its closing brace (braces in comments,
strings and char literals are skipped); code from the first `#[cfg(test)]`
line of a file on is test code and not read. Plain text, no dependencies.
"""
import os
import re
import sys

FN = re.compile(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+\w+")


def code(line):
    line = re.sub(r"//.*", "", line)
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    return re.sub(r"'(\\.|[^'\\])'", "''", line)


def long_functions(path, limit):
    lines = open(path).read().split("\n")
    end = next((i for i, l in enumerate(lines) if l.startswith("#[cfg(test)]")), len(lines))
    for i in range(end):
        if not FN.match(lines[i]):
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            text = code(lines[j])
            depth += text.count("{") - text.count("}")
            opened = opened or "{" in text
            if (opened and depth <= 0) or (not opened and text.rstrip().endswith(";")):
                break
            j += 1
        if opened and j - i + 1 > limit:
            yield j - i + 1, i + 1, lines[i].strip()


def main():
    args = sys.argv[1:]
    limit = 80
    if "--limit" in args:
        k = args.index("--limit")
        limit = int(args[k + 1])
        del args[k : k + 2]
    found = 0
    for root in args or ["raindrop-core/src"]:
        for folder, _, files in os.walk(root):
            for f in sorted(files):
                if f.endswith(".rs"):
                    path = os.path.join(folder, f)
                    for n, line, head in long_functions(path, limit):
                        print(f"{path}:{line}: {n} lines: {head}")
                        found += 1
    print(f"{found} function(s) over {limit} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
