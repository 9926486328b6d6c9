"""A family member fine-tuned from the base for its Scratch-B epochs (the paper's equal-compute
comparison of fine-tuning against Scratch-B), by the family's finetune recipe (SGD from
``train.family_lr``, cosine to 0) with the epochs set, one run folder per seed (resumable).

    python benchmarks/finetune_equal_compute.py FIND_RUN_DIR SLUG EPOCHS SEED OUT
"""

import json
import sys
from pathlib import Path

from prunesearch.family.inputs import read_find_run
from prunesearch.training.loop import RunOptions
from prunesearch.training.recipes import RECIPES, FromBase, RecipeJob, train_by_recipe


def main() -> None:
    find_dir, slug, epochs, seed, out = sys.argv[1:6]
    run = read_find_run(Path(find_dir))
    member = next(m for m in run.members if m.slug == slug)
    base = FromBase(run.base_path, run.base_epochs, run.signal)
    job = RecipeJob(member.spec, RECIPES["finetune"], base, name=slug, epochs=int(epochs))
    metrics = train_by_recipe(job, run.space, Path(out), opts=RunOptions(seed=int(seed)))
    print(
        json.dumps(
            {
                "slug": slug,
                "epochs": int(epochs),
                "seed": int(seed),
                "test_accuracy": metrics["test_accuracy"],
                "val_accuracy": metrics.get("val_accuracy"),
            }
        )
    )


if __name__ == "__main__":
    main()
