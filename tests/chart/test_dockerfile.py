"""The image's Dockerfile, read (no Docker here to build it): variants, user, codegen step,
and every Python dependency installed from a lock with hashes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
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
    local = "pip install --no-deps --no-build-isolation ."
    assert build.index("python scripts/gen_protos.py") < build.index(local)
    assert joined.index("torch==") < joined.index(local)
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


def test_entrypoint_starts_the_console():
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = subprocess.run(["bash", str(ROOT / "cluster" / "image" / "entrypoint.sh"), "console",
                          "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "python -m trainserve.console" in out.stdout and "--tls-cert" in out.stdout


LOCK = ROOT / "cluster" / "image" / "requirements.lock"
LOCK_INPUT = ROOT / "cluster" / "image" / "requirements.in"


def _name(requirement: str) -> str:
    """A requirement's normalized project name (PEP 503), extras and versions dropped."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement.strip(), 1)[0]).lower()


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) of every requirement in the lock."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("--hash") else line
        if not line or line.startswith("#"):
            continue
        spec = line.split()[0]
        name, _, version = spec.partition("==")
        out[_name(name)] = (version, re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return out


def test_the_image_installs_its_dependencies_from_a_lock_with_hashes():
    steps = final_stage(instructions(DOCKERFILE))
    copies = [args for word, args in steps if word == "COPY"]
    assert any(args.startswith("cluster/image/requirements.lock ") for args in copies)
    runs = [args for word, args in steps if word == "RUN"]
    [install] = [r for r in runs if "requirements.lock" in r]
    assert "--require-hashes" in install and "--no-deps" in install
    # Nothing else is fetched unhashed: the other installs are torch (pinned) and the tree.
    installs = re.findall(r"pip install ([^&;]*)", "\n".join(runs))
    for args in installs:
        assert ("--require-hashes" in args or "torch==${TORCH_VERSION}" in args
                or args.strip().endswith("--no-deps --no-build-isolation .")), args
    assert "pip install --upgrade pip" not in DOCKERFILE


def test_the_lock_pins_every_dependency_with_hashes():
    locked = _locked()
    assert len(locked) > 50
    for name, (version, hashes) in locked.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), (name, version)
        assert hashes, f"{name} has no hash"
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]} - {"torch"}
    wanted |= {"setuptools", "wheel", "grpcio-tools", "filelock", "sympy", "networkx", "jinja2",
               "fsspec", "typing-extensions"}  # the build tools, and torch's requirements
    assert wanted <= set(locked), wanted - set(locked)
    inputs = {_name(line) for line in LOCK_INPUT.read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert inputs <= set(locked) and "torch" not in locked
    assert locked["ray"][0] == "2.60.0"  # the version pyproject.toml pins


def test_base_images_are_pinned_by_digest_or_marked():
    lines = DOCKERFILE.splitlines()
    for i, line in enumerate(lines):
        image = None
        if line.startswith("FROM ") and not line.split()[1].startswith(("base-", "$")):
            image = line.split()[1]
        elif line.startswith("ARG CUDA_IMAGE="):
            image = line.split("=", 1)[1]
        if image and "@sha256:" not in image:
            before = "\n".join(lines[max(0, i - 4):i])
            assert "# pin: set the digest" in before, f"{image} is neither pinned nor marked"
