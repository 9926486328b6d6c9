"""Pins the dependency behaviour prunesearch relies on (see ``prunesearch.compat`` and
``search.fail_trial``): an upgrade that changes it fails here first."""

import optuna
import pytest
from optuna.trial import TrialState

from prunesearch.compat import NoArgsIsHelpError, UsageError
from prunesearch.find.studies import fail_trial


def _storages(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    return {
        "sqlite": f"sqlite:///{tmp_path / 's.db'}",
        "journal": optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "j"))),
    }


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_fail_trial_succeeds_exactly_once(tmp_path, kind):
    storage = _storages(tmp_path)[kind]
    study = optuna.create_study(storage=storage, study_name="s")
    study.add_trial(optuna.trial.create_trial(state=TrialState.RUNNING))
    other = optuna.load_study(study_name="s", storage=storage)  # another worker's view
    assert fail_trial(study, 0) is True
    assert fail_trial(other, 0) is False  # already FAIL: refused, no exception
    assert study.trials[0].state == TrialState.FAIL
    done = study.ask()
    study.tell(done, 1.0)
    assert fail_trial(study, done.number) is False  # a COMPLETE trial stays COMPLETE
    assert study.trials[done.number].state == TrialState.COMPLETE


def test_fail_stale_trials_is_a_no_op_without_heartbeats(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    study.add_trial(optuna.trial.create_trial(state=TrialState.RUNNING))
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == TrialState.RUNNING


def test_click_exceptions_the_cli_relies_on():
    import typer

    from prunesearch.cli.app import main

    assert issubclass(NoArgsIsHelpError, UsageError)
    app = typer.Typer(no_args_is_help=True)
    app.command()(lambda: None)
    app.command("other")(lambda: None)
    with pytest.raises(NoArgsIsHelpError):
        typer.main.get_command(app).main(args=[], standalone_mode=False)
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 0
