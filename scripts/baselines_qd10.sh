#!/usr/bin/env bash
# Issue 3 baselines on quickdraw_10class_ndjson (train/ -> test/), CPU-sized:
# 64 px (Sketch-A-Net 96 px, rendered at 108 and cropped), few epochs. Each run
# writes runs/baselines/<model>/{metrics.json,report.md}. docs/results.md quotes
# them, copied by hand; print them as table rows to compare with:
#   python scripts/results_table.py $OUT/sketchnet $OUT/mobilenetv2_s1 ...
# The Sketch-A-Net 10-view row: python -m sketchtf.evaluate --workdir=$OUT/sketchanet --ten_view
set -euo pipefail
EPOCHS=${EPOCHS:-3}
OUT=${OUT:-runs/baselines}
for exp in sketchnet mobilenetv2_s1 mobilenetv2 mobilenetv2_s2; do
  python -m sketchtf.train --config=configs/${exp}_qd10.py --workdir=$OUT/$exp \
    --config.data.image_size=64 --config.train.epochs=$EPOCHS --config.train.verbose=2
done
python -m sketchtf.train --config=configs/sketchanet_qd10.py --workdir=$OUT/sketchanet \
  --config.data.image_size=96 --config.data.render_size=108 --config.train.epochs=$EPOCHS \
  --config.train.batch_size=54 --config.train.verbose=2
