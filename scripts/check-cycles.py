#!/usr/bin/env python3
"""Import cycles among a crate's modules (issue 25: no module imports from a module that uses it).

A module uses another when its code names it: `crate::a::b`, `super::`, a child module's path,
or an item a module re-exports (`pub use child::Item` counts as the child's). Re-exports
themselves, doc comments and `#[cfg(test)] mod tests` are not uses; a binary's `main.rs`
beside a `lib.rs` is a crate of its own. Exits 1 when a crate has a cycle not listed in KNOWN,
or a listed one that grew.

    scripts/check-cycles.py [crates-dir]
"""
import os, re, sys

# Cycles still to be taken apart, each the set of modules it holds. Empty since issue 25 split
# the last crates whose lib.rs held the type its children extend; never add one.
KNOWN: dict = {}

def modules(src):
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith('.rs'):
                p = os.path.join(root, n)
                rel = os.path.relpath(p, src)[:-3]
                parts = rel.split(os.sep)
                if parts[-1] == 'mod': parts = parts[:-1]
                if parts == ['main'] and os.path.exists(os.path.join(src, 'lib.rs')):
                    continue  # the binary is a crate of its own over the library
                if parts in (['lib'], ['main']): parts = []
                files['::'.join(parts)] = p
    return files

def strip_tests(text):
    i = text.find('#[cfg(test)]\nmod tests')
    return text if i < 0 else text[:i]

ALIASES = {}

def aliases(text, mods, me):
    """(module, name) -> module that defines it, for `pub use child::Name` re-exports."""
    for m in re.finditer(r'(?m)^\s*pub(?:\([a-z]+\))? use ([^;]*);', text):
        body = re.sub(r'\s+', '', m.group(1))
        if body.startswith('crate::'):
            body = body[len('crate::'):]
            base = ''
        else:
            base = me
        head, _, tail = body.partition('::{')
        names = tail.rstrip('}').split(',') if tail else [head.rsplit('::', 1)[-1]]
        path = head if tail else head.rsplit('::', 1)[0]
        target = '::'.join(p for p in [base, path] if p)
        while target and target not in mods:
            target = target.rsplit('::', 1)[0] if '::' in target else ''
        for n in names:
            n = n.split('::')[-1].split(' as ')[-1]
            if n and n != 'self':
                ALIASES[(me, n)] = target

def refs(text, mods, me):
    out = set()
    # a re-export (`pub use child::X;`) is a facade, not a use
    text = re.sub(r'(?m)^\s*pub(?:\([a-z]+\))? use [^;]*;', '', text)
    # doc comments name things without using them
    text = re.sub(r'(?m)^\s*//.*$', '', text)
    # expand use crate::{a, b::c}
    for m in re.finditer(r'crate::((?:\{[^;]*\})|(?:[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*))', text, re.S):
        body = m.group(1)
        cands = []
        if body.startswith('{'):
            for piece in re.split(r',', body.strip('{}')):
                piece = piece.strip()
                if piece: cands.append(re.sub(r'\s+', '', piece).split('{')[0].rstrip(':'))
        else:
            cands.append(body)
        for c in cands:
            parts = c.split('::')
            best, rest = '', parts
            for k in range(len(parts), 0, -1):
                key = '::'.join(parts[:k])
                if key in mods: best, rest = key, parts[k:]; break
            if rest and (best, rest[0]) in ALIASES:
                best = ALIASES[(best, rest[0])]
            out.add(best)
    # super:: references
    for m in re.finditer(r'\bsuper::([a-z_][a-z0-9_]*)?', text):
        parent = me.rsplit('::', 1)[0] if '::' in me else ''
        out.add(parent)
    # paths relative to this module: a child module named first (`child::x`, `self::child`)
    for m in re.finditer(r'(?<![:\w])(?:self::)?([a-z_][a-z0-9_]*)::', text):
        child = (me + '::' if me else '') + m.group(1)
        if child in mods: out.add(child)
    out.discard(me)
    return out

def scc(graph):
    index, low, stack, on, res = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: res.append(sorted(comp))
    for v in list(graph):
        if v not in index: visit(v)
    return res

def crate_cycles(src):
    mods = modules(src)
    ALIASES.clear()
    for me, p in mods.items():
        aliases(strip_tests(open(p).read()), mods, me)
    graph = {}
    for me, p in mods.items():
        text = strip_tests(open(p).read())
        deps = refs(text, mods, me)
        # a parent module's own file (mod.rs/lib.rs) declaring children is not a dependency;
        # a child using its parent's items is. Keep only real references.
        graph[me] = deps
    # ignore edges to the crate root ('') from lib: root is lib.rs/main.rs
    return scc(graph)

def main():
    root = sys.argv[1] if len(sys.argv) > 1 else 'crates'
    bad = known = 0
    for c in sorted(os.listdir(root)):
        src = os.path.join(root, c, 'src')
        if not os.path.isdir(src):
            continue
        for comp in crate_cycles(src):
            names = {m or '(root)' for m in comp}
            listed = names <= KNOWN.get(c, set())
            known += listed
            bad += not listed
            label = 'known, to be taken apart' if listed else 'NEW'
            print(f"{c}: {len(comp)} modules in a cycle ({label}): {', '.join(sorted(names))}")
    print(f"import cycles: {bad} new, {known} known")
    sys.exit(1 if bad else 0)


main()
