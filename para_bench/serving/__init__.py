"""Policies anywhere: openpi's websocket policy protocol, both ways.

* :mod:`~para_bench.serving.codec` -- the wire codec (msgpack, numpy arrays as
  ``__ndarray__`` maps), byte-compatible with ``openpi_client.msgpack_numpy``.
* :mod:`~para_bench.serving.server` -- ``para-bench serve``: any agent behind the protocol,
  one agent per connection sharing one loaded model, requests from all connections batched
  (:mod:`~para_bench.serving.batching`).
* :mod:`~para_bench.serving.client` -- the synchronous client used by ``--agent remote``
  (:mod:`para_bench.agents.remote`).
* :mod:`~para_bench.serving.para_format` and :mod:`~para_bench.serving.libero_format` -- what
  travels in the observation and action dicts: para-bench's own keys, or openpi's LIBERO
  convention.
"""
