"""Sketch-A-Net with seed C's recipe on quickdraw_10class_ndjson.

Recipe: render 256, random 225 crop, horizontal flip p=0.55, rotation +-5 deg
p=0.55; Adam 1e-3 decayed x0.96 every 1000 steps; batch 54. arg "stroke_order"
uses the 6-channel stroke-order stack; "128" trains at 128 px (render 144) when
CPU time does not allow 225 (the L6 kernel adapts, see sketchtf/models/sketchanet.py).
"""
from sketchtf.config import experiment, quickdraw10, smoke


def get_config(arg=None):
    args = set((arg or "").split(","))
    data = quickdraw10(image_size=225, render_size=256,
                       image_aug=dict(morph_p=0.0, flip_p=0.55, rotate_p=0.55, rotate_deg=5.0),
                       stroke_aug=dict(wobble_sigma_px=1.2, width_px=(3.0, 8.0), rotate_deg=0.0, scale=(1.0, 1.0),
                                       translate=0.0, hflip=0.0))
    c = experiment("sketchanet", data=data, epochs=40, batch_size=54, optimizer="adam", lr=1e-3,
                   schedule="exponential", decay_steps=1000, decay_rate=0.96)
    c.eval.ten_view = True
    if "stroke_order" in args:
        c.data.channels = 6
    if "128" in args:
        c.data.image_size, c.data.render_size = 128, 144
    if "smoke" in args:
        smoke(c, image_size=88)  # Sketch-A-Net needs >= 81 px
        c.data.render_size = 96
    return c
