"""The package's imports flow one way: no module imports, even lazily or for type checking, one that imports it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "hubmod"


def _graph() -> dict[str, set[str]]:
    names = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
                targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = [a.name for a in node.names] + ([node.module] if getattr(node, "module", None) else [])
            else:
                continue
            for target in targets:
                if target in names and target != name and not name.startswith(target + ".") \
                        and names[target].name != "__init__.py":
                    graph[name].add(target)
    return graph


def test_no_import_circles():
    graph = _graph()
    circles = []
    for start in graph:  # a path from start back to itself
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    circles.append(path)
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not circles, f"import circles: {sorted({' -> '.join(sorted(c)) for c in circles})}"


def test_the_card_templates_the_package_reads_are_the_top_level_cards_folder():
    from importlib.resources import files

    top = sorted(p.name for p in (PACKAGE.parent / "cards").glob("*.md.j2"))
    read = files("hubmod") / "_cards"
    assert top and sorted(t.name for t in read.iterdir() if t.name.endswith(".md.j2")) == top
    for name in top:
        assert (read / name).read_text() == (PACKAGE.parent / "cards" / name).read_text()
