"""Times one finalist confirmation (seed 1, no trial) with every rung vs the last rung only."""

import time

import torch

from prunesearch.engine.budget import project
from prunesearch.engine.graph import trace
from prunesearch.find.candidates import input_shape, space_rungs
from prunesearch.find.objectives import SGD, Feed, ScratchScorer
from prunesearch.space import load_space
from prunesearch.training.runs import DataOptions, load_splits

space = load_space("search_spaces/resnet20-fmnist.yaml")
splits = load_splits(space, DataOptions(limit_train=2000))
graph = trace(space.create_model(), torch.zeros(1, *input_shape(space)))
d, t = space.data, space.train
rungs = space_rungs(space, len(splits.train))
print("rungs", rungs.sizes, "train", len(splits.train), "val", len(splits.val))
for ratio in (0.3, 0.7):
    widths = project(graph, {}, "flops", int(graph.flops() * ratio), min_ratio=0.1, round_to=1)
    times = {True: [], False: []}
    scores = {True: [], False: []}
    for _rep in range(2):
        for every in (True, False):
            s = ScratchScorer(
                graph,
                splits.train,
                splits.val,
                rungs=rungs,
                sgd=SGD(t.lr, t.momentum, t.weight_decay),
                feed=Feed(
                    d.batch_size, d.eval_batch_size, torch.device("cpu"), False, augment=d.augment
                ),
            )
            t0 = time.perf_counter()
            accs = s._train(widths, 1, None, every)
            times[every].append(time.perf_counter() - t0)
            scores[every].append(accs[-1])
    print(
        f"{ratio:.0%}FLOPs uniform: every rung {times[True]} s, last rung only {times[False]} s, "
        f"scores {scores[True]} / {scores[False]}",
        flush=True,
    )
