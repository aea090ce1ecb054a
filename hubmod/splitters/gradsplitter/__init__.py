"""GradSplitter (Qi et al., TOSEM 2024): kernel masks learned by gradient descent.

The method in files: ``config`` (options and presets), ``layers`` (binarised masks, batched heads),
``cost`` (kept kernels or MACs as a function of the masks), ``selection`` (which snapshot is kept
and which is distilled next) and ``search`` (one split's search as a class holding its state).

Each class gets a real-valued mask per channel of every channel group, binarised in the forward
pass (``mask > 0``) with a straight-through gradient clipped to [-1, 1], and a small head
``Linear(N, H) -> ReLU -> Linear(H, 1)`` on the masked parent's ReLU'd logits. All N modules are
trained at once — their sigmoid scores go through one cross-entropy so they compete as argmax
composition will make them — plus ``alpha`` times the mean fraction of conv kernels kept.

What hubmod changes to make it practical on a laptop CPU:

* the N masked forwards run as one batched forward (the batch is repeated N times and hooks apply
  module i's masks to copy i), not N passes;
* a stratified subsample of the training data (``train_per_class``), not the whole set;
* heads are refit after every mask epoch on cached logits of the physically extracted modules,
  which costs one cheap inference pass instead of extra training epochs;
* by default the head reads the pooled features entering the parent's classifier instead of its
  N logits (``head_input=features``; ``logits`` is the paper's head). The parent's classifier
  mixes every feature for every class, so once a module has dropped most channels its logits
  are a poor summary of what is left; a head on the features re-weighs them;
* ``--classes`` trains only the requested modules; the other classes compete with the parent's
  own fixed scores, so a few modules of a 1000-class parent cost a few forwards per image, not 1000;
* many modules are searched in groups of ``classes_per_search``, each on its own classes' images
  and a sample of the others (the rest again answering with the parent's scores): every module is
  trained on every image its search draws, so one search of k modules would cost k times k;
* data parallel under ``accelerate launch`` / ``torchrun``: each process runs a share of every
  batch and gradients are summed before each step (see hubmod.parallel);
* the final masks are chosen automatically on held-out data — the fewest kernels whose composed
  accuracy is within ``tolerance`` points of the parent — and training stops once that choice has
  not improved for ``patience`` cycles. The authors picked the epoch by hand;
* with ``size_budget``, a size the user allows counts as free: a search that ends below it has its
  last masks topped up to it with the channels nearest to being kept (the last ones it dropped),
  and the choice takes the most accurate masks at or below it rather than the smallest;
* by default the parent is then distilled into the chosen modules (see hubmod.distillation):
  frozen parent weights are what stops small modules from staying accurate, so the search may go
  ``distill_slack`` points further, and distilled masks are kept only if they are back within
  ``tolerance`` on validation (``distill_epochs=0`` is the paper's frozen-weight method).
"""

from __future__ import annotations

from ..base import SplitContext, SplitOutcome, Splitter
from .config import GradSplitterConfig
from .search import MaskSearch


class GradSplitter(Splitter):
    name = "gradsplitter"
    pretty_name = "GradSplitter"
    paper = "Qi et al., Reusing Convolutional Neural Network Models through Modularization and Composition, TOSEM 2024"
    paper_url = "https://doi.org/10.1145/3632744"
    config_class = GradSplitterConfig
    data_parallel = True
    any_device = True
    samples_other_classes = True  # the classes not split answer with the parent's own scores

    def search_groups(self, targets: list[int]) -> list[list[int]]:
        """Groups of at most ``classes_per_search`` classes (0: all at once): each module's search
        then trains on its group's images and a sample of the others, so the cost of a split grows
        linearly with the classes split instead of with their square."""
        size = self.config.classes_per_search or len(targets)  # type: ignore[attr-defined]
        return [list(targets[i : i + size]) for i in range(0, len(targets), size)]

    def split(self, ctx: SplitContext) -> SplitOutcome:
        search = MaskSearch(self.config, ctx)  # type: ignore[arg-type]
        search.warm_up()
        search.run()
        search.top_up()
        return search.choose()


__all__ = ["GradSplitter", "GradSplitterConfig", "MaskSearch"]
