"""Help texts show every default (rich markup would swallow a "[default: ...]" in a help)."""

import pytest
from typer.testing import CliRunner

from prunesearch.cli.app import app


@pytest.mark.parametrize("command", ["find", "compare", "fidelity", "train-arch", "family"])
def test_help_keeps_the_defaults_it_names(command):
    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "(default: search_spaces/default.yaml)" in res.output
    assert " ." not in res.output.replace("...", "")  # a swallowed "[...]" leaves "text ."
