"""The reference inference service (Open Inference Protocol v2), run as its own process."""
