"""TFDS builders over local sketch files, so `tfds.load` users get the records
the sketchtf readers give.

Importing this module registers three datasets (nothing is downloaded; each
reads a manual dir you fill, e.g. with sketchtf.data.download):

  sketchtf_quickdraw_ndjson  manual dir of `<class>.ndjson` (simplified or raw),
                             or with `train/` and `test/` subfolders of them
  sketchtf_tu_berlin         TU-Berlin SVGs: `<class>/<id>.svg` (or `svg/<class>/...`)
  sketchtf_tu_berlin_png     TU-Berlin PNGs: `<class>/<id>.png` (or `png/<class>/...`)

    import tensorflow_datasets as tfds
    import sketchtf.data.tfds_builders  # registers
    ds = tfds.load("sketchtf_quickdraw_ndjson", split="train", data_dir="/data/tfds",
                   download_and_prepare_kwargs={"download_config":
                       tfds.download.DownloadConfig(manual_dir="/data/quickdraw")})

Stroke features (lossless; the renderer's own input form):
  points      float32 [N, 2]  all points of the sketch, strokes concatenated in drawing order
  stroke_ids  int32 [N]       stroke index 0..S-1 of each point (non-decreasing, no gaps)
  times       float32 [N]     ms since the first point (Quick Draw raw), else empty [0]
  label       ClassLabel      names = the classes found in the manual dir (sorted)
  id          Text            the reader's record id (key_id, or "<class>/<file>")
`ragged_strokes(example)` gives [S, None, 2] in-graph and `example_to_sketch`
the `Sketch` back.

Splits: `train`/`test` subfolders are used as they are; otherwise (and always
for TU-Berlin, which has no official split) a deterministic stratified split:
per class, ids ranked by sha256(seed, class, id), the first
round(n * test_fraction) go to `test` (sketchtf.data.image_folder.split_files),
so a class's split depends only on its own records.

Class names are fixed when the data is prepared: preparing another manual dir
with the same config needs another `data_dir` (or a config of another name).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

from sketchtf.data.records import SkipCounter, Sketch, SketchDataError

log = logging.getLogger(__name__)

NDJSON_NAME = "sketchtf_quickdraw_ndjson"
TUBERLIN_NAME = "sketchtf_tu_berlin"
TUBERLIN_PNG_NAME = "sketchtf_tu_berlin_png"
NAMES = (NDJSON_NAME, TUBERLIN_NAME, TUBERLIN_PNG_NAME)


# ----------------------------------------------------------------------------- record <-> example

def _stroke_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "points": tfds.features.Tensor(shape=(None, 2), dtype=np.float32),
        "stroke_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "times": tfds.features.Tensor(shape=(None,), dtype=np.float32),
        # No names yet: they come from the manual dir in _split_generators.
        "label": tfds.features.ClassLabel(),
        "id": tfds.features.Text(),
    })


def sketch_to_example(s: Sketch) -> dict:
    """Sketch with strokes -> the feature dict above (label as its name)."""
    points = np.concatenate([np.asarray(k, np.float32).reshape(-1, 2) for k in s.strokes])
    ids = np.concatenate([np.full(len(k), i, np.int32) for i, k in enumerate(s.strokes)])
    times = (np.concatenate([np.asarray(t, np.float32) for t in s.times]) if s.times
             else np.zeros((0,), np.float32))
    return {"points": points, "stroke_ids": ids, "times": times, "label": s.label, "id": s.id}


def example_to_sketch(ex: dict, label_names=None) -> Sketch:
    """A numpy example (tfds.as_numpy) -> Sketch; the exact inverse of sketch_to_example.

    label_names: the ClassLabel names (builder.info.features["label"].names);
    without them the label stays the integer's string.
    """
    ids = np.asarray(ex["stroke_ids"])
    cuts = np.flatnonzero(np.diff(ids)) + 1
    strokes = np.split(np.asarray(ex["points"], np.float32), cuts)
    times = np.asarray(ex["times"], np.float32)
    label = int(ex["label"])
    rid = ex["id"].decode() if isinstance(ex["id"], bytes) else str(ex["id"])
    return Sketch(label=label_names[label] if label_names is not None else str(label), id=rid,
                  strokes=list(strokes), times=list(np.split(times, cuts)) if times.size else None)


def ragged_strokes(example: dict):
    """In-graph: example -> tf.RaggedTensor [S, None, 2] of the strokes."""
    import tensorflow as tf
    return tf.RaggedTensor.from_value_rowids(example["points"],
                                             tf.cast(example["stroke_ids"], tf.int64))


def _unit_examples(units, opts: dict, split: str, to_example, names):
    """The examples of `split` from sketchtf.prepare work units (one file, a
    byte range of a big file, or a class folder each), split by the one rule
    of shards.assign_split. With apache-beam installed this is a Beam
    PTransform, so `tfds build` runs on any Beam runner
    (--beam_pipeline_options="runner=DataflowRunner,..."); else a generator."""
    fn = functools.partial(_examples_of_unit, opts=opts, split=split, to_example=to_example,
                           names=frozenset(names))
    try:
        import apache_beam as beam
    except ImportError:
        return (kv for u in units for kv in fn(u))
    return beam.Create(units) | beam.FlatMap(fn)


def _examples_of_unit(unit, *, opts, split, to_example, names):
    from sketchtf.data import prepare
    skipped = SkipCounter()
    for s_split, s in prepare.split_sketches(unit, opts, skipped):
        if s.label not in names:
            # readers label by `word`; a file whose words are not its own name
            # would otherwise get a label outside the ClassLabel.
            raise SketchDataError(unit.path, s.id, f"word {s.label!r} is not one of the class files {sorted(names)}")
        if s_split == split:
            yield f"{s.label}/{s.id}", to_example(s)
    _report(skipped, f"{unit.path} ({split})")


def _report(skipped: Optional[SkipCounter], what: str) -> None:
    if skipped is not None and len(skipped):
        log.warning("%s: %s", what, skipped.report())


# ----------------------------------------------------------------------------- Quick Draw ndjson

@dataclasses.dataclass(eq=False)
class QuickDrawNdjsonConfig(tfds.core.BuilderConfig):
    """classes: a subset (Google's spelling), default all files; the other
    fields are the reader's and the split's (sketchtf.prepare options: a
    hash of key_id; `valid` is carved from train when valid_fraction > 0)."""
    classes: Optional[tuple] = None
    recognized_only: bool = False
    with_times: bool = True
    test_fraction: float = 0.2
    valid_fraction: float = 0.0
    seed: int = 0
    skip_bad: bool = False


def _plan(source, root, classes, cfg, **extra):
    """prepare's work units and options for a builder config."""
    from sketchtf.config import data_config
    from sketchtf.data import prepare
    dc = data_config(source=source, path=str(root), classes=tuple(classes), split_seed=cfg.seed,
                     test_fraction=cfg.test_fraction, valid_fraction=getattr(cfg, "valid_fraction", 0.0),
                     skip_bad=cfg.skip_bad, **extra)
    units, _ = prepare.plan(dc)
    return units, prepare.options(dc)


def _split_names(cfg):
    splits = ["train", "test"]
    return splits + ["valid"] if getattr(cfg, "valid_fraction", 0.0) > 0 else splits


class QuickDrawNdjson(tfds.core.GeneratorBasedBuilder):
    """Quick, Draw! ndjson strokes from a local folder (all 345 classes: ~50M
    drawings; build it on a Beam runner, see docs/scale.md)."""

    name = NDJSON_NAME
    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "Points + stroke ids from local ndjson files.",
                     "2.0.0": "Split by a hash of key_id (stable when files are added); Beam."}
    BUILDER_CONFIGS = [QuickDrawNdjsonConfig(name="default",
                                             description="all classes in the manual dir")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put Google Quick Draw `<class>.ndjson` files (simplified or raw) in the manual
    dir, or `train/` and `test/` subfolders of them. To fetch classes:
      python -m sketchtf.data.download --dataset=quickdraw --classes=cat,dog --cache_dir=DIR
    then use DIR/quickdraw/simplified as the manual dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__, features=_stroke_features(),
            homepage="https://github.com/googlecreativelab/quickdraw-dataset",
            citation="Quick, Draw! data set, Google, CC BY 4.0")

    def _split_generators(self, dl_manager):
        from sketchtf.data.quickdraw import list_ndjson_classes
        root = dl_manager.manual_dir
        cfg = self.builder_config
        dirs = [root / s for s in ("train", "test") if (root / s).is_dir()]
        found = sorted(set().union(*(list_ndjson_classes(d) for d in (dirs or [root]))))
        if not found:
            raise SketchDataError(root, None, "no <class>.ndjson files here (nor in train/, test/)")
        classes = sorted(set(cfg.classes)) if cfg.classes else found
        missing = sorted(set(classes) - set(found))
        if missing:
            raise SketchDataError(root, None, f"no ndjson file for classes {missing}")
        self.info.features["label"].names = classes
        # A split folder may lack a class (e.g. no test drawings of it): plan per file present.
        present = [c for c in classes if any((d / f"{c}.ndjson").is_file() for d in (dirs or [root]))]
        units, opts = _plan("quickdraw_ndjson", root, present, cfg, recognized_only=cfg.recognized_only,
                            keep_times=cfg.with_times)
        return {s: self._generate_examples(units, opts, s, classes) for s in _split_names(cfg)}

    def _generate_examples(self, units, opts, split, names):
        return _unit_examples(units, opts, split, sketch_to_example, names)


