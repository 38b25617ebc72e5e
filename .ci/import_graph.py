#!/usr/bin/env python3
"""Module-level import graph of a crate's non-test code; exits 1 on a cycle.

Usage: python3 .ci/import_graph.py [raindrop-core/src] [--dot]

A node is a source file's module (`worker::send`, `model`); an edge A -> B is
any `crate::b`, `super::b` or `use` path in A's code (comments, strings and
`#[cfg(test)]` modules left out) naming B or an item `lib.rs` re-exports from
B. A parent module reaching into its own children is not an edge back: that is
what `mod` means. Plain regexes, no dependencies.
"""
import os
import re
import sys


def strip(text):
    """Source without comments, string literals and `#[cfg(test)] mod` blocks."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def modules(src):
    """Module path ('' for the crate root) -> stripped source."""
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib"):
                rel = rel[:-1]
            with open(os.path.join(root, f)) as fh:
                mods["::".join(rel)] = strip(fh.read())
    return mods


def reexports(root_src, mods):
    """Item name -> module, from `pub use a::{X, Y}` lines in the crate root."""
    names = {}
    for m in re.finditer(r"pub use (\w+)::(\{[^}]*\}|\w+)", root_src):
        if m.group(1) in mods:
            for name in re.findall(r"\w+", m.group(2)):
                names[name] = m.group(1)
    return names


def resolve(path, here, mods, names):
    """The module a `crate::a::b` / `super::b` path (as a segment list) lands in."""
    if path[0] == "crate":
        base, rest = [], path[1:]
    elif path[0] == "super":
        base, rest = here.split("::")[:-1] if here else [], path[1:]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    else:
        return None
    best = "::".join(base)
    for seg in rest:
        cand = "::".join(base + [seg])
        if cand in mods:
            base.append(seg)
            best = cand
        else:
            if not base and seg in names:
                best = names[seg]
            break
    return best


def use_paths(text):
    """Every path a file names: `crate::...`/`super::...` and `use` trees expanded."""
    paths = []
    for m in re.finditer(r"\buse\s+((?:crate|super)::[^;]*);", text):
        paths += expand(m.group(1).replace("\n", " "))
    for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", text):
        paths.append(m.group(1).split("::"))
    return paths


def expand(tree):
    """`crate::a::{b, c::{d}}` -> [[crate,a,b], [crate,a,c,d]]."""
    tree = tree.replace(" ", "")
    if "{" not in tree:
        return [tree.split(" as ")[0].split("::")]
    head, body = tree.split("{", 1)
    body = body[: body.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    out = []
    for p in filter(None, parts):
        out += expand(head + p) if p != "self" else [head.rstrip(":").split("::")]
    return out


def graph(src):
    mods = modules(src)
    names = reexports(mods[""], mods)
    edges = {m: set() for m in mods}
    for here, text in mods.items():
        for path in use_paths(text):
            to = resolve(path, here, mods, names)
            if to is None or to == here or to == "":
                continue
            if to.startswith(here + "::") and here:
                continue  # a parent using its own child
            if here == "":
                continue  # the crate root declares and re-exports everything
            edges[here].add(to)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = args[0] if args else "raindrop-core/src"
    edges = graph(src)
    if "--dot" in sys.argv:
        print("digraph {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    for a in sorted(edges):
        print(f"{a or 'lib'} -> {', '.join(sorted(edges[a])) or '-'}")
    found = cycles(edges)
    print(f"\n{len(found)} cycle(s)")
    for comp in found:
        inner = {a: sorted(b for b in edges[a] if b in comp) for a in comp}
        print("  " + "; ".join(f"{a} -> {', '.join(bs)}" for a, bs in inner.items()))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
