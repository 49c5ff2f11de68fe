"""Shared by the op tests: the `path` fixture, every kernel path in turn, skipped
where the CPU lacks it (`from kernel_paths import path`). Not a conftest.py: the
tests import the top-level conftest by name, which a second one would shadow."""
import pytest

from sketchtf.ops import xnor

ALL_PATHS = ("scalar", "avx2", "avx512")


@pytest.fixture(params=ALL_PATHS)
def path(request):
    if request.param not in xnor.available_paths():
        pytest.skip(f"CPU lacks the {request.param} path (features: {xnor.cpu_features()})")
    return request.param
