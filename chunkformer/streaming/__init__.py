"""Live recognition: audio fed in pieces as it arrives (:mod:`chunkformer.streaming.stream`)."""
