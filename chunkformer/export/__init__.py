"""Export for production runtimes: ONNX graphs (:mod:`chunkformer.export.onnx`) and the code
that decodes with them (:mod:`chunkformer.export.runtime`)."""
