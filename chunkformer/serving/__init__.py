"""Serving live recognition over the network (:mod:`chunkformer.serving.server`)."""
