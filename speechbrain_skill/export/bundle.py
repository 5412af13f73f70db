"""Self-contained source files from this package's modules (for exported custom code).

:func:`bundle_module` writes one module with every ``speechbrain_skill``
module it imports inlined, in dependency order, so an export folder carries
the student's own layer code, not a copy kept in this repository.
"""

import ast
import importlib
import inspect

PACKAGE = "speechbrain_skill"


class BundleError(ValueError):
    """Raised when a module cannot be made self-contained."""


def _is_own(module_name):
    return module_name == PACKAGE or module_name.startswith(PACKAGE + ".")


def _parse(module_name):
    source = inspect.getsource(importlib.import_module(module_name))
    return source, ast.parse(source)


def _dependency_order(entry, relative):
    """Modules to inline, dependencies first; refuses imports it cannot rewrite."""
    order, seen = [], set()

    def visit(name):
        """Add module ``name`` and, first, the local modules it imports."""
        if name in seen or name in relative:
            return
        seen.add(name)
        source, tree = _parse(name)
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(
                _is_own(alias.name) for alias in node.names
            ):
                raise BundleError(f"{name}: 'import {PACKAGE}...' cannot be inlined.")
            if isinstance(node, ast.ImportFrom) and _is_own(node.module or ""):
                if id(node) not in top_level:
                    raise BundleError(
                        f"{name}: the import of {node.module} inside a function "
                        "cannot be inlined; import it at module level."
                    )
                visit(node.module)
        order.append((name, source, tree))

    visit(entry)
    return order


def _top_level_names(tree):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    yield target.id


def bundle_module(entry, relative=None):
    """Source of ``entry`` with its ``speechbrain_skill`` imports inlined.

    Arguments
    ---------
    entry : str
        Dotted name of the module whose code is wanted.
    relative : dict, optional
        Module name -> sibling file name (without ``.py``) imported relatively
        instead of inlined (e.g. the Hugging Face configuration file).

    Returns
    -------
    str
        Python source importing only third-party packages (and the siblings).

    Example
    -------
    >>> source = bundle_module("speechbrain_skill.lobes.student.conv")
    >>> "import speechbrain_skill" in source, "def get_activation" in source
    (False, True)
    >>> compile(source, "conv.py", "exec") is not None
    True
    """
    relative = dict(relative or {})
    header, sections, defined = [], [], {}
    for name, source, tree in _dependency_order(entry, relative):
        for top_name in _top_level_names(tree):
            if defined.setdefault(top_name, name) != name:
                raise BundleError(
                    f"'{top_name}' is defined in both {defined[top_name]} and "
                    f"{name}: inlined together they would collide."
                )
        lines = source.splitlines()
        dropped = set()
        for index, node in enumerate(tree.body):
            is_docstring = (
                index == 0
                and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            )
            if not (is_docstring or isinstance(node, (ast.Import, ast.ImportFrom))):
                continue
            dropped.update(range(node.lineno - 1, node.end_lineno))
            if isinstance(node, ast.ImportFrom) and _is_own(node.module or ""):
                if node.module in relative:
                    names = ", ".join(alias.name for alias in node.names)
                    header.append(f"from .{relative[node.module]} import {names}")
            elif not is_docstring:
                header.append(ast.get_source_segment(source, node))
        body = "\n".join(line for i, line in enumerate(lines) if i not in dropped)
        sections.append(f"# ---- {name}\n\n{body.strip()}\n")
    imports = "\n".join(dict.fromkeys(header))
    return f"{imports}\n\n\n" + "\n\n".join(sections)
