"""Live recognition: audio fed in pieces as it arrives. One stream
(:mod:`chunkformer.streaming.stream`, ``model.stream``) or many encoded together, one chunk of
each per forward (:mod:`chunkformer.streaming.group`)."""
