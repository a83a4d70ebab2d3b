"""Build hook: the protobuf/gRPC stubs are generated at build time, never committed."""
import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _gen_protos():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate()


class BuildPyWithProtos(build_py):
    def run(self):
        _gen_protos()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
