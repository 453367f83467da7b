"""Chaos experiments: Chaos Toolkit activities for the local platform, the chaos runner and matrix."""
