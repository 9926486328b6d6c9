"""The README's "your own model" example: trace, list groups, prune to a budget, count FLOPs."""

import torch
from torch import nn

import prunesearch as ps


class Net(nn.Module):  # any CNN of yours: here two concatenated branches and an SE gate
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.gate = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.a(x), self.b(x)], 1)
        x = x * self.gate(x.mean((2, 3))).sigmoid()[:, :, None, None]
        return self.head(x.mean((2, 3)))


x = torch.zeros(1, 1, 28, 28)
graph = ps.trace(Net(), x)
for g in graph.groups:
    print(f"{g.name:10} {g.size:3} channels, producers {g.producers}")
widths = ps.allocate(graph, "50%FLOPs", signal="l1")  # one global L1 threshold, on budget
small = graph.prune(widths, importance="l1")  # a smaller nn.Module, weights kept
print(widths, graph.flops(widths), ps.count_flops(small, x), graph.flops())
assert graph.flops(widths) == ps.count_flops(small, x) <= graph.flops() // 2
