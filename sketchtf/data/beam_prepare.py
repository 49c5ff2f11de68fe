"""The shard conversion (prepare.py) as an Apache Beam pipeline.

    units -> FlatMap(unit_records) -> GroupByKey((split, shard)) -> write_shard
                  \\-> stats (tagged output)

then the driver writes manifest.json with prepare.finish, so the output equals
the local engine's byte for byte. DirectRunner runs it on this machine; pass
runner flags for a cluster (the output folder must then be shared storage the
workers can write, e.g. gs://):

    python -m sketchtf.prepare --config=configs/sketchnet_qd345.py --out=gs://b/qd345 --engine=beam \\
        -- --runner=DataflowRunner --project=P --region=R --temp_location=gs://b/tmp \\
           --requirements_file=requirements.txt
    ... --engine=beam -- --runner=FlinkRunner --flink_master=host:8081 --environment_type=LOOPBACK
    ... --engine=beam -- --runner=SparkRunner --spark_master_url=spark://host:7077

apache-beam is the optional `[beam]` extra: `pip install "sketchtf[beam]"`.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

from sketchtf.data import prepare


def _require_beam():
    try:
        import apache_beam as beam  # noqa: F401
    except ImportError:
        raise ImportError("the Beam engine needs apache-beam: pip install 'sketchtf[beam]' "
                          "(or use --engine=local)") from None
    return beam


class _ReadUnit:
    """DoFn body: a unit's records keyed by (split, shard); its stats tagged."""

    def __init__(self, opts, counts):
        self.opts, self.counts = opts, counts

    def __call__(self, unit):
        beam = _require_beam()
        stats: dict = {}
        for split, shard, digest, record in prepare.unit_records(unit, self.opts, self.counts, stats):
            yield (split, shard), (digest, record)
        yield beam.pvalue.TaggedOutput("stats", stats)


def _write_group(kv, out_dir, counts):
    (split, shard), items = kv
    return prepare.write_shard(out_dir, split, shard, counts[split], items)


def _dump(items, path):
    import tensorflow as tf
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(list(items), f)


def run_beam(cfg, out_dir: str, *, pipeline_args: Optional[Sequence[str]] = None,
             chunk_bytes: int = prepare.DEFAULT_CHUNK_BYTES, train_shards: int = 0) -> dict:
    """Prepares cfg's source into out_dir on a Beam runner; returns the manifest."""
    beam = _require_beam()
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions
    opts, units, sources, counts = prepare.prepare_outputs(cfg, out_dir, chunk_bytes=chunk_bytes,
                                                           train_shards=train_shards)
    tmp = os.path.join(out_dir, "_beam")
    tf.io.gfile.makedirs(tmp)
    options = PipelineOptions(list(pipeline_args or ["--runner=DirectRunner"]))
    with beam.Pipeline(options=options) as p:
        read = (p | "Units" >> beam.Create(units)
                  | "Read" >> beam.FlatMap(_ReadUnit(opts, counts)).with_outputs("stats", main="records"))
        infos = (read.records
                 | "ByShard" >> beam.GroupByKey()
                 | "Write" >> beam.Map(_write_group, out_dir, counts))
        (infos | "Infos" >> beam.combiners.ToList()
               | "DumpInfos" >> beam.Map(_dump, os.path.join(tmp, "infos.json")))
        (read.stats | "Stats" >> beam.combiners.ToList()
                    | "DumpStats" >> beam.Map(_dump, os.path.join(tmp, "stats.json")))
    with tf.io.gfile.GFile(os.path.join(tmp, "infos.json")) as f:
        infos = json.load(f)
    with tf.io.gfile.GFile(os.path.join(tmp, "stats.json")) as f:
        stats = prepare.merge_stats(json.load(f))
    tf.io.gfile.rmtree(tmp)
    return prepare.finish(out_dir, opts, counts, sources, infos, stats, opts["classes"] or None)
