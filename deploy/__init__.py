"""Deploy: ONNX model bundles, precision variants, TensorRT engines and inference backends."""
