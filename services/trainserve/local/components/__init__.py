"""The components of the local stack, one declaration each, in the order `up` starts them
(and `down` stops them in reverse). A new component is a module here with its `Component`
and one more entry in `DECLARED`."""
from __future__ import annotations

from trainserve.local.component import Component
from trainserve.local.components.api import API
from trainserve.local.components.console import CONSOLE
from trainserve.local.components.dispatcher import DISPATCHER
from trainserve.local.components.prometheus import PROMETHEUS
from trainserve.local.components.ray import RAY
from trainserve.local.components.redis import REDIS

DECLARED: tuple[Component, ...] = (REDIS, RAY, API, DISPATCHER, CONSOLE, PROMETHEUS)
BY_NAME = {c.name: c for c in DECLARED}
# The components every stack runs, and those it runs only when its settings ask.
COMPONENTS = tuple(c.name for c in DECLARED if not c.optional)
OPTIONAL_COMPONENTS = tuple(c.name for c in DECLARED if c.optional)
ALL_COMPONENTS = COMPONENTS + OPTIONAL_COMPONENTS


def declared(name: str) -> Component:
    """The declaration of `name`; ValueError naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown component {name!r}; known: {', '.join(ALL_COMPONENTS)}") \
            from None
