"""What trains a family member: each recipe as data.

A recipe says where a member's weights start (``init``: the base pruned to the member's spec,
the next larger member once trained, or fresh), how long and how fast it trains, and whether
the base teaches it. The inherited recipes read their numbers from the space's ``train``
section (``family_epochs``, ``family_lr``, ``distill_temperature``, ``distill_weight``); the
from-scratch ones are the paper's references, trained as ``train-arch`` trains them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from prunesearch.space import Space
from prunesearch.training.loop import Recipe
from prunesearch.training.runs import recipe_from_space
from prunesearch.vocab import FAMILY_RECIPES, require

__all__ = ["RECIPES", "MemberRecipe", "member_epochs", "member_recipe", "training_recipe"]


@dataclass(frozen=True)
class MemberRecipe:
    """How a member is trained.

    Attributes:
        name: the recipe's name (``prunesearch family --recipe``).
        init: ``base`` (the base's weights pruned to the spec by the search's signal),
            ``previous`` (pruned from the next larger member once it is trained; largest
            member first) or ``scratch`` (fresh weights).
        teacher: whether the base's logits are soft targets (knowledge distillation).
        schedule: ``scratch-e``/``scratch-b`` for the references (train-arch's epoch budgets),
            else the lr schedule of the short training: ``cosine`` from the space's
            ``train.family_lr`` over ``train.family_epochs`` of the base's epochs.
    """

    name: str
    init: str
    teacher: bool = False
    schedule: str = "cosine"

    @property
    def inherits(self) -> bool:
        return self.init != "scratch"


RECIPES = {
    "finetune": MemberRecipe("finetune", init="base"),
    "distill": MemberRecipe("distill", init="base", teacher=True),
    "chain": MemberRecipe("chain", init="previous"),
    "scratch-e": MemberRecipe("scratch-e", init="scratch", schedule="scratch-e"),
    "scratch-b": MemberRecipe("scratch-b", init="scratch", schedule="scratch-b"),
}


def member_recipe(name: str) -> MemberRecipe:
    """The recipe called ``name``; an unknown name is one error naming the choices."""
    return RECIPES[require("recipe", name, FAMILY_RECIPES)]


def member_epochs(fraction: float, base_epochs: int) -> int:
    """A short training's epochs: ``fraction`` of the base's, rounded up, at least 1 (the
    default space's 2-epoch base at 0.25 gives 1 epoch; a 160-epoch base, 40)."""
    return max(1, math.ceil(fraction * base_epochs - 1e-9))


def training_recipe(recipe: MemberRecipe, space: Space, base_epochs: int) -> Recipe:
    """The optimisation recipe of an inherited member: the space's SGD settings and batches, no
    sparsity, ``train.family_lr`` cosine-annealed to 0 over ``member_epochs``."""
    t = space.train
    start = recipe_from_space(space, epochs=base_epochs, sparsity=0.0)
    return Recipe(
        **asdict(start)
        | {
            "epochs": member_epochs(t.family_epochs, base_epochs),
            "lr": t.family_lr,
            "schedule": recipe.schedule,
        }
    )
