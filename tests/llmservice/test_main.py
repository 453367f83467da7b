"""`python -m harness.llmservice`: a bad option is one line naming it and exit 2, before anything starts."""

from __future__ import annotations

import pytest

from harness.llmservice.__main__ import main


@pytest.mark.parametrize("argv, shown", [
    (["--port", "70000"], "port=70000: must be from 0 to 65535"),
    (["--port", "0", "--max-model-len", "4096", "--kv-cache-tokens", "1024"], "kv_cache_tokens=1024: below max_model_len=4096"),
    (["--port", "0", "--block-size", "0"], "block_size=0: must be at least 1"),
])
def test_a_bad_option_is_one_line_naming_it(argv, shown, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m harness.llmservice: error: {shown}") and err.count("\n") == 1
