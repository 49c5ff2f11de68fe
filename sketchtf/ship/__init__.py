"""Shipping: SavedModel export for TF Serving, TFLite quantization and its runner, ship
gates, packed binary models on the C++ ops, the local REST server, its client and page."""
