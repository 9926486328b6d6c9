"""Optuna study mechanics: storages, exact trial counts across workers, stale-trial recovery.

A study maximises proxy accuracy over per-group (or per-stage) keep ratios. Several processes,
on one host or many, may work on one study:

* **Exact counts.** Trials count toward ``--trials`` when COMPLETE or PRUNED (finished), RUNNING
  or WAITING (to be finished). A trial whose number is not among the first ``n`` of those is
  surplus: it fails at once without being evaluated, so the study ends with exactly ``n``.
* **Stale trials.** A trial left RUNNING by a killed worker is failed and re-enqueued with the
  same parameters: at once when its worker ran on this host and its process is gone, after the
  heartbeat grace period (RDB storages: SQLite, PostgreSQL, MySQL) otherwise, and after
  ``GRACE_S`` when it records no owner at all (its worker died between Optuna's write that
  started it and ours that names its host and pid: no later write can fill that gap).
* **Failures.** A candidate that fails (e.g. a NaN loss) is a FAIL trial that does not count;
  another trial takes its place.
* **Export once.** When every worker is done, exactly one of them writes the specs:
  :func:`claim_export` has each worker add a "bid" trial, born FAIL and naming its host and
  pid in that one write; every storage numbers trials in the order it commits them, so all
  workers agree that the lowest-numbered bid wins. The winner records ``exported`` in the study
  when the files are written; a winner that died (same host, process gone) is replaced at
  once, one on another host after ``patience_s``. Bids never count and are never sampled.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import random
import socket
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from prunesearch.errors import PrunesearchError, first_line, shown
from prunesearch.paths import FAMILY

__all__ = [
    "Surplus",
    "claim_export",
    "counts",
    "fail_trial",
    "mark_exported",
    "no_interrupt_tracebacks",
    "open_study",
    "quiet_optuna",
    "recover_stale",
    "redact",
    "run_trials",
    "storage_for",
]

logger = logging.getLogger(__name__)

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_S = 10
GRACE_S = 60
HOST = socket.gethostname()
CONNECT_TIMEOUT_S = 10  # a database server that does not answer within this is an error
STATEMENT_TIMEOUT_S = 120  # no statement of a study, lock waits included, takes this long
WAIT_NOTICE_S = 5.0  # a wait longer than this says once what it waits for
TOKEN = "export_token"


class Surplus(Exception):
    """This trial would exceed the requested count; it is failed unevaluated."""


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines (one per trial, one per new study) silenced while our own calls run
    (our progress reports the trials), the caller's verbosity restored after. Importing this
    module leaves Optuna's logging alone; the CLI silences it for the whole command."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(previous, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


_SECRET_KEYS = ("password", "passwd", "secret", "token", "key")


def _not_an_interrupt(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt))


def no_interrupt_tracebacks() -> None:
    """Optuna logs a Ctrl-C inside a trial as "trial failed" with a traceback; drop those
    records (the CLI says once that it was interrupted). Optuna's modules log to children of
    its "optuna" logger, whose handler writes them, so the filter goes on that handler (a
    logger's own filters skip propagated records). Idempotent."""
    for handler in logging.getLogger("optuna").handlers:
        if _not_an_interrupt not in handler.filters:
            handler.addFilter(_not_an_interrupt)


def redact(url: str) -> str:
    """A storage URL without its secrets, for logs, config.json and specs: the password of the
    authority part and every query parameter whose name says it is one (``?password=``, which
    libpq and psycopg accept, ``sslpassword``, ``token``...). Parsed by SQLAlchemy, as Optuna's
    RDB storage parses it; a URL it cannot parse is shown as its scheme only."""
    if "://" not in url:
        return url  # a journal file path, or no URL at all
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://***"
    query = {
        k: ("redacted" if any(w in k.lower() for w in _SECRET_KEYS) else v)
        for k, v in parsed.query.items()
    }
    return parsed.set(query=query).render_as_string(hide_password=True)


# what a loser of the race to create an empty database's tables sees (PostgreSQL, MySQL,
# SQLite's "UNIQUE constraint failed: alembic_version")
_CREATE_RACE = ("duplicate", "already exists", "unique constraint")


def _connect_args(url: str) -> dict[str, Any]:
    """Driver arguments that bound every wait on the storage: SQLite's lock wait, and a
    server's connect and statement timeouts (a server that accepts the connection and never
    answers would otherwise hang the search in silence). Values the URL sets are kept."""
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        return {"timeout": 60}
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        query = make_url(url).query
    except (ArgumentError, ValueError) as exc:  # e.g. a port that is not a number
        raise PrunesearchError(
            f"--storage {redact(url)}: not a valid database URL ({first_line(exc)})"
        ) from None
    args: dict[str, Any] = {}
    if "connect_timeout" not in query:
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    if scheme == "postgresql" and "options" not in query:
        args["options"] = f"-c statement_timeout={STATEMENT_TIMEOUT_S * 1000}"
    return args


def storage_for(url: str | None, run_dir: Path) -> tuple[optuna.storages.BaseStorage, str]:
    """The Optuna storage for ``--storage`` (default: a SQLite file in the run folder).

    ``journal:PATH`` (or a path ending in ``.log``) is a journal file for many processes on one
    host; ``sqlite:///``, ``postgresql://`` and ``mysql://`` URLs are RDB storages with a
    heartbeat, so trials of workers that died on other machines are failed and retried.
    """
    if url is None:
        url = f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if url.startswith("journal:") or url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        name = url.removeprefix("journal:").removeprefix("//")
        path = Path(name)
        if not name or path.is_dir():
            raise PrunesearchError(
                f"--storage {shown(url)}: name the journal file, e.g. journal:study.log"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path))), url
        except OSError as exc:
            raise PrunesearchError(f"cannot open storage {shown(url)}: {exc.strerror}") from None
    if url.split("://", 1)[0].split("+", 1)[0] not in ("sqlite", "postgresql", "mysql"):
        raise PrunesearchError(
            f"--storage {redact(url)!r}: use sqlite:///FILE, "
            "postgresql://..., mysql://... or journal:FILE"
        )
    connect = _connect_args(url)
    for attempt in range(6):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"connect_args": connect, "pool_pre_ping": True},
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=3
                    ),
                )
            return storage, url
        except Exception as exc:  # connection refused, bad credentials, missing driver...
            message = first_line(exc)
            # workers started together on an empty database race to create its tables: the
            # loser sees a duplicate and finds the tables there when it tries again
            if attempt < 5 and any(w in message.lower() for w in _CREATE_RACE):
                time.sleep(0.2 + random.random() * (attempt + 1))
                continue
            if "timeout" in message.lower() and "connect_timeout" in connect:
                message += (
                    f" (no answer within {connect['connect_timeout']} s; "
                    "connect_timeout=N in the URL waits longer)"
                )
            raise PrunesearchError(f"cannot open storage {redact(url)}: {message}") from None
    raise AssertionError("unreachable")


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    seed: int,
    n_startup: int,
    pruner: optuna.pruners.BasePruner | None = None,
) -> tuple[optuna.Study, bool]:
    """Creates or loads a maximising study with a seeded TPE sampler; returns (study, whether
    this call created it: only the creator enqueues the first trials).

    The creator samples with ``seed`` (a one-process search is reproducible); a worker joining
    an existing study gets a seed of its own, drawn from ``seed``, host and pid: with one seed
    everywhere, workers would propose the same random points and evaluate duplicates.
    ``pruner`` stops weak trials early (default: the median rule after 5 trials).
    """
    created = True
    try:
        with quiet_optuna():
            storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
    except optuna.exceptions.DuplicatedStudyError:
        created = False
        seed = random.Random(f"{seed}:{HOST}:{os.getpid()}").getrandbits(31)
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=max(1, n_startup), multivariate=True, constant_liar=True
    )
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5),
    )
    return study, created


