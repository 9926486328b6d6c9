import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch

import prunesearch as ps
from prunesearch.data.datasets import load_dataset
from prunesearch.errors import PrunesearchError
from prunesearch.find import studies
from prunesearch.find.objectives import Feed, InheritScorer
from prunesearch.find.studies import (
    HOST,
    claim_export,
    counts,
    mark_exported,
    open_study,
    recover_stale,
    redact,
    run_trials,
    storage_for,
)

from .. import claim_worker

TrialState = optuna.trial.TrialState


def test_failing_trials_do_not_count_and_the_study_goes_on(tmp_path):
    storage, _ = storage_for(None, tmp_path)
    study, created = open_study(storage, "s", seed=0, n_startup=2)
    assert created and not open_study(storage, "s", seed=0, n_startup=2)[1]
    calls = []

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        calls.append(x)
        if len(calls) % 3 == 0:
            raise PrunesearchError("candidate diverged: validation loss is nan")
        return x

    run_trials(study, objective, 5)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 5
    assert states.count(TrialState.FAIL) == 2
    assert counts(study) == (5, 5)


def test_stale_trial_of_a_dead_worker_is_failed_and_retried(tmp_path):
    storage, _ = storage_for(f"journal:{tmp_path / 'j.log'}", tmp_path)
    study, _ = open_study(storage, "s", seed=0, n_startup=1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr("host", HOST)
    trial.set_user_attr("pid", dead.pid)
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    alive.set_user_attr("host", HOST)
    alive.set_user_attr("pid", os.getpid())
    assert recover_stale(study) == 1
    trials = study.trials
    assert trials[trial.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    retry = [t for t in trials if t.user_attrs.get("retry_of") == trial.number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].system_attrs["fixed_params"] == trials[trial.number].params


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_exactly_one_worker_claims_the_export(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal:{tmp_path / 's.log'}"
    storage, _ = storage_for(url, tmp_path)
    study, _ = open_study(storage, "s", seed=0, n_startup=1)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=claim_worker.claim, args=(url, str(tmp_path / f"w{k}"), queue))
        for k in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = sorted(queue.get(timeout=5) for _ in procs)
    assert results == [False, False, True]
    # tokens never count as trials
    assert counts(study) == (0, 0)


def test_claim_after_export(tmp_path):
    storage, _ = storage_for(None, tmp_path)
    study, _ = open_study(storage, "s", seed=0, n_startup=1)
    assert claim_export(study, tmp_path, "f1")
    mark_exported(study, tmp_path, "f1")
    (tmp_path / "family.json").write_text("{}")
    assert not claim_export(study, tmp_path, "f1")  # nothing new
    assert not claim_export(study, tmp_path / "elsewhere", "f1")
    (tmp_path / "family.json").unlink()
    assert claim_export(study, tmp_path, "f1")  # its files were removed: export again
    assert claim_export(study, tmp_path / "elsewhere", "f2")  # something new to export


def test_diverged_candidate_raises():
    data = load_dataset("synthetic", "train", train_size=64)
    model = ps.create_model("resnet20", num_classes=4, in_channels=3)
    with torch.no_grad():
        model.conv1.weight.fill_(float("nan"))
    graph = ps.trace(model, torch.zeros(1, 3, 16, 16))
    scorer = InheritScorer(
        graph,
        data,
        data,
        importance="l1",
        calib_batches=1,
        feed=Feed(32, 64, torch.device("cpu")),
    )
    with pytest.raises(PrunesearchError, match="candidate diverged"):
        scorer.score(graph.base_widths)


def test_claim_reopens_when_a_live_winner_never_marks_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(studies, "WAIT_NOTICE_S", 0.1)
    storage, _ = storage_for(None, tmp_path)
    study, _ = open_study(storage, "s", seed=0, n_startup=1)
    assert claim_export(study, tmp_path / "a", "f1")  # ... and dies without marking
    with caplog.at_level(logging.INFO, logger="prunesearch"):
        assert claim_export(study, tmp_path / "b", "f1", poll_s=0.05, patience_s=0.5)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert said == [
        "waiting for another worker to finish writing the specs (claimed as trial "
        f"0 by {HOST} pid {os.getpid()}; taken over when it is gone, or after 0 s)"
    ]
    # said once, though it polled about ten times


def test_a_wait_for_other_workers_says_what_it_waits_for_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(studies, "WAIT_NOTICE_S", 0.1)
    storage, _ = storage_for(f"journal:{tmp_path / 'j.log'}", tmp_path)
    study, _ = open_study(storage, "s", seed=0, n_startup=1)
    other = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    other.set_user_attr("host", HOST)
    other.set_user_attr("pid", os.getpid())  # alive: not stale
    finisher = threading.Timer(0.6, lambda: study.tell(other, 0.5))
    finisher.start()
    with caplog.at_level(logging.INFO, logger="prunesearch"):
        run_trials(study, lambda t: 0.0, n_trials=1, poll_s=0.05)
    finisher.join()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert said == [
        f"waiting for 1 trial(s) running in other workers to finish: 0 ({HOST} pid {os.getpid()})"
    ]
    assert len(study.trials) == 1  # it waited instead of running a surplus trial


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ann:s3cret@db.lan:5432/ps", "postgresql://ann:***@db.lan:5432/ps"),
        (
            "postgresql://ann@db.lan/ps?password=s3cret&sslmode=require",
            "postgresql://ann@db.lan/ps?password=redacted&sslmode=require",
        ),
        (
            "postgresql://db.lan/ps?sslpassword=s3cret&application_name=a",
            "postgresql://db.lan/ps?application_name=a&sslpassword=redacted",
        ),
        ("mysql+pymysql://ann:s3%40cret@db.lan/ps", "mysql+pymysql://ann:***@db.lan/ps"),
        ("sqlite:////tmp/run/study.db", "sqlite:////tmp/run/study.db"),
        ("journal:/tmp/run/study.log", "journal:/tmp/run/study.log"),
    ],
)
def test_storage_urls_are_shown_without_their_secrets(url, shown):
    assert redact(url) == shown
    assert "s3" not in redact(url).replace("sqlite", "")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_whose_worker_died_before_naming_itself_is_retried(tmp_path, monkeypatch, kind):
    """A worker killed between Optuna's write that starts a trial and ours that names its
    host and pid leaves a RUNNING trial with no owner: after the grace period it is failed and
    its fixed parameters run again, instead of every worker waiting for it forever."""
    monkeypatch.setattr(studies, "GRACE_S", 1)
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal:{tmp_path / 's.log'}"
    storage, _ = storage_for(url, tmp_path)
    study, _ = open_study(storage, "s", seed=0, n_startup=1)
    study.enqueue_trial({"x": 0.25})
    proc = multiprocessing.get_context("spawn").Process(
        target=claim_worker.start_trial_and_die, args=(url,)
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    [orphan] = study.get_trials(states=(TrialState.RUNNING,))
    assert "pid" not in orphan.user_attrs
    seen = []

    def objective(trial):
        seen.append(trial.suggest_float("x", 0, 1))
        return seen[-1]

    done = threading.Event()
    runner = threading.Thread(
        target=lambda: (run_trials(study, objective, 2, poll_s=0.05), done.set()), daemon=True
    )
    runner.start()
    runner.join(30)
    assert done.is_set(), "the search waited for the ownerless trial"
    assert 0.25 in seen and len(seen) == 2  # the enqueued parameters ran again
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 2 and states.count(TrialState.FAIL) == 1


def test_a_young_ownerless_trial_is_left_alone(tmp_path):
    storage, _ = storage_for(None, tmp_path)
    study, _ = open_study(storage, "s", seed=0, n_startup=1)
    study.ask()  # just started: its worker is about to name itself
    assert recover_stale(study) == 0


def test_a_dead_claimers_export_is_taken_over_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage, _ = storage_for(url, tmp_path)
    study, _ = open_study(storage, "s", seed=0, n_startup=1)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=claim_worker.claim, args=(url, str(tmp_path / "a"), queue, False))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9  # it won the claim and died without exporting
    started = time.monotonic()
    assert claim_export(study, tmp_path / "b", "f1", poll_s=0.05, patience_s=300)
    assert time.monotonic() - started < 10  # not the 300 s patience


