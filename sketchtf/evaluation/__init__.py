"""Evaluation: the one metrics module, reports and figures, scoring a model on a split
(10-view vote too), per-model cost profiles and the rendering gallery."""
