"""How a model version is named, and the rules of its aliases and tags.

A reference is `NAME` (the latest version), `NAME:VERSION` or `NAME@ALIAS` (the version the
alias points at when the reference is resolved). An alias names one version of its model at a
time: moving it to another version takes it off the one it named. Tags are free-form
key -> value pairs of one version. The bounds here are the server's, checked by the registry;
the SDK and the CLI only parse references.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from trainserve.core.errors import InvalidArgument, ResourceExhausted

# A lowercase letter first, so an alias is never a version number nor looks like one.
ALIAS_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
# What version 0 means everywhere; `NAME@latest` resolves to it, but no alias may take it.
LATEST = "latest"
RESERVED_ALIASES = frozenset({LATEST})
MAX_ALIASES = 32  # per model
TAG_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
MAX_TAG_VALUE = 256  # characters
MAX_TAGS = 32  # per version


@dataclass(frozen=True)
class ModelRef:
    """A model version as a user names it: `version` 0 with no `alias` is the latest."""
    name: str
    version: int = 0
    alias: str = ""

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return f"{self.name}:{self.version}" if self.version else self.name


def parse_ref(text: str, field: str = "model") -> ModelRef:
    """"digits" -> latest, "digits:3" -> version 3, "digits@production" -> that alias.
    The name itself is checked by the server; a malformed version or alias is refused here."""
    name, sep, alias = text.partition("@")
    if sep:
        if not alias:
            raise InvalidArgument("an alias follows '@', e.g. digits@production", field=field)
        return ModelRef(name, alias=alias)
    name, sep, version = text.rpartition(":")
    if not sep:
        return ModelRef(text)
    if not version.isdigit():
        raise InvalidArgument(f"version must be a positive number, got {version!r} (an alias "
                              "follows '@')", field=field)
    return ModelRef(name, int(version))


def check_alias(alias: str, field: str = "alias") -> str:
    """`alias` if it may name a version (SetModelAlias); INVALID_ARGUMENT naming `field`."""
    if not alias:
        raise InvalidArgument("required", field=field)
    if alias in RESERVED_ALIASES:
        raise InvalidArgument(f"{alias!r} is reserved: it always means the newest version",
                              field=field)
    if not ALIAS_RE.fullmatch(alias):
        raise InvalidArgument(
            f"{alias!r} is not an alias: a lowercase letter, then lowercase letters, digits, "
            "'-' or '_', at most 63 characters", field=field)
    return alias


def check_alias_ref(alias: str, field: str = "alias") -> str:
    """An alias a request resolves: `check_alias`'s rules, and `latest` (the newest)."""
    return alias if alias == LATEST else check_alias(alias, field)


def check_version_or_alias(version: int, alias: str, version_field: str = "version",
                           alias_field: str = "alias") -> None:
    """A request names a version by number (0: the latest) or by alias, not both."""
    if version < 0:
        raise InvalidArgument("must be >= 0 (0 is the latest)", field=version_field)
    if alias:
        check_alias_ref(alias, alias_field)
        if version:
            raise InvalidArgument(f"give {version_field} or {alias_field}, not both",
                                  field=alias_field)


def check_tags(set_: Mapping[str, str], remove: Iterable[str]) -> None:
    """The tags an UpdateModelTags request sets and removes: keys by `TAG_KEY_RE`, values of at
    most `MAX_TAG_VALUE` characters, at most `MAX_TAGS` set at once."""
    if len(set_) > MAX_TAGS:
        raise ResourceExhausted(f"set: {len(set_)} tags, more than a version may carry "
                                f"({MAX_TAGS})")
    for key, value in set_.items():
        _check_tag_key(key, f"set[{key!r}]")
        if len(value) > MAX_TAG_VALUE:
            raise InvalidArgument(f"at most {MAX_TAG_VALUE} characters, got {len(value)}",
                                  field=f"set[{key!r}]")
    for i, key in enumerate(remove):
        _check_tag_key(key, f"remove[{i}]")


def _check_tag_key(key: str, field: str) -> None:
    if not TAG_KEY_RE.fullmatch(key):
        raise InvalidArgument(f"{key!r} is not a tag key: a letter or digit, then letters, "
                              "digits, '.', '_', '/' or '-', at most 63 characters",
                              field=field)
