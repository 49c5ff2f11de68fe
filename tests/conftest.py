import os
import pathlib

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# ../shared/data beside the project root (CI clones main with ../shared next to it);
# $SKETCHTF_DATA overrides it, as for sketchtf.config.shared_data_dir.
SHARED_DATA = pathlib.Path(
    os.environ.get("SKETCHTF_DATA",
                   pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_path(*parts):
    """Path under ../shared/data, or skip the test with a clear message
    (under CI=true a missing data folder fails: CI always has ../shared)."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real data not found at {p} under CI=true (CI clones main with ../shared beside it)")
        pytest.skip(f"real data not found at {p} (set SKETCHTF_DATA)")
    return p


def require_module(name: str, extra: str):
    """Import an optional dependency, or skip; under CI=true (which installs
    every extra) a missing one fails instead of hiding the tests."""
    try:
        return __import__(name)
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is not installed under CI=true (.ci/run installs '.[{extra}]')")
        pytest.skip(f"{name} not installed (pip install '.[{extra}]')")


@pytest.fixture
def shared():
    return shared_path
