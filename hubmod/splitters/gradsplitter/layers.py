"""GradSplitter's trainable parts: binarised masks with a straight-through gradient, and all heads at once."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ...errors import HubmodError


class BinaryMask(torch.autograd.Function):
    """mask > 0 forward; straight-through backward.

    The authors clip this gradient to [-1, 1]; each mask is used once per step, so hubmod clips the
    mask's own gradient instead, after it has been summed over data-parallel processes, which makes
    a multi-process step the same as a single-process step on the whole batch.
    """

    @staticmethod
    def forward(ctx, x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class BatchedHeads(nn.Module):
    """N independent MLP heads evaluated as one batched computation.

    Unlike the authors' random initialisation, head i starts by computing its own class's logit
    (hidden unit 0 holds ReLU(logit i), the output reads unit 0), so the composition starts at the
    parent's predictions and the short CPU budget is spent on masks, not on relearning them.
    ``start_weight`` [N, in] and ``start_bias`` [N] say how logit i is computed from the input:
    the identity for logit inputs, the parent's classifier for feature inputs.
    """

    def __init__(self, hidden: int, start_weight: torch.Tensor, start_bias: torch.Tensor, relu_input: bool):
        super().__init__()
        n, width = start_weight.shape
        b1, b2 = 0.1 / math.sqrt(width), 0.1 / math.sqrt(hidden)
        w1 = torch.empty(n, hidden, width).uniform_(-b1, b1)
        w2 = torch.empty(n, hidden).uniform_(-b2, b2)
        w1[:, 0] = start_weight
        b = torch.zeros(n, hidden)
        b[:, 0] = start_bias
        w2[:, 0] = 1.0
        self.relu_input = relu_input
        self.w1 = nn.Parameter(w1)
        self.b1 = nn.Parameter(b)
        self.w2 = nn.Parameter(w2)
        self.b2 = nn.Parameter(torch.zeros(n))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [n_modules, B, in] -> raw scores [n_modules, B]."""
        x = torch.relu(inputs) if self.relu_input else inputs
        h = torch.relu(torch.einsum("mbi,mhi->mbh", x, self.w1) + self.b1[:, None])
        return torch.einsum("mbh,mh->mb", h, self.w2) + self.b2[:, None]

    def export(self, i: int, columns: list[int] | None = None) -> dict[str, torch.Tensor]:
        """Module i's head as a ``heads`` state dict (prefixed for ClassModule), reading ``columns`` only."""
        w1 = self.w1[i] if columns is None else self.w1[i][:, columns]
        state = {"head.fc1.weight": w1, "head.fc1.bias": self.b1[i],
                 "head.fc2.weight": self.w2[i][None], "head.fc2.bias": self.b2[i : i + 1]}
        return {k: v.detach().clone() for k, v in state.items()}


def start_heads(model: nn.Module, n: int, hidden: int, on_features: bool, targets: list[int]) -> BatchedHeads:
    """Heads for the ``targets`` classes, each starting as its class's logit."""
    if not on_features:
        return BatchedHeads(hidden, torch.eye(n)[targets], torch.zeros(len(targets)), relu_input=True)
    clf = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(clf, nn.Linear):
        raise HubmodError(f"{type(model).__name__}'s classifier is not a Linear layer, so heads cannot read its "
                          "features; split with --option head_input=logits")
    bias = clf.bias.detach().cpu() if clf.bias is not None else torch.zeros(n)
    return BatchedHeads(hidden, clf.weight.detach().cpu()[targets].clone(), bias[targets].clone(), relu_input=False)
