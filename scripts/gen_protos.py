"""Generate the protobuf and gRPC Python modules from protos/ into services/trainserve/_gen/.

protoc writes absolute imports named after the proto packages (``from trainserve.v1 import
spec_pb2``); those would collide with the ``trainserve`` package itself, so every generated
import is rewritten to live under ``trainserve._gen``.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "services" / "trainserve" / "_gen"
_IMPORT = re.compile(r"^(from|import) (trainserve\.v1|inference)\b", re.MULTILINE)
# The module name recorded for each message class (used by pickle, e.g. when a message
# travels to a Ray worker) must be the rewritten one too.
_MODULE_NAME = re.compile(r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')(trainserve\.v1|inference)\.")


def generate(out: Path = OUT) -> list[Path]:
    from grpc_tools import protoc
    import grpc_tools

    protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={out}",
            f"--pyi_out={out}", f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for path in out.rglob("*.py*"):
        text = path.read_text()
        new = _IMPORT.sub(lambda m: f"{m.group(1)} trainserve._gen.{m.group(2)}", text)
        new = _MODULE_NAME.sub(lambda m: f"{m.group(1)}trainserve._gen.{m.group(2)}.", new)
        if new != text:
            path.write_text(new)
        written.append(path)
    for pkg in {p.parent for p in written} | {out}:
        (pkg / "__init__.py").touch()
    return written


if __name__ == "__main__":
    files = generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
    print(f"generated {len(files)} files into {OUT.relative_to(ROOT)}")
