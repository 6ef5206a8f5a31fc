"""Explanation-method names: the catalog, the grammar and the parameter resolver (docs/methods.md#names)."""

from .catalog import CATALOG, list_methods
from .grammar import Method, method_families, parse_method, resolve_method

__all__ = ["CATALOG", "Method", "list_methods", "method_families", "parse_method", "resolve_method"]