# ----------------------------------------------------------------------------- TU-Berlin

def _class_root(manual_dir, sub: str):
    """The folder of <class>/ subfolders: the manual dir, or its `svg/` / `png/`
    (the layout the project's zip files extract to)."""
    return manual_dir / sub if (manual_dir / sub).is_dir() else manual_dir


def _files_by_class(root, suffix: str, classes) -> dict:
    from sketchtf.data.image_folder import list_classes
    found = list_classes(root)
    if classes:
        missing = sorted(set(classes) - set(found))
        if missing:
            raise SketchDataError(root, None, f"no folder for classes {missing}")
        found = sorted(set(classes))
    files = {c: sorted(n for n in os.listdir(root / c) if n.lower().endswith(suffix)
                       and not n.startswith(".")) for c in found}
    files = {c: f for c, f in files.items() if f}
    if not files:
        raise SketchDataError(root, None, f"no <class>/*{suffix} files here")
    return files


@dataclasses.dataclass(eq=False)
class TuBerlinConfig(tfds.core.BuilderConfig):
    """classes: a subset (folder names), default all; samples_per_curve: points
    per Bezier segment when flattening (read_tuberlin_svg); split as above."""
    classes: Optional[tuple] = None
    samples_per_curve: int = 8
    test_fraction: float = 0.2
    seed: int = 0
    skip_bad: bool = False


