"""The package layout's rules, read from the source: no import cycle, and no library module imports a CLI.

Imports are read with `ast` from every import statement, at any depth (a
function-level import that dodges a cycle at import time is still a cycle in
the design). `from package import name` counts as importing `package.name` when
that is a module, else `package`. A package's own `__init__` importing its
submodules is not an edge back from them.
"""

import ast
import os

from tests.paths import REPO_ROOT

LIBRARIES = ("keras_emlnet", "serving")
# The command-line modules (`python -m ...`); everything else under LIBRARIES is library code.
CLI_MODULES = {
    "keras_emlnet.convert_places365",
    "keras_emlnet.convert_released",
    "keras_emlnet.data.generate",
    "serving.batch_score",
    "serving.beam_score",
    "serving.client.__main__",
    "serving.export.__main__",
    "serving.server.__main__",
}


def _modules():
    """{dotted module name: path} of every .py file in the library packages and train/."""
    found = {}
    for top in LIBRARIES + ("train",):
        for root, dirs, files in os.walk(os.path.join(REPO_ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    relative = os.path.relpath(os.path.join(root, name), REPO_ROOT)[:-3]
                    dotted = relative.replace(os.sep, ".")
                    found[dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted] = relative + ".py"
    return found


def _imports(path, modules):
    """The project modules a file imports, resolved as described in the module docstring."""
    with open(os.path.join(REPO_ROOT, path)) as file:
        tree = ast.parse(file.read(), path)
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                targets.add(submodule if submodule in modules else node.module)
    return {target for target in targets if target in modules}


def _graph():
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _is_library(name):
    return name.split(".")[0] in LIBRARIES and name not in CLI_MODULES


def test_the_layout_is_the_documented_one():
    # The module map depends on these folders; a rename must update WORKSPACE.md too.
    modules = _modules()
    for package in ("keras_emlnet.models", "keras_emlnet.metrics", "keras_emlnet.data", "keras_emlnet.training",
                    "keras_emlnet.evaluation", "keras_emlnet.inference", "serving.export", "serving.server",
                    "serving.batch", "serving.beam", "serving.client"):
        assert package in modules, package
    for name in CLI_MODULES:
        assert name in modules, f"CLI module {name} is listed here but does not exist"


def test_no_library_module_imports_a_cli():
    offenders = {
        name: sorted(t for t in targets if not _is_library(t))
        for name, targets in _graph().items()
        if _is_library(name) and any(not _is_library(t) for t in targets)
    }
    assert offenders == {}


def test_no_import_cycle():
    graph = _graph()
    # A package's __init__ re-exporting its submodules is not a cycle with them.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not (name.startswith(t + ".") and t in graph)}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert cycles == []
