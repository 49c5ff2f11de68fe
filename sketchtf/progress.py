"""Progress bars for long non-Keras work (conversion, caching, calibration).

tqdm on stderr when it is a terminal; silent in logs and CI (disable=None).
"""
from __future__ import annotations


def progress(iterable, *, total=None, desc: str = ""):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with tensorflow-datasets; stay usable without it
        return iterable
    return tqdm(iterable, total=total, desc=desc, disable=None, leave=False)
