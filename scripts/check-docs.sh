#!/usr/bin/env bash
# Checks the documentation: every relative link in README.md, docs/*.md, SECURITY.md,
# ARCHITECTURE.md, benches/README.md, fuzz/README.md and examples/**/README.md resolves to a
# file or directory of the repository (and, for a link to a heading in a Markdown file, to a
# heading that exists, as GitHub spells its anchor); and README.md stays a front door
# (at most 220 lines). Exits 1 naming each problem. Needs only python3.
set -euo pipefail
cd "$(dirname "$0")/.."

exec python3 - "$@" <<'PY'
import glob
import os
import re
import sys

README_MAX_LINES = 220

files = ["README.md", "SECURITY.md", "ARCHITECTURE.md", "benches/README.md", "fuzz/README.md"]
files += sorted(glob.glob("docs/*.md"))
files += sorted(glob.glob("examples/**/README.md", recursive=True))
files = [f for f in files if os.path.isfile(f)]

problems = []

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
# [text](target) and ![alt](target); the target ends at whitespace or ')'.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    in_fence = False
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if FENCE.match(line):
                in_fence = not in_fence
                continue
            if not in_fence:
                yield n, line.rstrip("\n")


def slug(heading):
    """The anchor GitHub gives a heading: its rendered text, lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = text.replace("`", "")
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


anchors_cache = {}


def anchors(path):
    if path not in anchors_cache:
        seen = {}
        out = set()
        for _, line in prose_lines(path):
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
        for _, line in prose_lines(path):
            for m in re.finditer(r"<a\s+(?:name|id)=\"([^\"]+)\"", line):
                out.add(m.group(1))
        anchors_cache[path] = out
    return anchors_cache[path]


def check(path, n, target):
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
        return  # http:, https:, mailto: ...: not ours to check
    target, _, anchor = target.partition("#")
    target = target.split("?", 1)[0]
    if target:
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
        if resolved.startswith(".."):
            problems.append(f"{path}:{n}: link {target!r} leaves the repository")
            return
        if not os.path.exists(resolved):
            problems.append(f"{path}:{n}: link {target!r}: no such file or directory ({resolved})")
            return
    else:
        resolved = path
    if anchor and resolved.endswith(".md") and os.path.isfile(resolved):
        if anchor not in anchors(resolved):
            problems.append(
                f"{path}:{n}: link {target + '#' + anchor!r}: {resolved} has no heading "
                f"with the anchor #{anchor}"
            )


for path in files:
    for n, line in prose_lines(path):
        text = INLINE_CODE.sub("", line)
        for m in INLINE_LINK.finditer(text):
            check(path, n, m.group(1))
        m = REFERENCE.match(text)
        if m:
            check(path, n, m.group(1))

with open("README.md", encoding="utf-8") as f:
    readme_lines = sum(1 for _ in f)
if readme_lines > README_MAX_LINES:
    problems.append(
        f"README.md: {readme_lines} lines; the front door stays at most {README_MAX_LINES} "
        "(move the detail into a docs/ page and link it)"
    )

if problems:
    print("check-docs: %d problem(s):" % len(problems), file=sys.stderr)
    for p in problems:
        print("  " + p, file=sys.stderr)
    sys.exit(1)
print(f"check-docs: {len(files)} files, every relative link resolves; README.md {readme_lines} lines")
PY
