"""Distributed search: several `find` processes sharing one study on a real PostgreSQL server.

`bash .ci/run` starts Debian's PostgreSQL on loopback and sets PRUNESEARCH_TEST_POSTGRES (an
admin URL whose role may create databases) and PRUNESEARCH_REQUIRE_POSTGRES=1, so in CI these
tests fail rather than skip when the server is missing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from ..helpers import run_cli, tiny_find_args

TINY = str(Path(__file__).parents[1] / "spaces" / "tiny.yaml")


@pytest.fixture(scope="module")
def pg_url():
    admin = os.environ.get("PRUNESEARCH_TEST_POSTGRES")
    required = os.environ.get("PRUNESEARCH_REQUIRE_POSTGRES") == "1"
    if not admin:
        if required:
            pytest.fail("PRUNESEARCH_REQUIRE_POSTGRES=1 but PRUNESEARCH_TEST_POSTGRES is unset")
        pytest.skip("no PostgreSQL: set PRUNESEARCH_TEST_POSTGRES (bash .ci/run does)")
    import sqlalchemy

    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    name = f"prunesearch_test_{os.getpid()}"
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    except sqlalchemy.exc.OperationalError as exc:
        if required:
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    yield admin.rsplit("/", 1)[0] + "/" + name
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


@pytest.fixture(scope="module")
def base(tiny_base):
    return tiny_base  # trained once per session (conftest.py); only read here


def _find_args(base, url, out, trials, *extra, study="shared") -> list[str]:
    return tiny_find_args(base, out, trials, "--storage", url, "--study", study, "--json", *extra)


def _find(base, url, out, trials, *extra, study="shared"):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prunesearch",
            *_find_args(base, url, out, trials, *extra, study=study),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_workers_share_one_postgresql_study(pg_url, base, tmp_path):
    # two "machines": separate run folders, one study; fine-tuned scoring keeps trials long
    # enough that both workers take part
    procs = [
        _find(base, pg_url, tmp_path / f"worker{k}", 8, "--finetune-steps", "15") for k in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    study = optuna.load_study(study_name="shared:50pct-flops", storage=pg_url)
    trials = [t for t in study.trials if "export_token" not in t.user_attrs]
    done = [
        t
        for t in trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert len(done) == 8
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == 8  # none duplicated
    assert len({t.user_attrs["pid"] for t in done}) == 2  # both workers evaluated trials
    # the specs were written once, by one worker
    assert sorted(r["exported"] for r in results) == [False, True]
    written = [k for k in range(2) if (tmp_path / f"worker{k}" / "family.json").is_file()]
    assert len(written) == 1
    assert [r["exported"] for r in results].index(True) == written[0]
    loser = tmp_path / f"worker{1 - written[0]}"
    assert not list(loser.glob("spec-*.json")) and not (loser / "baselines").exists()
    assert results[0]["members"][0]["trial"] == results[1]["members"][0]["trial"]


def test_rerun_with_more_trials_exports_again(pg_url, base, tmp_path):
    # one process after another on the same PostgreSQL study: run in this process, as the CLI
    # tests run the CLI (the processes above are what needs a server shared between them)
    out = tmp_path / "run"

    def find_json(trials: int) -> dict:
        proc = run_cli(*_find_args(base, pg_url, out, trials, study="rerun"))
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert find_json(3)["exported"] is True
    spec = out / "spec-50pct-flops.json"
    assert spec.is_file()
    assert find_json(3)["exported"] is False  # same command: nothing new to export
    assert find_json(5)["exported"] is True  # more trials: the family is exported again
    assert json.loads(spec.read_text())["search"]["trials"] == 5
