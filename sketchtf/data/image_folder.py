"""Class-per-folder image sets (root/<class>/*.png|jpg) -> image records.

Images come out as uint8 (H, W), ink 255 on background 0. The train/test split
is deterministic and stratified, and a class's split depends only on its own
file names (see split_files).
"""
from __future__ import annotations

import hashlib
import math
import os
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
from PIL import Image

from sketchtf.data.records import SkipCounter, Sketch, SketchDataError, handle_bad

PathLike = Union[str, os.PathLike]
SPLITS = ("train", "test", "all")
INKS = ("auto", "dark", "light")


def list_classes(root: PathLike) -> list[str]:
    """Sorted names of the (non-hidden) subfolders of root."""
    return sorted(n for n in os.listdir(root)
                  if not n.startswith(".") and os.path.isdir(os.path.join(root, n)))


def _rank(seed: int, cls: str, name: str) -> bytes:
    # A keyed hash, not random.shuffle: the order of a file never depends on
    # which other files exist, so adding files moves at most the new ones.
    return hashlib.sha256(f"{seed}\0{cls}\0{name}".encode("utf-8", "surrogatepass")).digest()


def split_files(files_by_class: dict[str, list[str]], *, test_fraction: float = 0.2,
                seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """Deterministic stratified split: {class: {"train": [...], "test": [...]}}.

    Per class, files are ordered by sha256(seed, class, base name) and the first
    round(n * test_fraction) (halves round up) go to test. Only the class's own
    files matter, so adding files to other classes never changes its split.
    Entries keep the form given (names or paths); each list is sorted.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    out = {}
    for cls, files in files_by_class.items():
        ranked = sorted(files, key=lambda f: (_rank(seed, cls, os.path.basename(f)), f))
        n_test = int(math.floor(len(ranked) * test_fraction + 0.5))
        out[cls] = {"train": sorted(ranked[n_test:]), "test": sorted(ranked[:n_test])}
    return out


def _image_files(folder: str, extensions: Sequence[str]) -> list[str]:
    exts = tuple(e.lower() for e in extensions)
    return sorted(n for n in os.listdir(folder)
                  if not n.startswith(".") and n.lower().endswith(exts)
                  and os.path.isfile(os.path.join(folder, n)))


def _to_gray(im: Image.Image) -> Image.Image:
    # Transparent pixels become white paper: sketches saved with an alpha
    # background are dark ink on "nothing".
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        paper = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(paper, im)
    return im.convert("L")


def _check_size(size) -> Optional[tuple[int, int]]:
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    return hw


def load_image(path: PathLike, *, ink: str = "auto",
               size: Union[int, tuple[int, int], None] = None) -> np.ndarray:
    """One image file -> uint8 (H, W), ink 255 on 0. Raises SketchDataError.

    ink: "dark" = dark ink on light paper (inverted), "light" = already light on
    dark, "auto" = invert when render.light_page says so (the rule serving uses). size: an int for a
    square or (height, width); resized with PIL's antialiasing (Lanczos) filter.
    """
    if ink not in INKS:
        raise ValueError(f"ink must be one of {INKS}, got {ink!r}")
    hw = _check_size(size)
    path = os.fspath(path)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as im:
            # Checked before decoding: PIL only warns between 1x and 2x its limit.
            if limit is not None and im.width * im.height > limit:
                raise SketchDataError(path, None, f"{im.width}x{im.height} image is over the "
                                                  f"{limit}-pixel limit (decompression bomb?)")
            gray = _to_gray(im)
            if hw is not None:
                gray = gray.resize((hw[1], hw[0]), Image.Resampling.LANCZOS)
            a = np.asarray(gray, dtype=np.uint8)
    except SketchDataError:
        raise
    # PIL plugins signal corrupt data with assorted types (UnidentifiedImageError,
    # OSError for truncation, SyntaxError, struct.error, DecompressionBombError ...).
    except Exception as e:  # noqa: BLE001
        raise SketchDataError(path, None, f"unreadable image: {type(e).__name__}: {e}") from None
    if a.ndim != 2 or a.size == 0:
        raise SketchDataError(path, None, f"empty image {a.shape}")
    if ink == "auto":
        from sketchtf.data.render import light_page  # TF only for this call: readers stay light
        ink = "dark" if bool(light_page(a)) else "light"
    if ink == "dark":
        a = 255 - a
    return np.ascontiguousarray(a)


def read_image_folder(root: PathLike, *, split: str = "train", test_fraction: float = 0.2,
                      seed: int = 0, ink: str = "auto",
                      size: Union[int, tuple[int, int], None] = None,
                      extensions: Sequence[str] = (".png", ".jpg", ".jpeg"),
                      classes: Optional[Iterable[str]] = None, skip_bad: bool = False,
                      skipped: Optional[SkipCounter] = None) -> Iterator[Sketch]:
    """Streams root/<class>/<file> images as records (label = folder name,
    id = "<class>/<file name>"), class by class in sorted order.

    split: "train", "test" or "all" of split_files(test_fraction, seed).
    classes: only these folders (a missing one is an error). An unreadable,
    corrupt or oversized (Image.MAX_IMAGE_PIXELS) image is one bad record.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if ink not in INKS:
        raise ValueError(f"ink must be one of {INKS}, got {ink!r}")
    _check_size(size)
    root = os.fspath(root)
    names = list_classes(root)
    if classes is not None:
        missing = sorted(set(classes) - set(names))
        if missing:
            raise SketchDataError(root, None, f"no folder for classes {missing}")
        names = sorted(set(classes))
    files = {c: _image_files(os.path.join(root, c), extensions) for c in names}
    parts = split_files(files, test_fraction=test_fraction, seed=seed)
    for cls in names:
        chosen = files[cls] if split == "all" else parts[cls][split]
        for name in chosen:
            try:
                img = load_image(os.path.join(root, cls, name), ink=ink, size=size)
            except SketchDataError as err:
                handle_bad(err, skip_bad, skipped)
                continue
            yield Sketch(label=cls, id=f"{cls}/{name}", image=img)
