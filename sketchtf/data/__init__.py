"""Sketch data: readers -> Sketch records -> tf.data (render, augment)."""
