import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

import prunesearch as ps
from prunesearch.engine.budget import project
from prunesearch.find import studies
from prunesearch.find.find import FindOptions, find
from prunesearch.space import load_space

from ..helpers import interruptible, run_cli, tiny_find_args

SPACES = Path(__file__).parents[1] / "spaces"
TINY = str(SPACES / "tiny.yaml")


@pytest.fixture(scope="module")
def base(tiny_base):
    return tiny_base  # trained once per session (conftest.py); only read here


def trials_of(run_dir: Path, budget_slug: str) -> list:
    storage = f"sqlite:///{run_dir / 'study.db'}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    name = next(n for n in names if n.endswith(budget_slug))
    return [
        t
        for t in optuna.load_study(study_name=name, storage=storage).trials
        if "export_token" not in t.user_attrs
    ]  # the export claim's token


def test_family_of_three_budgets(base, tmp_path, caplog):
    result = find(
        load_space(TINY), FindOptions("25%,50%,75%FLOPs", base=str(base), trials=5), out=tmp_path
    )
    assert len(result["members"]) == 3
    family = json.loads((tmp_path / "family.json").read_text())
    assert [m["budget"] for m in family["members"]] == ["25%FLOPs", "50%FLOPs", "75%FLOPs"]
    for m in family["members"]:
        assert not Path(m["spec"]).is_absolute()  # relative to the run folder
        spec = ps.ArchSpec.load(tmp_path / m["spec"])
        model = ps.build(spec)
        flops = ps.count_flops(model, torch.zeros(1, *spec.input_shape))
        assert 0.99 * spec.budget["target"] <= flops <= spec.budget["target"]
        assert flops == spec.flops
        search = spec.search
        assert search["base_checkpoint_sha256"] == family["base_sha256"]
        assert search["signal"] in ("slimming", "l1") and search["space"] == "tiny"
        assert search["score"] >= max(b["score"] for b in search["baselines"].values())
        assert set(search["baselines"]) == {"uniform", "l1", "slimming", "global"}
        assert search["objective"] == "inherit" and search["granularity"] == "group"
        for name, path in m["baseline_specs"].items():
            baseline = ps.ArchSpec.load(tmp_path / path)
            assert baseline.search["baseline"] == name
            assert 0.99 * spec.budget["target"] <= baseline.flops <= spec.budget["target"]
        finished = [
            t
            for t in trials_of(tmp_path, m["budget"].replace("%FLOPs", "pct-flops"))
            if t.state == optuna.trial.TrialState.COMPLETE
        ]
        assert len(finished) == 5
        assert finished[0].user_attrs["seeded"]  # the signal's allocation came first
    # rerunning the same command resumes: no new trials, same specs
    before = {m["spec"]: (tmp_path / m["spec"]).read_text() for m in family["members"]}
    with caplog.at_level(logging.INFO, logger="prunesearch"):
        again = find(
            load_space(TINY),
            FindOptions("25%,50%,75%FLOPs", base=str(base), trials=5),
            out=tmp_path,
        )
    assert again["exported"] is False
    assert (
        f"nothing new to export: the specs of these trials are already in {tmp_path}" in caplog.text
    )
    assert "fingerprint" not in caplog.text  # said in words, not as a raw dict
    assert len(trials_of(tmp_path, "25pct-flops")) == 5
    after = {p: (tmp_path / p).read_text() for p in before}
    strip = [json.loads(t) | {"versions": None} for t in (before | after).values()]
    assert all(s in strip for s in [json.loads(t) | {"versions": None} for t in after.values()])


