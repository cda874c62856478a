"""Build hooks: generate kcore's gRPC modules from its proto files.

`build_py` runs grpcio-tools' protoc on kcore/v1/kcore.proto (the public API) into the
build (or, for an editable install, into the source tree), next to the hand-written
kcore/v1/__init__.py. The proto files come from ../../proto when building in kcore's
repository, or from ./proto in an sdist (`sdist` copies them there). Nothing generated is
committed.
"""

import pathlib
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = pathlib.Path(__file__).parent.resolve()
PROTOS = ["kcore/v1/kcore.proto"]


def proto_root():
    for root in (HERE / "proto", HERE.parent.parent / "proto"):
        if all((root / p).is_file() for p in PROTOS):
            return root
    raise SystemExit(
        "kcore's proto files were not found: build from clients/python in kcore's "
        "repository (they are in ../../proto) or from this package's sdist (./proto)"
    )


def generate(out):
    """Run protoc (from grpcio-tools) for PROTOS into directory `out`."""
    import importlib.resources

    from grpc_tools import protoc

    root = proto_root()
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
    ] + [str(root / p) for p in PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit(f"grpc_tools.protoc failed: {' '.join(args)}")


class BuildPy(build_py):
    def run(self):
        super().run()
        editable = getattr(self, "editable_mode", False)
        generate(HERE if editable else pathlib.Path(self.build_lib))


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        for p in PROTOS:
            dest = pathlib.Path(base_dir) / "proto" / p
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(proto_root() / p, dest)


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
