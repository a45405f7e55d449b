"""The version, in a module of its own: every stage may import it without importing the
package's public surface (``mirrorkit/__init__.py`` re-exports the api, which imports stages)."""

__version__ = "0.1.0"
