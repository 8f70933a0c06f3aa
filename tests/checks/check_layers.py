#!/usr/bin/env python3
"""check_layers.py - the layout shows the architecture: includes point down.

Every C file of the project belongs to a layer, named by the folder it sits
in (LAYERS below, most specific folder first). A file may include headers
of its own layer and of the layers that layer is allowed to use; an include
that points up, or sideways into a layer not listed, fails the check. Among
the modules of the broker (a module is a .c file and its .h), includes must
also form no cycle, even within one layer: a cycle means two modules cannot
be read, tested or replaced apart.

Usage: check_layers.py SOURCE_ROOT. Exit status 0 when the layout holds,
1 with one line per violation otherwise.
"""
import os
import re
import sys

# Layer: (folder prefix, layers it may include besides itself). The public
# header, libclient/include/, is everyone's.
LAYERS = [
    ("public", "libclient/include/", []),
    ("wire", "libclient/wire/", ["public"]),
    ("client", "libclient/", ["wire", "public"]),
    ("util", "broker/util/", ["wire", "public"]),
    ("net", "broker/net/", ["util", "wire", "public"]),
    ("policy", "broker/policy/", ["util", "wire", "public"]),
    ("bus", "broker/bus/", ["net", "policy", "util", "wire", "public"]),
    ("broker", "broker/", ["bus", "net", "policy", "util", "wire", "public"]),
    ("bench", "tools/bench/", ["sockbus", "client", "wire", "public"]),
    ("sockbus", "tools/sockbus/", ["bench", "client", "wire", "public"]),
    ("nats", "tools/nats/", ["client", "wire", "public"]),
    ("tools", "tools/", ["sockbus", "bench", "client", "wire", "public"]),
]

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

def layer_of(path):
    for name, prefix, _ in LAYERS:
        if path.startswith(prefix):
            return name
    return None


def allowed(layer):
    for name, _, deps in LAYERS:
        if name == layer:
            return set(deps) | {layer}
    return set()


def sources(root):
    for top in ("libclient", "broker", "tools"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    full = os.path.join(dirpath, f)
                    yield os.path.relpath(full, root)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    files = sorted(sources(root))
    # Headers by file name: includes name headers without their folder.
    by_name = {}
    for f in files:
        if f.endswith(".h"):
            by_name.setdefault(os.path.basename(f), []).append(f)
    errors = []
    for name, paths in by_name.items():
        if len(paths) > 1:
            errors.append("header %s exists twice: %s" % (name, ", ".join(paths)))

    graph = {}  # broker module -> modules it includes
    for f in files:
        layer = layer_of(f)
        if layer is None:
            errors.append("%s: in no layer (add its folder to LAYERS)" % f)
            continue
        with open(os.path.join(root, f), encoding="utf-8") as fh:
            text = fh.read()
        for inc in INCLUDE.findall(text):
            targets = by_name.get(os.path.basename(inc))
            if not targets:
                continue  # a system or generated header
            target = targets[0]
            tlayer = layer_of(target)
            if tlayer not in allowed(layer):
                errors.append("%s (%s) includes %s (%s): a %s file may use %s" % (
                    f, layer, target, tlayer, layer, ", ".join(sorted(allowed(layer)))))
            if f.startswith("broker/") and target.startswith("broker/"):
                a = os.path.splitext(f)[0]
                b = os.path.splitext(target)[0]
                if a != b:
                    graph.setdefault(a, set()).add(b)

    # Cycles among broker modules: depth-first search, reporting each once.
    state = {}
    stack = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                errors.append("include cycle: " + " -> ".join(cycle))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)

    for e in errors:
        print("check_layers: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
