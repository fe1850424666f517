"""Accelerated Thurstonian fitting in torch (any device; sharded edges for data-parallel fits). No Ray here:
the Ray Train wrapper lives in `uetool.runtime.train_fit`."""
