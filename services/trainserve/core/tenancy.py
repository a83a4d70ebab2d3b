"""Who may see and touch what: every job, dataset, model version and deployment has an owner
(a user name); a caller sees its own, an admin everything.

Names are global (an endpoint name is a URL anyone can reach; a model name is what jobs and
deployments refer to): a name is claimed for its owner, atomically, the first time something
is to be created under it (`store.names`) — a job's model and endpoint names when the job is
submitted, an endpoint's at Deploy, a dataset's at upload — and the claim is checked again
whenever something is created under it (the dispatcher registering or deploying a job's model
acts as the job's owner). Another user who tries to create under a claimed name is refused
with ALREADY_EXISTS; an admin too, for a thing of another owner (an admin sees and manages
everything but never moves a name from one user to another). Reading or changing another
user's thing answers NOT_FOUND, exactly as if it did not exist.

Every check takes an explicit `Principal`: there is no "anyone" caller, and a missing one is
a TypeError, never a superuser.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from trainserve.core import errors

# Names of models, endpoints and datasets (they appear in URLs and Redis keys), matched whole.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
WHAT = {"model": "model", "deployment": "endpoint", "dataset": "dataset"}


@dataclass(frozen=True)
class Principal:
    """Who a call acts for."""
    user: str
    role: str  # "user" or "admin"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _principal(caller) -> Principal:
    if not isinstance(caller, Principal):
        raise TypeError(f"a caller (tenancy.Principal) is required, got {caller!r}")
    return caller


def visible(owner: str, caller: Principal) -> bool:
    """Whether `caller` may see and act on a thing owned by `owner`."""
    caller = _principal(caller)
    return caller.is_admin or owner == caller.user


def check_visible(owner: str, caller: Principal, not_found: str) -> None:
    """NotFound(`not_found`) unless `caller` may see a thing owned by `owner`."""
    if not visible(owner, caller):
        raise errors.NotFound(not_found)


def claim(names, wanted: list[tuple[str, str, str]], owner: str) -> None:
    """Claim each (kind, name, field path) of `wanted` for `owner` (`store.names.NameClaims`
    `names`), atomically per name; AlreadyExists naming the field if another user holds one."""
    held = names.claim([(kind, name) for kind, name, _ in wanted], owner)
    for (kind, name, field), holder in zip(wanted, held):
        if holder != owner:
            raise errors.AlreadyExists(f"{field}: {WHAT[kind]} name {name!r} belongs to "
                                       f"another user; choose another {field}"
                                       f"{_suggestion(owner, name)}")


def _suggestion(owner: str, name: str) -> str:
    """`, e.g. 'bob-digits-lenet5'`: the name under the owner's own prefix (names are global,
    so a class submitting the same example needs one each), when that is a valid name."""
    prefix = re.sub(r"[^a-z0-9._-]+", "-", owner.lower()).strip("-._")
    candidate = f"{prefix}-{name}"[:63]
    if not prefix or name.startswith(prefix + "-") or not NAME_RE.fullmatch(candidate):
        return ""
    return f", e.g. {candidate!r}"


def owner_of(caller: Principal, default: str = "") -> str:
    """The owner to record for something `caller` creates."""
    return _principal(caller).user or default