def test_workers_opening_a_new_database_at_the_same_instant_all_succeed(tmp_path):
    """Workers started together on an empty SQLite file race to create its tables (one used
    to exit with 'UNIQUE constraint failed: alembic_version' in 1-5 launches of 10)."""
    pairs = 8  # without the retry, about 19 pairs of 20 failed here
    barriers = [threading.Barrier(2) for _ in range(pairs)]
    errors: list[str] = []

    def worker(k: int) -> None:
        url = f"sqlite:///{tmp_path / f'{k // 2}.db'}"
        barriers[k // 2].wait()
        try:
            storage_for(url, tmp_path)
        except PrunesearchError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2 * pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []


def test_a_database_server_that_never_answers_is_an_error_not_a_hang(monkeypatch):
    """A listener that accepts the TCP connection and never says a word (a hung server, a
    firewall that swallows packets): the connect timeout ends the wait with an error."""
    pytest.importorskip("psycopg")
    monkeypatch.setattr(studies, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(
            PrunesearchError,
            match=r"cannot open storage postgresql://ann:\*\*\*"
            r"@127\.0\.0\.1.*no answer within 1 s",
        ):
            storage_for(f"postgresql://ann:pw@127.0.0.1:{port}/ps", Path("."))
        assert time.monotonic() - started < 30
