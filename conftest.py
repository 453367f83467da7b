"""Root conftest: loads the harness pytest plugin (options, markers, fixtures for scenarios)."""

pytest_plugins = ["harness.pytest_plugin"]
