"""The fingerprint of the code a run depends on, and whether that code has changed since.

A run's numbers depend on its method's module, the `methods/` modules that module imports
(transitively, `methods/__init__.py` included) and the training path (`TRAINING_PATH`:
the loop, the step, CUDA graphs, devices and precision, the data). Each file is hashed
without its comments and docstrings (the hash of `ast.unparse` of the parsed module with
docstrings removed), so an edit to the documentation or a reformatting leaves results
current. The record keeps every file's hash (`environment.code` in result.json), so a
report can name the files that changed.

Left out on purpose: reports, the CLI, scheduling and storage (they do not decide a
number), and `harness/ops` (op counts carry their own convention id and are recounted
without training). `harness/runner.py` only calls the modules below in order; a change
there that moves numbers must add it here.

`check(recorded)` re-hashes the recorded files in this checkout: *current*, *stale* (with
the changed files) or *unknown* (no fingerprint, or one made under another scheme, e.g.
another Python minor version whose `ast.unparse` may print differently). Only relative
paths of `.py` files under the repository's own packages are ever read.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEME = f"ast-unparse-sha256/py{sys.version_info.major}.{sys.version_info.minor}"
TRAINING_PATH = ("harness/train.py", "harness/step.py", "harness/graph.py", "harness/device.py",
                 "harness/data/__init__.py", "harness/data/formats.py",
                 "harness/data/synthetic.py")
PACKAGES = ("methods", "harness")
CURRENT, STALE, UNKNOWN = "current", "stale", "unknown"


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_hash(text: str) -> str:
    """16 hex digits of the code in `text`, blind to comments, docstrings and layout."""
    code = ast.unparse(_strip_docstrings(ast.parse(text)))
    return hashlib.sha256(code.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def file_hash(relpath: str, repo: Path = REPO) -> str | None:
    """The hash of a repository file (None if it is gone or no longer parses)."""
    try:
        return source_hash((repo / relpath).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None


def _module_path(name: str, repo: Path) -> str | None:
    """'methods.cemnet' -> 'methods/cemnet.py' (or the package's __init__.py), if in repo."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    for rel in (Path(*parts).with_suffix(".py"), Path(*parts, "__init__.py")):
        if (repo / rel).is_file():
            return rel.as_posix()
    return None


def _imports(relpath: str, repo: Path) -> set[str]:
    """The `methods` modules that a file imports (anywhere in it)."""
    tree = ast.parse((repo / relpath).read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}   # `from methods import cnn`
    found = {_module_path(n, repo) for n in names if n.split(".")[0] == "methods"}
    return {p for p in found if p}


def dependencies(method_module: str, repo: Path = REPO) -> list[str]:
    """The files a run of the method in `method_module` (e.g. 'methods.cemnet') depends on
    (the training path only, for a method defined outside the repository's packages)."""
    start = _module_path(method_module, repo)
    seen, todo = set(), [start] if start else []
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += sorted(_imports(path, repo) - seen)
    return sorted(seen | {p for p in TRAINING_PATH if (repo / p).is_file()})


def fingerprint(method: str, repo: Path = REPO) -> dict:
    """The record's `environment.code`: scheme, one id and every file's hash."""
    import methods

    module = methods.get(method).build_fn.__module__
    files = {p: file_hash(p, repo) for p in dependencies(module, repo)}
    digest = hashlib.sha256("".join(f"{p}:{h}\n" for p, h in files.items()).encode())
    out = {"scheme": SCHEME, "id": digest.hexdigest()[:16], "files": files}
    if _module_path(module, repo) is None:     # e.g. a method registered by a test or a plugin
        out["outside"] = module
    return out


@dataclass(frozen=True)
class Provenance:
    state: str                        # current | stale | unknown
    changed: tuple[str, ...] = ()     # stale: the files that changed or are gone
    why: str = ""                     # unknown: why it cannot be told


def _safe(relpath) -> bool:
    p = Path(str(relpath))
    return (isinstance(relpath, str) and not p.is_absolute() and ".." not in p.parts
            and p.suffix == ".py" and len(p.parts) > 1 and p.parts[0] in PACKAGES)


def check(recorded, repo: Path = REPO) -> Provenance:
    """Is the code a record was made with still the code of this checkout?"""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("files"), dict) \
            or not recorded["files"]:
        return Provenance(UNKNOWN, why="no code fingerprint in the record")
    if recorded.get("scheme") != SCHEME:
        return Provenance(UNKNOWN, why=f"fingerprint scheme {recorded.get('scheme')!r}, "
                                       f"this checkout computes {SCHEME!r}")
    files = recorded["files"]
    if recorded.get("outside"):
        return Provenance(UNKNOWN, why=f"the method's module {recorded['outside']!r} is outside the "
                                       f"repository's packages")
    if not all(_safe(p) for p in files):
        return Provenance(UNKNOWN, why="the fingerprint names files outside the packages")
    changed = tuple(sorted(p for p, h in files.items() if file_hash(p, repo) != h))
    return Provenance(STALE, changed) if changed else Provenance(CURRENT)
