"""The error types that cross layers (docs/design.md §1): every layer may import this module and
nothing else of scaler's to raise or catch them. Each message names the file or parameter, the
key and what was expected; the CLI maps them to one line on stderr and exit 2 (design §7).

A library error about an argument names the argument as the caller wrote it: `ParameterError`
keeps a template whose `{name}` fields are parameters (`n_bootstrap`), rendered as themselves for a
Python caller and as the command's flags (`--bootstrap`) by the CLI (`render(flags)`)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ConfigError", "StoreError", "ParameterError"]


class ConfigError(ValueError):
    """A config that cannot be used; the message says where and what was expected."""


class StoreError(Exception):
    """A store file is missing where required, unreadable, or disagrees with what is written."""


class ParameterError(ConfigError):
    """A bad argument: `template` holds a `{parameter}` field for each of `parameters`."""

    def __init__(self, template: str, *parameters: str) -> None:
        self.template, self.parameters = template, parameters
        super().__init__(self.render({}))

    def render(self, names: Mapping[str, str]) -> str:
        """The message with each parameter written as `names` says (default: its own name)."""
        text = self.template
        for p in self.parameters:
            text = text.replace("{" + p + "}", names.get(p, p))
        return text
