"""Tenancy rules without servers: there is no "anyone" caller, a claimed name is refused to
another user with its field path, and names are matched whole."""
from __future__ import annotations

import pytest

from trainserve.core import errors, tenancy
from trainserve.jobs.service import USER_RE
from trainserve.core.spec import check_name
from trainserve.core.tenancy import Principal

ALICE, BOB, ADMIN = Principal("alice", "user"), Principal("bob", "user"), Principal("root", "admin")


class Held:
    """A stand-in for `store.names.NameClaims`: the first claimant of a name keeps it."""

    def __init__(self):
        self.holders: dict[tuple[str, str], str] = {}

    def claim(self, wanted, user):
        return [self.holders.setdefault(w, user) for w in wanted]


def test_a_missing_caller_is_an_error_not_an_admin():
    for call in (lambda: tenancy.visible("alice", None),
                 lambda: tenancy.check_visible("alice", None, "gone"),
                 lambda: tenancy.owner_of(None)):
        with pytest.raises(TypeError, match="Principal"):
            call()


def test_a_caller_sees_its_own_an_admin_everything():
    assert tenancy.visible("alice", ALICE) and tenancy.visible("alice", ADMIN)
    assert not tenancy.visible("alice", BOB)
    with pytest.raises(errors.NotFound, match="job 'j-1' not found"):
        tenancy.check_visible("alice", BOB, "job 'j-1' not found")


def test_a_claimed_name_is_refused_to_another_user_with_its_field():
    names = Held()
    tenancy.claim(names, [("model", "m", "spec.name"), ("deployment", "x", "spec.deploy.name")],
                  "alice")
    tenancy.claim(names, [("model", "m", "spec.name")], "alice")  # hers: again is fine
    with pytest.raises(errors.AlreadyExists) as err:
        tenancy.claim(names, [("model", "free", "spec.name"),
                              ("deployment", "x", "spec.deploy.name")], "bob")
    assert err.value.message.startswith("spec.deploy.name: endpoint name 'x' belongs to "
                                        "another user")
    assert err.value.grpc_code == "ALREADY_EXISTS"
    assert err.value.message.endswith("choose another spec.deploy.name, e.g. 'bob-x'")


def test_the_refusal_suggests_a_name_under_the_users_own_prefix():
    names = Held()
    tenancy.claim(names, [("model", "digits-lenet5", "spec.name")], "alice")
    for user, hint in (("Bob@Example.org", ", e.g. 'bob-example.org-digits-lenet5'"),
                       ("___", ""), ("digits", "")):  # no prefix left; already prefixed
        with pytest.raises(errors.AlreadyExists) as err:
            tenancy.claim(names, [("model", "digits-lenet5", "spec.name")], user)
        assert err.value.message.endswith("choose another spec.name" + hint)


@pytest.mark.parametrize("name", ["prod\n", "prod\r\n", "\nprod", "Prod", "-prod", "a" * 64,
                                  "", "prod/x", "pro d"])
def test_names_are_matched_whole(name):
    with pytest.raises(errors.InvalidArgument) as err:
        check_name(name, "spec.deploy.name")
    assert err.value.field == "spec.deploy.name"


def test_good_names_and_users_pass():
    for name in ("prod", "xor-mlp", "a" * 63, "m.v2_final"):
        check_name(name, "spec.name")
    assert USER_RE.fullmatch("alice@example.org") and not USER_RE.fullmatch("alice\n")
