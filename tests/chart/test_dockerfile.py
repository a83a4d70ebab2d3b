"""The image's Dockerfile, read (no Docker here to build it): variants, user, codegen step."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(steps):
    start = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[start:]


def test_variant_build_arg_selects_cpu_or_cuda_base():
    steps = instructions(DOCKERFILE)
    assert ("ARG", "VARIANT=cpu") in steps[:steps.index(next(s for s in steps if s[0] == "FROM"))]
    froms = [args for word, args in steps if word == "FROM"]
    assert any(f.startswith("python:3.11") and f.endswith("AS base-cpu") for f in froms)
    assert any(f.endswith("AS base-cuda") for f in froms)
    assert final_stage(steps)[0][1].startswith("base-${VARIANT}")
    cuda = DOCKERFILE.split("AS base-cuda", 1)[1].split("FROM", 1)[0]
    assert "python3.11" in cuda and "whl/cu" in cuda
    cpu = DOCKERFILE.split("AS base-cpu", 1)[1].split("FROM", 1)[0]
    assert "whl/cpu" in cpu


def test_runs_as_a_non_root_user():
    users = [args for word, args in final_stage(instructions(DOCKERFILE)) if word == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    uid = re.sub(r"^\$\{UID\}$", re.search(r"ARG UID=(\d+)", DOCKERFILE).group(1), uid)
    assert uid not in ("root", "0")
    assert uid.isdigit(), "a numeric USER lets Kubernetes check runAsNonRoot"


def test_generates_protos_and_installs_the_package_with_pinned_torch():
    runs = [args for word, args in final_stage(instructions(DOCKERFILE)) if word == "RUN"]
    joined = "\n".join(runs)
    assert re.search(r"torch==\$\{TORCH_VERSION\}", joined)
    assert re.search(r"ARG TORCH_VERSION=2\.13\.0", DOCKERFILE)
    [build] = [r for r in runs if "gen_protos.py" in r]
    assert build.index("python scripts/gen_protos.py") < build.index("pip install .")
    assert joined.index("torch==") < joined.index("pip install .")
    entry = [args for word, args in final_stage(instructions(DOCKERFILE)) if word == "ENTRYPOINT"]
    assert entry and "trainserve-entrypoint" in entry[-1]


def test_generated_stubs_and_local_envs_are_not_copied():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"services/trainserve/_gen", ".venv", ".git"} <= set(ignored)
    for word, args in instructions(DOCKERFILE):
        if word == "COPY":
            assert not args.startswith(". "), "COPY . would bring the whole checkout"


def test_entrypoint_runs_each_role():
    script = (ROOT / "cluster" / "image" / "entrypoint.sh").read_text()
    assert "python -m trainserve.api" in script and "python -m trainserve.dispatch" in script
    assert re.search(r"^\s*ray\) exec ray", script, re.MULTILINE)
