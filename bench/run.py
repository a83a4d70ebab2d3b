"""Run every benchmark in bench/ and print its table (results also land in bench/results/)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import serve, spine, submit, tune  # noqa: E402

BENCHES = {"spine": spine.main, "tune": tune.main, "serve": serve.main, "submit": submit.main}


def main(argv: list[str]) -> None:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown bench {unknown}; known: {', '.join(BENCHES)}")
    for name in names:
        BENCHES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
