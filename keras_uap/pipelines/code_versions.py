"""Stage code versions from the source a stage can reach, not from lists.

A stage's version hashes the source of every `keras_uap` module its
function's module can reach through imports, found by parsing the sources
(`ast`; nothing is imported), function-level imports included:

- `import keras_uap.a.b` and `from keras_uap.a import b` (a submodule)
  reach that module;
- `from keras_uap.a import Name`, where `keras_uap.a` is a package, reaches
  the package's `__init__` and the module it re-exports `Name` from (not
  the package's other modules), so a model reaches the layers it uses and
  not the others;
- a package a module merely lives in is not followed (`keras_uap/__init__`
  and `keras_uap/pipelines/__init__` run on import, but do not decide
  what a stage computes), and `import keras_uap` reaches only
  `keras_uap/__init__` (the version and lazy re-exports of the API).
"""

import ast
import functools
import hashlib
import os

__all__ = ["reachable_modules", "code_version"]

_PACKAGE = "keras_uap"
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _source_file(name, root):
    base = os.path.join(root, *name.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


@functools.lru_cache(maxsize=None)
def _parse(path, mtime_ns):
    with open(path, "rb") as f:
        source = f.read()
    return source, ast.parse(source)


def _read(path):
    return _parse(path, os.stat(path).st_mtime_ns)


def _absolute(node, name, is_package):
    """The absolute module name of an `ImportFrom` node in module `name`."""
    if not node.level:
        return node.module
    parts = name.split(".") if is_package else name.split(".")[:-1]
    parts = parts[:len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _ours(name):
    return name == _PACKAGE or name.startswith(_PACKAGE + ".")


def _reexport(package, name, root):
    """The module `package/__init__` takes `name` from, or None."""
    _, tree = _read(_source_file(package, root))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            return _absolute(node, package, True)
    return None


def _edges(name, path, root):
    """(module, None) to follow a whole module, (package, Name) for one name of a package."""
    _, tree = _read(path)
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, name, is_package)
            for alias in node.names:
                if alias.name == "*":
                    yield module, None
                elif _source_file(f"{module}.{alias.name}", root):
                    yield f"{module}.{alias.name}", None
                else:
                    yield module, alias.name


def reachable_modules(*module_names, root=_ROOT, skip=()):
    """{module name: source path} of `module_names` and every `keras_uap`
    module they reach, sorted by name.

    Args:
        module_names: where to start.
        root: the directory holding the `keras_uap` package.
        skip: packages not followed as a whole (`import package`, or a name
            its `__init__` defines itself); names they re-export still
            reach the module they come from.
    """
    found, followed, todo = {}, set(), [(name, None) for name in module_names]
    while todo:
        module, name = todo.pop()
        path = _source_file(module, root) if module and _ours(module) else None
        if path is None or (module, name) in followed or (module, None) in followed:
            continue
        followed.add((module, name))
        if module not in skip:
            found[module] = path
        source = _reexport(module, name, root) if name is not None and path.endswith("__init__.py") else None
        if source is not None:  # one re-exported name: the module it comes from
            source_path = _source_file(source, root)
            todo.append((source, name if source_path and source_path.endswith("__init__.py") else None))
        elif module != _PACKAGE and module not in skip:  # a module, or a name the package defines: all it imports
            todo.extend(_edges(module, path, root))
    return dict(sorted(found.items()))


def code_version(release, *module_names, root=_ROOT, skip=()):
    """`release` and a hash of the source `module_names` reach
    (`reachable_modules`): a stage defined in a module gets a new version
    whenever code it can run changes."""
    digest = hashlib.sha256()
    for name, path in reachable_modules(*module_names, root=root, skip=skip).items():
        digest.update(name.encode() + b"\0" + _read(path)[0] + b"\0")
    return f"{release}-{digest.hexdigest()[:12]}"
