"""Root conftest: loads the harness pytest plugin (options, markers, fixtures for scenarios).

An installed package registers the plugin itself (the ``pytest11`` entry point named
``harness.pytest_plugin``); this line covers a checkout that is not installed and runs with
``PYTEST_DISABLE_PLUGIN_AUTOLOAD``. Under the same name, pytest registers it once either way.
"""

pytest_plugins = ["harness.pytest_plugin"]