def fail_trial(study: optuna.Study, number: int) -> bool:
    """Turns RUNNING trial ``number`` (any worker's) into FAIL; True for exactly one caller.

    ``Study.tell`` refuses a trial that is no longer RUNNING, and the storage's update refuses
    one finished meanwhile (a row lock on PostgreSQL/MySQL, the write lock on SQLite and
    journal files): of several workers racing, one succeeds, the others get an error.
    """
    try:
        study.tell(number, state=TrialState.FAIL)
    except (ValueError, RuntimeError):  # finished before, or while, we asked
        return False
    return True


def _is_token(t: optuna.trial.FrozenTrial) -> bool:
    return bool(t.user_attrs.get(TOKEN))


class _WaitNotice:
    """Says once, after ``WAIT_NOTICE_S`` of waiting, what a loop is waiting for."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.said = False

    def waiting(self, what: str | Callable[[], str]) -> None:
        """``what``: the words, or a function that finds them (called only when said)."""
        now = time.monotonic()
        self.since = now if self.since is None else self.since
        if not self.said and now - self.since >= WAIT_NOTICE_S:
            logger.info("waiting for %s", what() if callable(what) else what)
            self.said = True


def _bids(study: optuna.Study, fingerprint: str) -> dict[int, list[optuna.trial.FrozenTrial]]:
    """This fingerprint's export bids by round, each round's in trial-number order."""
    rounds: dict[int, list[optuna.trial.FrozenTrial]] = {}
    prefix = f"{fingerprint}:"
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.RUNNING)):
        key = t.user_attrs.get(TOKEN)
        if isinstance(key, str) and key.startswith(prefix) and key[len(prefix) :].isdigit():
            rounds.setdefault(int(key[len(prefix) :]), []).append(t)
    return {r: sorted(ts, key=lambda t: t.number) for r, ts in rounds.items()}


def _bid(study: optuna.Study, fingerprint: str, round_: int, nonce: str, run_dir: Path) -> None:
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL,
            user_attrs={
                TOKEN: f"{fingerprint}:{round_}",
                "bid": nonce,
                "host": HOST,
                "pid": os.getpid(),
                "run_dir": str(run_dir),
            },
        )
    )


def _dead(t: optuna.trial.FrozenTrial) -> bool:
    """Whether the worker that wrote trial ``t`` ran on this host and is gone."""
    pid = t.user_attrs.get("pid")
    return (
        t.user_attrs.get("host") == HOST
        and isinstance(pid, int)
        and pid != os.getpid()
        and not _alive(pid)
    )


def claim_export(
    study: optuna.Study,
    run_dir: Path,
    fingerprint: str,
    poll_s: float = 0.5,
    patience_s: float = 300.0,
) -> bool:
    """True for exactly one worker of ``study``: the one that writes the specs.

    ``fingerprint`` identifies what is exported (the chosen trials): a rerun that chooses the
    same exports nothing new, one with more trials exports again. A loser waits until the
    winner has marked the study ``exported``; when the winner's process is gone (same host) the
    claim is opened again at once, and when it has not marked it within ``patience_s`` (another
    host) after that. Rerun in the run folder that exported, after its files were removed, the
    claim is granted again.
    """
    nonce, notice = uuid.uuid4().hex, _WaitNotice()
    watched: tuple[int, float] | None = None  # (winner's trial number, when first seen)
    while True:
        exported = study.user_attrs.get("exported") or {}
        if exported.get("fingerprint") == fingerprint:
            mine = exported.get("host") == HOST and exported.get("run_dir") == str(run_dir)
            return mine and not (run_dir / FAMILY).is_file()
        bids = _bids(study, fingerprint)
        round_ = max(bids, default=0)
        if not any(t.user_attrs.get("bid") == nonce for t in bids.get(round_, ())):
            _bid(study, fingerprint, round_, nonce, run_dir)
            continue
        winner = bids[round_][0]
        if winner.user_attrs.get("bid") == nonce:
            return True
        if watched is None or watched[0] != winner.number:
            watched = (winner.number, time.monotonic())
        if _dead(winner) or time.monotonic() - watched[1] > patience_s:
            _bid(study, fingerprint, round_ + 1, nonce, run_dir)  # the winner is gone: again
            continue
        notice.waiting(
            f"another worker to finish writing the specs (claimed as trial "
            f"{winner.number} by {winner.user_attrs.get('host', '?')} pid "
            f"{winner.user_attrs.get('pid', '?')}; taken over when it is gone, or "
            f"after {patience_s:.0f} s)"
        )
        time.sleep(poll_s)


def mark_exported(study: optuna.Study, run_dir: Path, fingerprint: str) -> None:
    study.set_user_attr(
        "exported",
        {
            "fingerprint": fingerprint,
            "host": HOST,
            "pid": os.getpid(),
            "run_dir": str(run_dir),
            "time": time.time(),
        },
    )


def _alive(pid: int) -> bool:
    """Whether a process of this host still runs (a zombie, exited but not yet reaped by its
    parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no procfs: trust kill()
        return True


def _stale(t: optuna.trial.FrozenTrial, now: datetime.datetime) -> str | None:
    """Why RUNNING trial ``t`` is stale, or None: its process on this host is gone, or it
    names no process at all and started more than ``GRACE_S`` ago."""
    pid = t.user_attrs.get("pid")
    if pid is None:
        started = t.datetime_start
        if started is None or (now - started).total_seconds() <= GRACE_S:
            return None
        return f"records no worker {GRACE_S} s after it started"
    if t.user_attrs.get("host") != HOST or pid == os.getpid() or _alive(int(pid)):
        return None
    return f"was left running by a dead worker (pid {pid})"


def recover_stale(study: optuna.Study) -> int:
    """Fails stale RUNNING trials (see :func:`_stale`), re-enqueueing their parameters (those
    fixed for an enqueued trial that died before suggesting them); returns how many were
    recovered."""
    recovered, now = 0, datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = None if _is_token(t) else _stale(t, now)
        if why is None or not fail_trial(study, t.number):  # another worker got there first
            continue
        params = t.params or t.system_attrs.get("fixed_params") or {}
        if params:
            study.enqueue_trial(params, user_attrs={"retry_of": t.number})
        logger.warning("trial %d %s: failed%s", t.number, why, " and re-enqueued" if params else "")
        recovered += 1
    return recovered


def counts(study: optuna.Study) -> tuple[int, int]:
    """(finished, counted) trials: see the module docstring."""
    finished, counted, _ = _tally(study)
    return finished, counted


def _tally(study: optuna.Study) -> tuple[int, int, int]:
    """(finished, counted, waiting) from one read of the storage; tokens left out."""
    trials = [t for t in study.get_trials(deepcopy=False, states=COUNTED) if not _is_token(t)]
    return (
        sum(t.state in FINISHED for t in trials),
        len(trials),
        sum(t.state == TrialState.WAITING for t in trials),
    )


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    on_trial: Callable[[int], Any] | None = None,
    poll_s: float = 0.5,
) -> None:
    """Runs trials until the study holds exactly ``n_trials`` finished ones.

    Returns once they are finished, including those other workers are running.
    """

    def guarded(trial: optuna.Trial) -> float:
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())  # last: a trial without one is ownerless
        live = sorted(
            t.number for t in study.get_trials(deepcopy=False, states=COUNTED) if not _is_token(t)
        )
        if trial.number not in live[:n_trials]:
            trial.set_user_attr("surplus", True)
            raise Surplus(trial.number)
        return objective(trial)

    notice = _WaitNotice()
    while True:
        recover_stale(study)
        finished, counted, waiting = _tally(study)
        if finished >= n_trials:
            return
        if counted >= n_trials and not waiting:  # the rest are running in other workers
            with warnings.catch_warnings():  # a no-op unless the storage has heartbeats
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            notice.waiting(lambda: _running_elsewhere(study))
            time.sleep(poll_s)
            continue
        with warnings.catch_warnings(), quiet_optuna():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                study.optimize(guarded, n_trials=1, catch=(PrunesearchError, Surplus))
            except (ValueError, RuntimeError) as exc:  # a worker took our trial for stale
                if "finished" not in str(exc) and "Cannot tell" not in str(exc):
                    raise
                logger.warning(
                    "a trial of this worker was failed as stale by another: "
                    "its parameters run again"
                )
        if on_trial is not None:
            on_trial(counts(study)[0])


def _running_elsewhere(study: optuna.Study) -> str:
    """The trials other workers are running, in words (host and pid where recorded)."""
    running = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not _is_token(t)
    ]
    who = ", ".join(
        f"{t.number} ({t.user_attrs.get('host', '?')} pid {t.user_attrs.get('pid', '?')})"
        for t in running[:5]
    )
    return f"{len(running)} trial(s) running in other workers to finish: {who}"
