"""The formats a model version exports to, and the file name of an export.

The job API checks an ExportModel request with them and names the file it streams; the CLI
checks `--format` before it calls and names the file when the server sent no name.
"""
from __future__ import annotations

from trainserve.core.errors import InvalidArgument

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}


def check_format(fmt: str) -> str:
    """The export format, lower-cased; `InvalidArgument` (field `format`) if unknown."""
    key = (fmt or "").strip().lower()
    if key not in FORMATS:
        raise InvalidArgument(f"must be one of {', '.join(FORMATS)}, got {fmt!r}", field="format")
    return key


def export_filename(name: str, version: int, fmt: str) -> str:
    """The default file name of an export: `<name>-v<version>.pt` or `.onnx`."""
    return f"{name}-v{version}{FORMATS[check_format(fmt)]}"
