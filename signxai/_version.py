"""The version of signxai (a module of its own, so that any module can read it without importing the package)."""
__version__ = "2.0.0.dev0"
