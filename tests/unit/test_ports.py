"""free_port: ports drawn one after another before any is bound never repeat."""
from trainserve.core import ports
from trainserve.core.ports import SINGLE_RANGE, free_port, port_free


def test_draws_before_binding_are_distinct(monkeypatch):
    # A range of 50 makes a repeat almost certain within 40 draws if nothing prevents it.
    monkeypatch.setattr(ports, "SINGLE_RANGE", (SINGLE_RANGE[0], SINGLE_RANGE[0] + 50))
    drawn = [free_port(attempts=2000) for _ in range(40)]
    assert len(set(drawn)) == len(drawn)


def test_a_drawn_port_is_free():
    assert port_free(free_port())
