"""The one Predictor every way of using a model goes through (photos, videos, the web demo, the
webcam), and what is built on it: scoring a dataset, class activation maps, calibration, the
evaluation report, ONNX export."""