class TuBerlinSvg(tfds.core.GeneratorBasedBuilder):
    """TU-Berlin sketches (Eitz et al. 2012) as strokes, from local SVG files."""

    name = TUBERLIN_NAME
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Points + stroke ids from local TU-Berlin SVGs."}
    BUILDER_CONFIGS = [TuBerlinConfig(name="default", description="all classes in the manual dir")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put the TU-Berlin SVGs in the manual dir as `<class>/<id>.svg` (or the
    extracted `svg/` folder of sketches_svg.zip). To fetch them:
      python -m sketchtf.data.download --dataset=tu_berlin --kind=svg --cache_dir=DIR
    then use DIR/tu_berlin/svg as the manual dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__, features=_stroke_features(),
            homepage="http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/",
            citation="Eitz, Hays, Alexa. How Do Humans Sketch Objects? SIGGRAPH 2012")

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        root = _class_root(dl_manager.manual_dir, "svg")
        names = sorted(_files_by_class(root, ".svg", cfg.classes))  # also checks there is something
        self.info.features["label"].names = names
        units, opts = _plan("tuberlin_svg", root, names, cfg, samples_per_curve=cfg.samples_per_curve)
        return {s: self._generate_examples(units, opts, s, names) for s in ("train", "test")}

    def _generate_examples(self, units, opts, split, names):
        return _unit_examples(units, opts, split, sketch_to_example, names)


@dataclasses.dataclass(eq=False)
class TuBerlinPngConfig(tfds.core.BuilderConfig):
    """classes: a subset (folder names), default all; size: resize to size x size
    (the originals are 1111 x 1111; Sketch-A-Net uses 256); split as above."""
    classes: Optional[tuple] = None
    size: Optional[int] = None
    test_fraction: float = 0.2
    seed: int = 0
    skip_bad: bool = False


class TuBerlinPng(tfds.core.GeneratorBasedBuilder):
    """TU-Berlin sketches as images (uint8, ink 255 on 0), from local PNG files."""

    name = TUBERLIN_PNG_NAME
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Images from local TU-Berlin PNGs, ink 255 on 0."}
    BUILDER_CONFIGS = [TuBerlinPngConfig(name="default", description="original size"),
                       TuBerlinPngConfig(name="256", size=256, description="resized to 256x256")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put the TU-Berlin PNGs in the manual dir as `<class>/<id>.png` (or the
    extracted `png/` folder of sketches_png.zip). To fetch them:
      python -m sketchtf.data.download --dataset=tu_berlin --kind=png --cache_dir=DIR
    then use DIR/tu_berlin/png as the manual dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        side = self.builder_config.size
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(side, side, 1), dtype=np.uint8,
                                             encoding_format="png"),
                "label": tfds.features.ClassLabel(),
                "id": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
            homepage="http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/",
            citation="Eitz, Hays, Alexa. How Do Humans Sketch Objects? SIGGRAPH 2012")

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        root = _class_root(dl_manager.manual_dir, "png")
        files = _files_by_class(root, ".png", cfg.classes)  # also checks there is something
        self.info.features["label"].names = sorted(files)
        return {s: self._generate_examples(root, sorted(files), s) for s in ("train", "test")}

    def _generate_examples(self, root, classes, split):
        from sketchtf.data.tuberlin import read_tuberlin_png
        cfg = self.builder_config
        skipped = SkipCounter() if cfg.skip_bad else None
        for s in read_tuberlin_png(root, split=split, test_fraction=cfg.test_fraction,
                                   seed=cfg.seed, size=cfg.size, classes=classes,
                                   skip_bad=cfg.skip_bad, skipped=skipped):
            yield s.id, {"image": s.image[..., None], "label": s.label, "id": s.id}
        _report(skipped, f"TU-Berlin PNG {split}")
