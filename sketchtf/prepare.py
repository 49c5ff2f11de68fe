"""Prepare any sketch source once into sharded records + manifest.json.

  python -m sketchtf.prepare --config=configs/sketchnet_qd345.py --out=data/qd345
  python -m sketchtf.prepare --config=... --out=DIR --engine=beam [-- --runner=... beam flags]
  python -m sketchtf.prepare --verify=DIR          # every shard's size, sha256 and records

The config's `data` section names the source and reader options (the same
fields training uses). Train from the result with
--config.data.source=shards --config.data.path=DIR (configs/sketchnet_qd345.py
does). The local engine and Beam give byte-equal shards and manifests.
"""
from absl import app, flags
from ml_collections import config_flags

from sketchtf import console

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).")
_OUT = flags.DEFINE_string("out", None, "Output folder for the shards and manifest.json.")
_ENGINE = flags.DEFINE_enum("engine", "local", ["local", "beam"], "local: multiprocessing; beam: Apache Beam.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Processes of the local engine.")
_SHARDS = flags.DEFINE_integer("train_shards", 0, "Train shards (0: about one per 256 MB of source).")
_CHUNK_MB = flags.DEFINE_integer("chunk_mb", 64, "Big ndjson files are read in byte ranges of this size.")
_VERIFY = flags.DEFINE_string("verify", None, "Check a prepared folder against its manifest and exit.")


def _summary(manifest) -> str:
    lines = [f"{manifest['kind']}, {len(manifest['vocabulary'])} classes"]
    for split, s in manifest["splits"].items():
        size = sum(sh["bytes"] for sh in s["shards"])
        lines.append(f"  {split:5s} {s['records']:>10,d} records  {len(s['shards'])} shards  {size / 1e6:,.1f} MB")
    sk = manifest["skipped"]
    lines.append(f"  {sk['errors']} bad records skipped" + "".join(f"\n    {e}" for e in sk["first_errors"]))
    lines += [f"  {n} left out ({why})" for why, n in sorted(sk["filtered"].items())]
    return "\n".join(lines)


def main(argv):
    from sketchtf.data import shards
    if _VERIFY.value:
        manifest = shards.read_manifest(_VERIFY.value)
        for split in manifest["splits"]:
            paths = shards.split_files(_VERIFY.value, manifest, split, verify="sha256")
            err = shards.locate_corruption(paths)
            if err:
                raise SystemExit(f"error: {err}")
        print(f"{_VERIFY.value}: every shard matches manifest.json\n{_summary(manifest)}")
        return
    if not _CONFIG.value or not _OUT.value:
        raise app.UsageError("--config and --out are required (or --verify=DIR)")
    kwargs = dict(chunk_bytes=_CHUNK_MB.value << 20, train_shards=_SHARDS.value)
    if _ENGINE.value == "beam":
        from sketchtf.data.beam_prepare import run_beam
        manifest = run_beam(_CONFIG.value.data, _OUT.value, pipeline_args=argv[1:], **kwargs)
    else:
        from sketchtf.data.prepare import run_local
        manifest = run_local(_CONFIG.value.data, _OUT.value, workers=_WORKERS.value, **kwargs)
    print(f"{_OUT.value}: {_summary(manifest)}")


def run():
    console.run(main)


if __name__ == "__main__":
    run()
