"""Training: the loop (trainer), callbacks, optimizers, tf.distribute strategies and the
local launcher, distillation (Distiller) and frozen-feature heads."""
