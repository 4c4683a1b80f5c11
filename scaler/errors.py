"""The error types that cross layers (docs/design.md §1): every layer may import this module and
nothing else of scaler's to raise or catch them. Each message names the file or parameter, the
key and what was expected; the CLI maps them to one line on stderr and exit 2 (design §7)."""

from __future__ import annotations

__all__ = ["ConfigError", "StoreError"]


class ConfigError(ValueError):
    """A config that cannot be used; the message says where and what was expected."""


class StoreError(Exception):
    """A store file is missing where required, unreadable, or disagrees with what is written."""
