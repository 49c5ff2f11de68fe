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
    """Path under ../shared/data, or skip the test with a clear message."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not found at {p} (set SKETCHTF_DATA)")
    return p


@pytest.fixture
def shared():
    return shared_path
