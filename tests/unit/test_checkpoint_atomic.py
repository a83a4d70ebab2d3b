"""A checkpoint writer SIGKILLed mid-write (a real process, stopped at the fault point after
half the bytes) leaves no checkpoint for that epoch: the previous one is still the newest
complete one, and the temp dir is cleared before training resumes."""
import os
import signal
import subprocess
import sys
import time

import torch

from trainserve.core.faults import ANY, ENV, arm
from trainserve.training import checkpoints

WRITER = """
import sys, torch
from trainserve.training.checkpoints import save_checkpoint
d = sys.argv[1]
for epoch in (1, 2):
    save_checkpoint(d, epoch, {"epoch": epoch, "w": torch.full((1000,), float(epoch))})
"""


def test_a_writer_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
    job = tmp_path / "j-1"
    ckpts = job / "checkpoints"
    paused = arm(tmp_path / "faults", "j-1", "checkpoint-write-2")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(ckpts)],
                            env={**os.environ, ENV: str(tmp_path / "faults")})
    try:
        deadline = time.time() + 60
        while not (paused.exists() and paused.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        assert int(paused.read_text()) == proc.pid
        tmp = [p for p in ckpts.iterdir() if p.name.startswith(".tmp-epoch-000002")]
        assert tmp and 0 < (tmp[0] / checkpoints.STATE_FILE).stat().st_size
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert [e for e, _ in checkpoints.list_checkpoints(ckpts)] == [1]
    state = checkpoints.load_checkpoint(ckpts / checkpoints.checkpoint_name(1))
    assert torch.equal(state["w"], torch.full((1000,), 1.0))
    checkpoints.remove_temp_dirs(ckpts)
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch-000001"]


def test_the_fault_point_is_inert_without_its_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    armed = arm(tmp_path, ANY, "checkpoint-write-1")  # armed, but no TRAINSERVE_FAULT_DIR
    checkpoints.save_checkpoint(tmp_path / "checkpoints", 1, {"epoch": 1})
    assert not armed.exists()
    assert [e for e, _ in checkpoints.list_checkpoints(tmp_path / "checkpoints")] == [1]


def test_resume_skips_a_checkpoint_that_never_reached_the_disk(tmp_path):
    """A checkpoint written without an fsync and then torn by a machine crash (here: its file
    truncated) is removed, and the one before it is used."""
    d = tmp_path / "checkpoints"
    for epoch in (1, 2, 3):
        checkpoints.save_checkpoint(d, epoch, {"epoch": epoch, "w": torch.full((1000,), 1.0)},
                                    keep=3, durable=epoch == 1)
    state_file = d / checkpoints.checkpoint_name(3) / checkpoints.STATE_FILE
    state_file.write_bytes(state_file.read_bytes()[:100])
    epoch, state, unreadable = checkpoints.newest_readable(d)
    assert epoch == 2 and state["epoch"] == 2
    assert [e for e, _ in unreadable] == [3]
    assert [e for e, _ in checkpoints.list_checkpoints(d)] == [1, 2]
    assert checkpoints.newest_readable(tmp_path / "none") == (0, None, [])