def test_a_study_reads_in_optuna_as_a_dashboard_shows_it(base, tmp_path):
    """optuna-dashboard lists a study's trials with their parameters, value and user
    attributes, and the study's own attributes and metric name: read them with the public
    Optuna API from the run folder's study.db."""
    find(load_space(TINY), FindOptions("50%FLOPs", base=str(base), trials=4), out=tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert study.metric_names == ["inherit score (validation accuracy)"]
    attrs = study.user_attrs
    assert attrs["budget"] == "50%FLOPs" and attrs["objective"] == "inherit"
    assert attrs["space"] == "tiny" and attrs["signal"] == "slimming"
    assert set(attrs["baselines"]) == {"uniform", "l1", "slimming", "global"}
    graph = ps.trace(load_space(TINY).create_model(), torch.zeros(1, 3, 16, 16))
    assert attrs["base_flops"] == graph.flops()
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 4
    for t in trials:
        a = t.user_attrs
        assert set(a["widths"]) == {g.name for g in graph.groups}
        assert a["flops"] == graph.flops(a["widths"]) <= attrs["target"]
        assert a["params"] == graph.params(a["widths"])
        assert a["flops_ratio"] == round(a["flops"] / graph.flops(), 4)
        assert a["objective"] == "inherit" and a["signal"] == "slimming"
        assert t.params and t.value is not None
    assert [t.user_attrs.get("seeded_from") for t in trials] == [
        "slimming threshold",
        "global",
        "uniform",
        "global, perturbed (1)",
    ]
    spec = ps.ArchSpec.load(tmp_path / "spec-50pct-flops.json")
    won = spec.search["trial"]  # a trial's number, or "baseline:NAME": both are in the study
    widths = (
        study.trials[won].user_attrs["widths"]
        if isinstance(won, int)
        else attrs["baselines"][won.split(":")[1]]["widths"]
    )
    assert widths == spec.widths


def test_specs_train_from_scratch(base, tmp_path):
    find(load_space(TINY), FindOptions("50%FLOPs", base=str(base), trials=2), out=tmp_path)
    proc = run_cli(
        "train-arch",
        tmp_path / "spec-50pct-flops.json",
        "--epochs",
        "1",
        "--out",
        tmp_path / "train",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["space"] == "tiny"


def test_unreachable_budget_fails_before_any_work(tmp_path):
    proc = run_cli("find", "--space", TINY, "--budget", "2%FLOPs", "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: budget unreachable")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "150%FLOPs"], "percentage must be in"),
        (["--budget", "abc"], "not understood"),
        (["--budget", "50%FLOPs", "--signal", "taylor"], "unknown signal 'taylor'"),
        (["--budget", "50%FLOPs", "--trials", "0"], "--trials must be >= 1"),
        (["--budget", "50%FLOPs", "--storage", "redis://x"], "--storage 'redis://x': use"),
        (["--budget", "50%FLOPs", "--base", "/nonexistent.safetensors"], "--base"),
    ],
)
def test_bad_find_input(base, tmp_path, args, message):
    extra = [] if "--base" in args else ["--base", str(base)]
    proc = run_cli("find", "--space", TINY, *args, *extra, "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_storage_that_cannot_be_opened_is_refused_before_the_base_is_trained(
    tmp_path, monkeypatch
):
    pytest.importorskip("psycopg")
    monkeypatch.setattr(studies, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://ann:pw@127.0.0.1:{silent.getsockname()[1]}/ps"
        proc = run_cli(
            "find", "--space", TINY, "--budget", "50%FLOPs", "--storage", url, cwd=tmp_path
        )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: cannot open storage postgresql://ann:***@")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no base trained, no run folder


def test_local_workers_share_a_journal_study(base, tmp_path):
    journal = tmp_path / "study.log"
    # fine-tuned scoring makes trials slow enough for the spawned worker to join in
    result = find(
        load_space(TINY),
        FindOptions(
            "50%FLOPs",
            base=str(base),
            trials=5,
            jobs=2,
            storage=f"journal:{journal}",
            finetune_steps=30,  # the worker joined in the 2nd of 5 such trials when measured
        ),
        out=tmp_path,
    )
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    name = optuna.get_all_study_summaries(storage)[0].study_name
    trials = optuna.load_study(study_name=name, storage=storage).trials
    done = [
        t
        for t in trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert len(done) == 5
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == 5  # none duplicated
    assert {t.user_attrs["pid"] for t in done} != {os.getpid()}  # a worker process took part
    assert result["members"][0]["score"] > 0


def test_kill_during_a_trial_then_resume(base, tmp_path):
    args = [sys.executable, "-m", "prunesearch"]
    args += tiny_find_args(base, tmp_path, 4, "--finetune-steps", "20")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240

    def ready() -> bool:
        """Two trials finished and one being scored (every parameter sampled, its widths
        recorded): the moment to kill."""
        try:
            trials = trials_of(tmp_path, "50pct-flops")
        except Exception:
            return False
        states = [t.state for t in trials]
        done = states.count(optuna.trial.TrialState.COMPLETE)
        done += states.count(optuna.trial.TrialState.PRUNED)
        scoring = [
            t
            for t in trials
            if t.state == optuna.trial.TrialState.RUNNING and "widths" in t.user_attrs
        ]
        return done >= 2 and bool(scoring)

    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline
        # read while it runs; stopped only to confirm (the state read is the state killed)
        if (tmp_path / "study.db").exists() and ready():
            os.kill(proc.pid, signal.SIGSTOP)
            if ready():
                break
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = [
        t.number
        for t in trials_of(tmp_path, "50pct-flops")
        if t.state == optuna.trial.TrialState.RUNNING
    ]
    assert len(stale) == 1
    rerun = run_cli(*args[3:])  # the same command, resumed (in-process: no kill needed)
    assert rerun.returncode == 0, rerun.stderr
    trials = trials_of(tmp_path, "50pct-flops")
    finished = [
        t
        for t in trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert len(finished) == 4
    assert trials[stale[0]].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if t.user_attrs.get("retry_of") == stale[0]]
    assert len(retried) == 1 and retried[0].params == trials[stale[0]].params
    assert ps.ArchSpec.load(tmp_path / "spec-50pct-flops.json").search["trials"] >= 1


def test_scratch_objective_with_successive_halving_and_profile(base, tmp_path):
    space = load_space(TINY).replace(
        "search",
        objective="scratch",
        granularity="profile",
        scratch_images=64,
        scratch_rungs=2,
        scratch_reduction=2,
    )
    result = find(space, FindOptions("50%FLOPs", base=str(base), trials=6), out=tmp_path)
    assert result["objective"] == "scratch"
    spec = ps.ArchSpec.load(result["members"][0]["spec"])
    search = spec.search
    assert search["objective"] == "scratch" and search["granularity"] == "profile"
    assert search["objective_settings"]["rung_images"] == [64, 128]
    # the finalists were scored again with a second seed; the export has the best mean
    finalists = search["finalists"]
    assert len(finalists) == 4 and all(len(f["scores"]) == 2 for f in finalists)
    means = {str(f["trial"]): sum(f["scores"]) / 2 for f in finalists}
    assert search["score"] == pytest.approx(max(means.values()))
    assert means[str(search["trial"])] == pytest.approx(search["score"])
    trials = trials_of(tmp_path, "50pct-flops")
    states = [t.state for t in trials]
    assert (
        states.count(optuna.trial.TrialState.COMPLETE)
        + states.count(optuna.trial.TrialState.PRUNED)
        == 6
    )
    assert all(set(t.params) == {"p:start", "p:end", "p:shape", "p:inner"} for t in trials)
    # every rung was reported at its image count; stopped trials stopped at the first rung
    for t in trials:
        steps = sorted(t.intermediate_values)
        assert steps == ([64] if t.state == optuna.trial.TrialState.PRUNED else [64, 128])
    # the baselines were scored by the same objective, once: a rerun reuses them
    cached = json.loads((tmp_path / "baselines.json").read_text())["50pct-flops"]
    assert {v["settings"]["objective"] for v in cached.values()} == {"scratch"}
    again = find(space, FindOptions("50%FLOPs", base=str(base), trials=6), out=tmp_path)
    assert again["members"][0]["baselines"] == result["members"][0]["baselines"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--objective", "zero-shot"], "unknown objective 'zero-shot'"),
        (["--objective", "scratch", "--finetune-steps", "5"], "needs --objective inherit"),
    ],
)
def test_bad_objective_is_refused_before_any_work(base, tmp_path, args, message):
    from typer.testing import CliRunner

    from prunesearch.cli.app import app

    res = CliRunner().invoke(
        app,
        [
            "find",
            "--space",
            TINY,
            "--budget",
            "50%FLOPs",
            "--base",
            str(base),
            *args,
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_worker_that_did_not_export_says_who_did(tmp_path):
    from prunesearch.find.selection import already_exported

    said = already_exported({"host": "node7", "run_dir": "/shared/run"}, tmp_path)
    assert (
        said == "nothing to export here: another worker on node7 wrote these specs into /shared/run"
    )


def test_ctrl_c_during_a_trial_is_one_line_not_a_traceback(base, tmp_path):
    # --jobs 2: the terminal's SIGINT reaches the worker process too
    extra = ["--finetune-steps", "20", "--jobs", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "prunesearch", *tiny_find_args(base, tmp_path, 6, *extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=interruptible,
    )
    deadline = time.time() + 240
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline
        try:
            states = [t.state for t in trials_of(tmp_path, "50pct-flops")]
        except Exception:
            states = []
        if states.count(optuna.trial.TrialState.RUNNING) == 2:  # both processes in a trial
            break
        time.sleep(0.05)
    time.sleep(0.3)  # inside the trials' scoring
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == (
        "error: interrupted; the finished trials are kept "
        "in the study: run the same command to go on"
    )


def test_find_out_trains_its_base_in_out_base(tmp_path):
    """Without --base, `find --out DIR` trains (or reuses) the base in DIR/base, not in
    outputs/<space>/base."""
    run = tmp_path / "run"
    argv = ["find", "--space", TINY, "--budget", "50%FLOPs", "--trials", "1", "--epochs", "1"]
    proc = run_cli(*argv, "--out", run, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (run / "base" / "model.safetensors").is_file()
    assert not (tmp_path / "outputs").exists()
    family = json.loads((run / "family.json").read_text())
    assert Path(family["base"]) == run / "base" / "model.safetensors"
    assert family["base_info"]["epochs"] == 1  # the base's own recipe
    assert family["base_info"]["epochs_from"] == "the base's recipe"


def _spawned_children(pid: int) -> list[int]:
    """The ``multiprocessing`` spawn children of process ``pid`` (its --jobs workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == pid and b"multiprocessing" in cmd and b"spawn_main" in cmd:
            found.append(int(entry.name))
    return found


def test_ctrl_c_while_a_worker_is_starting_is_one_line_not_a_traceback(base, tmp_path):
    """The worker's first seconds are imports, before its own handler is set: a Ctrl-C then
    used to print its traceback. Now it starts with SIGINT ignored and the main process ends it
    after the interrupt. Any timing of the signal inside that window must give the same."""
    args = [sys.executable, "-m", "prunesearch", *tiny_find_args(base, tmp_path, 6, "--jobs", "2")]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=interruptible,
    )
    deadline = time.time() + 240
    while not (workers := _spawned_children(proc.pid)):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # the worker is still importing
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted;")
    assert not any(Path(f"/proc/{w}").exists() for w in workers)  # no worker left running


def scratch_space():
    return load_space(TINY).replace(
        "search",
        objective="scratch",
        granularity="profile",
        scratch_images=64,
        scratch_rungs=2,
        scratch_reduction=2,
    )


def trained_per_budget(caplog) -> dict[str, int]:
    """Each budget's count of fresh trainings, from find's log line per budget."""
    pattern = re.compile(r"^(\S+) searched in [\d.]+ s \((\d+) candidates trained\)$")
    found = [pattern.match(r.getMessage()) for r in caplog.records]
    return {m[1]: int(m[2]) for m in found if m}


def test_a_family_trains_an_architecture_two_budgets_share_once(base, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="prunesearch")
    space = scratch_space()
    graph = ps.trace(space.create_model(), torch.zeros(1, 3, 16, 16))
    s = space.search
    uniform = project(graph, {}, "flops", graph.flops() // 2, min_ratio=s.min_ratio, round_to=1)
    flops = graph.flops(uniform)
    # two budgets 0.05% apart: what the first proposes, the second proposes too
    near = int(flops * 1.0005)
    assert project(graph, {}, "flops", near, min_ratio=s.min_ratio, round_to=1) == uniform
    budgets = f"{flops},{near}FLOPs"
    result = find(space, FindOptions(budgets, base=str(base), trials=5), out=tmp_path)
    first, second = result["members"]
    trained = trained_per_budget(caplog)
    assert trained[first["budget"]] >= 3  # two baselines, trials, the finalists' second seed
    assert trained[second["budget"]] == 0  # every score replayed, the finalists' too
    assert first["baselines"] == second["baselines"]
    assert (first["score"], first["flops"]) == (second["score"], second["flops"])
    specs = [ps.ArchSpec.load(tmp_path / m["spec"]).search for m in (first, second)]
    assert specs[0]["finalists"] == specs[1]["finalists"]


def test_a_later_run_in_the_folder_replays_the_scores_it_trained(base, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="prunesearch")
    space = scratch_space()
    first = find(space, FindOptions("50%FLOPs", base=str(base), trials=3), out=tmp_path)
    kept = json.loads((tmp_path / "scores.json").read_text())
    assert kept["fingerprint"]["settings"]["rung_images"] == [64, 128]
    assert len(kept["scores"]) == trained_per_budget(caplog)["50%FLOPs"]
    caplog.clear()
    # another signal is another study; the architectures it shares with the first are replayed
    l1 = FindOptions("50%FLOPs", base=str(base), trials=3, signal="l1")
    again = find(space, l1, out=tmp_path)
    assert again["signal"] == "l1"
    assert trained_per_budget(caplog)["50%FLOPs"] < len(kept["scores"])
    before, after = first["members"][0]["baselines"], again["members"][0]["baselines"]
    assert after["uniform"] == before["uniform"]  # the same widths: the same score, not retrained
    caplog.clear()
    changed = space.replace("search", scratch_cooldown=0.5)  # other scores: nothing replayed
    find(changed, l1, out=tmp_path)
    assert "scores of other settings, not reused" in caplog.text
