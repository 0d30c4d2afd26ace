"""Call analytics on top of the encoder: clustering and rule-based pre-labeling of calls
(:mod:`.prelabel`, :mod:`.rules`) and the explainable call report (:mod:`.report`)."""
