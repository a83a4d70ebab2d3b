import pytest

from trainserve.core.state import TRANSITIONS, JobState, sources_of


def test_terminal_states():
    assert {s for s in JobState if s.is_terminal} == {
        JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


def test_transitions_follow_the_documented_machine():
    assert TRANSITIONS[JobState.QUEUED] == {JobState.RUNNING, JobState.CANCELLED}
    assert TRANSITIONS[JobState.RUNNING] == {JobState.SUCCEEDED, JobState.FAILED,
                                             JobState.CANCELLED}
    for s in JobState:
        if s.is_terminal:
            assert not TRANSITIONS[s]
    assert sources_of(JobState.CANCELLED) == {JobState.QUEUED, JobState.RUNNING}


@pytest.mark.parametrize("text", ["running", "RUNNING", "JOB_STATE_RUNNING", " Running "])
def test_parse(text):
    assert JobState.parse(text) == JobState.RUNNING


def test_parse_unknown_lists_known():
    with pytest.raises(ValueError, match="queued, running"):
        JobState.parse("paused")
