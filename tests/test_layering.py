"""The import structure of the package, read from the source with ``ast`` (nothing is imported).

* The command line sits on top: no library module imports it. The CLI modules are ``signxai.cli`` (the ``signxai``
  entry point), ``signxai.__main__`` (``python -m signxai``), ``signxai.explain_dataset_cli`` (the ``explain-dataset``
  sub-command) and ``signxai.cli_args`` (argument conversions shared by the sub-commands). Model and input loading is
  the library's (``signxai.loading``).
* No import circle among the package's modules.

Which imports count: every ``import`` / ``from ... import`` statement of a module, at module level *and* inside
functions (the lazy imports that keep the frameworks out of ``import signxai`` are where circles hid: the command
line imported the dataset package lazily and the dataset package imported the command line lazily). Imports under
``if TYPE_CHECKING:`` are left out (they never run). An edge goes to the module named (for ``from a.b import c``: to
``a.b.c`` if that is a module, else to ``a.b``); the implicit import of a module's parent packages is not an edge,
or every module would be in a circle with ``signxai/__init__.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "signxai"
CLI_MODULES = {"signxai.cli", "signxai.__main__", "signxai.explain_dataset_cli", "signxai.cli_args"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name → (file, whether it is a package's ``__init__``) for every ``.py`` file of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _is_type_checking(node) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree):
    """Every Import/ImportFrom node, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (see the module docstring for what counts)."""
    modules = _modules()

    def owner(name):  # the longest prefix of a dotted name that is a module of the package
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(owner(alias.name) for alias in node.names)
                continue
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            for alias in node.names:
                targets.add(owner(f"{source}.{alias.name}") if f"{source}.{alias.name}" in modules else owner(source))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def _cycles(graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert len(graph) > 50
    # module-level, function-local and relative imports all count
    assert "signxai.api" in graph["signxai"]
    assert {"signxai.loading", "signxai.methods", "signxai.evaluate", "signxai.explain_dataset_cli"} <= \
        graph["signxai.cli"]
    assert {"signxai.methods.catalog", "signxai.methods.checks", "signxai.methods.families"} <= \
        graph["signxai.methods.grammar"]
    assert "signxai.loading" in graph["signxai.dataset.sources"]  # a function-local import


def test_no_library_module_imports_the_command_line():
    graph = import_graph()
    offenders = {module: sorted(targets & CLI_MODULES) for module, targets in graph.items()
                 if module not in CLI_MODULES and targets & CLI_MODULES}
    assert offenders == {}, f"library modules import the command line: {offenders}"
    assert CLI_MODULES <= set(graph)  # the list names real modules


def test_model_and_input_loading_live_in_the_library():
    graph = import_graph()
    for module in ("signxai.dataset.job", "signxai.dataset.sources", "signxai.evaluate", "signxai.cli"):
        assert "signxai.loading" in graph[module], module
    assert not graph["signxai.loading"] & (CLI_MODULES | {"signxai.dataset", "signxai.evaluate"})


def test_no_import_cycle():
    assert _cycles(import_graph()) == []


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
