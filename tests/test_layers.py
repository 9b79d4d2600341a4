"""The layering rule of issue #24: a child can be trained and scored without the search, so
nothing in autoaug/training/, autoaug/space/ or autoaug/cli/train.py imports autoaug.search,
directly or through another autoaug module. Read from the source with `ast`, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "autoaug"
# What must stand without the search: its files, and every autoaug module they import.
WITHOUT_SEARCH = [*sorted((PACKAGE / "training").glob("*.py")), *sorted((PACKAGE / "space").glob("*.py")),
                  PACKAGE / "cli" / "train.py"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    """The file of autoaug module `name` (a module or a package's __init__.py), or None."""
    base = PACKAGE.parent.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def autoaug_imports(path: Path) -> set[str]:
    """The autoaug modules `path` imports anywhere in it (in functions too), as dotted names;
    `from autoaug.x import y` counts as autoaug.x.y where y is a module, else as autoaug.x."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names
                      if module_path(f"{node.module}.{alias.name}") is not None}
    return {name for name in names if name == "autoaug" or name.startswith("autoaug.")}


def reached(start: Path) -> dict[str, str]:
    """Every autoaug module `start` imports, directly or not: name -> the module that imports it."""
    seen: dict[str, str] = {}
    todo = [(module_name(start), start)]
    while todo:
        name, path = todo.pop()
        for imported in sorted(autoaug_imports(path)):
            target = module_path(imported)
            if imported not in seen and target is not None:
                seen[imported] = name
                todo.append((imported, target))
    return seen


def test_training_space_and_train_cli_never_import_the_search() -> None:
    broken = []
    for path in WITHOUT_SEARCH:
        for name, importer in reached(path).items():
            if name == "autoaug.search" or name.startswith("autoaug.search."):
                broken.append(f"{module_name(path)} reaches {name} (imported by {importer})")
    assert not broken, "\n".join(broken)


def test_the_rule_sees_an_import_of_the_search(tmp_path) -> None:
    """The reader finds `from autoaug.search... import` and plain `import autoaug.search...`."""
    for line in ("from autoaug.search.trials import derive_seed", "import autoaug.search.store",
                 "def f():\n    from autoaug.search import config"):
        path = tmp_path / "probe.py"
        path.write_text(line + "\n")
        assert any(n.startswith("autoaug.search") for n in autoaug_imports(path)), line
