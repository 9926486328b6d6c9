import threading
import time
from pathlib import Path

from prunesearch.experiments.run_store import CellStore
from prunesearch.space import load_space
from prunesearch.training.runs import DataOptions

TINY = str(Path(__file__).parents[1] / "spaces" / "tiny.yaml")


def test_a_cell_is_named_by_what_changes_what_it_learns(tmp_path):
    store, space = CellStore(tmp_path), load_space(TINY)

    def folder(**change):
        args = {
            "kind": "scratch-b",
            "widths": {"conv1": 8},
            "seed": 0,
            "epochs": 2,
            "data": DataOptions(),
        } | change
        return store.folder(
            store._identity(
                space,
                args.pop("kind"),
                args.pop("widths"),
                args.pop("seed"),
                args.pop("epochs"),
                args.pop("data"),
            )
        )

    same = folder()
    assert folder() == same and same.name.startswith("scratch-b-s0-")
    for change in (
        {"widths": {"conv1": 7}},
        {"seed": 1},
        {"epochs": 3},
        {"data": DataOptions(limit_train=100)},
        {"kind": "scratch-e"},
    ):
        assert folder(**change) != same, change
    other = space.replace("train", lr=0.01)
    assert (
        store.folder(store._identity(other, "scratch-b", {"conv1": 8}, 0, 2, DataOptions())) != same
    )


def test_a_second_process_waits_for_the_cell_being_trained(tmp_path):
    held = threading.Event()

    def trainer():
        with CellStore._owned(tmp_path):
            held.set()
            time.sleep(1.0)

    t = threading.Thread(target=trainer)
    t.start()
    held.wait()
    start = time.monotonic()
    with CellStore._owned(tmp_path):
        waited = time.monotonic() - start
    t.join()
    assert waited >= 0.8
