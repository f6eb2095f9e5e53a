"""Packs the runner package into the one file every sandbox job runs.

The runner is written as a package of small modules (``amr_dagster.sandbox.runner``) but
travels into a sandbox as ONE script: copied in as ``_amr_runner.py`` (one-shot), bound into a
bwrap worker through a memfd, or passed to a Docker worker as ``python3 -I -c <text>``; the
sandbox has no ``amr_dagster`` to import from. ``packed_runner()`` concatenates every module of
the package, and the project modules they import (``amr_dagster.sandbox.base`` for ``Status``),
in dependency order into one module namespace, as the single file was before the split, so
the packed script behaves (and costs per job) exactly as that file did.

Rules the packer enforces, so that concatenation keeps each module's meaning:

* inside the runner, modules import names from each other (``from .wire import FRAME_HEADER``),
  at top level, without ``as``; those imports are dropped when packing (the names are then
  globals of the one namespace);
* a project module they import (``from amr_dagster.sandbox.base import Status``) is packed too,
  so it must itself import only the standard library (the packed script runs on the sandbox's
  bare ``python3``);
* no two packed modules define the same top-level name (it would silently shadow the other).

Every module file in the package is packed (a new module needs no registration). The text is
built once per process and cached; ``sha256`` names its exact content (a worker's memfd and a
Docker worker's labels carry it, so one can tell which runner a worker runs).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

RUNNER_PACKAGE = "amr_dagster.sandbox.runner"
PROJECT_PACKAGE = "amr_dagster"
ENTRY_POINT = "main"


class PackError(ValueError):
    """The runner's modules break a packing rule (see the module docstring)."""


@dataclass(frozen=True)
class PackedRunner:
    source: str
    sha256: str
    modules: tuple[str, ...]  # in the order they were packed


@dataclass(frozen=True)
class _Module:
    name: str
    path: Path
    text: str
    tree: ast.Module
    imports: tuple[str, ...]  # project modules this one imports names from
    drop: tuple[tuple[int, int], ...]  # 1-based inclusive line ranges removed when packing


@functools.lru_cache(maxsize=1)
def packed_runner() -> PackedRunner:
    """The packed runner of this checkout (built on first use, then cached for the process)."""
    return pack(RUNNER_PACKAGE)


def pack(package: str) -> PackedRunner:
    """Every module of ``package`` and the project modules they import, as one script whose
    ``__main__`` calls the package's ``main(argv)``."""
    modules: dict[str, _Module] = {}
    todo = [f"{package}.{path.stem}" if path.stem != "__init__" else package for path in _package_files(package)]
    while todo:
        name = todo.pop()
        if name not in modules:
            modules[name] = _read_module(name, package)
            todo.extend(modules[name].imports)
    if modules[package].imports:
        raise PackError(f"{package}/__init__.py imports from other modules: it holds only the runner's docstring")
    order = _dependency_order(modules, first=package)
    _check_unique_names([modules[name] for name in order])
    if not any(_defines(modules[name].tree, ENTRY_POINT) for name in order):
        raise PackError(f"{package} defines no {ENTRY_POINT}(argv)")
    head, rest = _split_docstring(modules[package])
    parts = [head, f"# Packed by amr_dagster.sandbox.packing from {package}: {', '.join(order)}.\n",
             "from __future__ import annotations\n", rest]
    for name in order[1:]:
        parts.append(f"\n\n# ---- {name} " + "-" * max(4, 90 - len(name)) + "\n\n")
        parts.append(_packed_body(modules[name]))
    parts.append(f'\n\nif __name__ == "__main__":\n    import sys\n\n    sys.exit({ENTRY_POINT}(sys.argv[1:]))\n')
    source = "".join(parts)
    return PackedRunner(source, hashlib.sha256(source.encode("utf-8")).hexdigest(), tuple(order))


def _package_files(package: str) -> list[Path]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PackError(f"{package} is not a package")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(p for p in folder.glob("*.py") if p.stem != "__main__")
    if any(p.is_dir() and (p / "__init__.py").exists() for p in folder.iterdir()):
        raise PackError(f"{package} has a subpackage: the runner is one flat package")
    return files


