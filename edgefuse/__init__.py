"""edgefuse: edge multimodal sensor fusion — train compact fused models, deploy them, run them on live streams."""

__version__ = "0.1.0"
