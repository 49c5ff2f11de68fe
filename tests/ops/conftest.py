"""Shared by the op tests: every kernel path in turn, skipped where the CPU lacks it."""
import pytest

from sketchtf.ops import xnor

ALL_PATHS = ("scalar", "avx2", "avx512")


@pytest.fixture(params=ALL_PATHS)
def path(request):
    if request.param not in xnor.available_paths():
        pytest.skip(f"CPU lacks the {request.param} path (features: {xnor.cpu_features()})")
    return request.param