def _module_path(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise PackError(f"cannot find the source of {name}")
    return Path(spec.origin)


def _read_module(name: str, package: str) -> _Module:
    path = _module_path(name)
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    own_package = name if path.stem == "__init__" else name.rpartition(".")[0]
    imports, drop = [], []
    top_level = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            project = [a.name for a in node.names if a.name.split(".")[0] == PROJECT_PACKAGE]
            if project:
                raise PackError(f"{name}: `import {project[0]}` -- import names (from X import y) to be packable")
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.module == "__future__":
            drop.append((node.lineno, node.end_lineno or node.lineno))
            continue
        target = _absolute(node, own_package)
        if not node.level and target.split(".")[0] not in (PROJECT_PACKAGE, package.split(".")[0]):
            continue  # the standard library: kept as written
        if id(node) not in top_level:
            raise PackError(f"{name}, line {node.lineno}: project imports must be at top level")
        if target != package and not target.startswith(package + ".") and not _is_stdlib_only(target):
            raise PackError(f"{name} imports {target}, which imports more than the standard library")
        for alias in node.names:
            if alias.asname not in (None, alias.name) or alias.name == "*":
                raise PackError(f"{name}, line {node.lineno}: `{alias.name} as {alias.asname}` cannot be packed")
            if importlib.util.find_spec(f"{target}.{alias.name}") if _is_package(target) else False:
                raise PackError(f"{name}, line {node.lineno}: imports the module {alias.name}; import names from it")
        imports.append(target)
        drop.append((node.lineno, node.end_lineno or node.lineno))
    return _Module(name, path, text, tree, tuple(dict.fromkeys(imports)), tuple(drop))


def _absolute(node: ast.ImportFrom, own_package: str) -> str:
    if not node.level:
        return node.module or ""
    base = own_package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_package(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return bool(spec and spec.submodule_search_locations)


def _is_stdlib_only(name: str) -> bool:
    """A project module outside the runner may be packed if it imports no project module."""
    tree = ast.parse(_module_path(name).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == PROJECT_PACKAGE):
            return False
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == PROJECT_PACKAGE for a in node.names):
            return False
    return True


def _dependency_order(modules: dict[str, _Module], first: str) -> list[str]:
    """Imported modules before their importers (module-level code may use imported names);
    ``first`` (the package, whose docstring heads the script) leads; ties by name."""
    order: list[str] = [first] if not modules[first].imports else []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done" or name in order:
            return
        if state.get(name) == "visiting":
            raise PackError("import cycle: " + " -> ".join((*chain, name)))
        state[name] = "visiting"
        for dependency in sorted(modules[name].imports):
            visit(dependency, (*chain, name))
        state[name] = "done"
        order.append(name)

    for name in sorted(modules):
        visit(name, ())
    return order


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _defines(tree: ast.Module, name: str) -> bool:
    return name in _top_level_names(tree)


def _check_unique_names(modules: list[_Module]) -> None:
    seen: dict[str, str] = {}
    for module in modules:
        for name in sorted(_top_level_names(module.tree)):
            if name in seen:
                raise PackError(f"{name} is defined in both {seen[name]} and {module.name}: one namespace once packed")
            seen[name] = module.name


def _packed_body(module: _Module) -> str:
    lines = module.text.splitlines(keepends=True)
    removed = {line for start, end in module.drop for line in range(start, end + 1)}
    kept = [line for number, line in enumerate(lines, start=1) if number not in removed]
    return "".join(kept).strip("\n") + "\n"


def _split_docstring(module: _Module) -> tuple[str, str]:
    """The package's docstring lines as written (they head the script), and the rest."""
    body = module.tree.body
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
        raise PackError(f"{module.name} has no docstring to head the packed script")
    end = body[0].end_lineno or body[0].lineno
    lines = module.text.splitlines(keepends=True)
    rest = _packed_body(_Module(module.name, module.path, "".join(lines[end:]), module.tree, (), ()))
    return "".join(lines[:end]), (rest if rest.strip() else "")
