"""Who may see and touch what: every job, dataset, model version and deployment has an owner
(a user name); a caller sees its own, an admin everything.

Names are global (an endpoint name is a URL anyone can reach; a model name is what jobs and
deployments refer to): the first owner of a name keeps it, and another user who tries to
create something under it is refused with ALREADY_EXISTS. Reading or changing another user's
thing answers NOT_FOUND, exactly as if it did not exist.

`caller=None` is the server itself (the dispatcher, tools): it may do everything.
"""
from __future__ import annotations

from dataclasses import dataclass

from trainserve import errors


@dataclass(frozen=True)
class Principal:
    """Who a call acts for."""
    user: str
    role: str  # "user" or "admin"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def visible(owner: str, caller: Principal | None) -> bool:
    return caller is None or caller.is_admin or owner == caller.user


def check_visible(owner: str, caller: Principal | None, not_found: str) -> None:
    """NotFound(`not_found`) unless `caller` may see a thing owned by `owner`."""
    if not visible(owner, caller):
        raise errors.NotFound(not_found)


def check_claim(owner: str | None, caller: Principal | None, what: str, field: str) -> None:
    """Refuse to create under a name `owner` (None: nobody yet) already holds for another
    user."""
    if owner is not None and not visible(owner, caller):
        raise errors.AlreadyExists(f"{what} belongs to another user; choose another {field}")


def owner_of(caller: Principal | None, default: str = "") -> str:
    """The owner to record for something `caller` creates."""
    return caller.user if caller is not None and caller.user else default
