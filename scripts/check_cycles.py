#!/usr/bin/env python3
"""No two files import each other: the import graph between the .rs files of a crate has no
cycle (ARCHITECTURE.md). An import is any `crate::a::b` or `super::c` path outside test
modules, resolved to the file that defines the module it names; a `mod.rs` re-exporting its
own files is not an import. Usage: check_cycles.py SRC_DIR [SRC_DIR ...]; exits 1 on a cycle."""
import pathlib
import re
import sys

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
TESTS = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*\{")


def module_of(src, file):
    """The module path of a file: gateway/src/a/b.rs -> ['a', 'b']; a/mod.rs -> ['a']."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def file_of(modules, path):
    """The file defining the longest prefix of `path` that is a module."""
    for n in range(len(path), -1, -1):
        f = modules.get(tuple(path[:n]))
        if f is not None:
            return f
    return None


def code_of(text):
    """The text without its test modules (from `#[cfg(test)] mod x {` to the file's end, as
    they sit at the bottom) and without comments."""
    m = TESTS.search(text)
    if m:
        text = text[: m.start()]
    return re.sub(r"//[^\n]*", "", text)


def cycles(src):
    files = sorted(src.rglob("*.rs"))
    modules = {tuple(module_of(src, f)): f for f in files}
    graph = {f: set() for f in files}
    for f in files:
        here = module_of(src, f)
        # `super` is relative to the module a file defines (for mod.rs, that module itself).
        for root, rest in PATH.findall(code_of(f.read_text())):
            path = [p for p in rest.split("::") if p]
            if root == "crate":
                full = path
            else:
                base = list(here)
                while path and path[0] == "super":
                    path = path[1:]
                    base = base[:-1]
                full = base[:-1] + path
            target = file_of(modules, full)
            if target is None or target == f:
                continue
            # A mod.rs naming its own files (re-exports, `mod x;`) is its facade, not an import.
            if f.name == "mod.rs" and target.is_relative_to(f.parent):
                continue
            graph[f].add(target)
    # Strongly connected components (Tarjan): each of more than one file is a cycle.
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in files:
        if v not in index:
            visit(v)
    return out, graph


def main():
    failed = False
    for arg in sys.argv[1:]:
        src = pathlib.Path(arg)
        found, graph = cycles(src)
        for comp in found:
            failed = True
            names = [str(f.relative_to(src)) for f in comp]
            print(f"check-cycles: {src}: these files import each other: {', '.join(names)}")
            for f in comp:
                into = sorted(str(t.relative_to(src)) for t in graph[f] if t in comp)
                print(f"  {f.relative_to(src)} -> {', '.join(into)}")
        if not found:
            print(f"check-cycles: {src}: {len(graph)} files, no import cycle")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
