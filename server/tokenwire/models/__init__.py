"""Model loading (dtype, quantization, device_map), per-task runners, and the demo-model factory."""
