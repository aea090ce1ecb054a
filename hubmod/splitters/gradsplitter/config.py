"""GradSplitter's options and named presets: each option declared once, with its help and its rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import MethodConfig, at_least, between, greater_than, method_option, one_of

# The default setting spelled out (the fast preset), which the small preset changes in a few options.
_FAST: dict[str, Any] = {
    "train_per_class": 100, "val_per_class": 200, "mask_lr": 0.05, "max_cycles": 3, "distill_epochs": 3,
    "distill_per_class": 1000, "distill_tries": 1, "distill_slack": 4.0, "distill_batch_size": 256,
    "distill_lr": 1e-3, "distill_label_weight": 0.5, "distill_temperature": 2.0}


@dataclass
class GradSplitterConfig(MethodConfig):
    # The defaults are the best setting measured (BENCHMARKS.md, split-cost-labels `labels-b256-ho`):
    # a short mask search on 100 images per class, won back by distillation that also learns from labels.
    method_name: ClassVar[str] = "gradsplitter"
    train_per_class: int = method_option(100, "training images per class (the data budget)", at_least(1))
    val_per_class: int = method_option(200, "held-out images per class for choosing masks and calibrating", at_least(1))
    alpha: float = method_option(1.0, "weight of the kept-kernel term; higher gives smaller modules", at_least(0))
    mask_init: float = method_option(0.5, "initial mask value (>0 = kept); 0.5 lets pruning start in the first epoch")
    mask_lr: float = method_option(0.05, "Adam learning rate of the masks", greater_than(0))
    head_lr: float = method_option(0.003, "learning rate of the head-only warm-up", greater_than(0))
    joint_head_lr: float = method_option(
        0.003, "learning rate of the heads while masks train, and of the refits", greater_than(0))
    hidden: int = method_option(10, "hidden width of each module's head", at_least(1))
    batch_size: int = method_option(64, "images per step (each is run once per module)", at_least(2))
    warmup_epochs: int = method_option(5, "head-only epochs before masks train", at_least(0))
    refit_epochs: int = method_option(20, "head-only epochs on cached logits after each mask epoch", at_least(0))
    max_cycles: int = method_option(3, "most mask epochs", at_least(1))
    patience: int = method_option(3, "stop after this many mask epochs without a better choice", at_least(1))
    tolerance: float = method_option(
        1.0, "accuracy points below the parent (validation) a choice may lose", at_least(0))
    recalibrate_bn: bool = method_option(
        True, "re-estimate BatchNorm statistics of each extracted module on the training images")
    adapt_alpha: bool = method_option(
        True, "halve alpha after a mask epoch below tolerance, raise it by a quarter after one within")
    sigmoid_scores: bool = method_option(
        True, "cross-entropy over the modules' sigmoid scores (the paper) rather than raw head outputs")
    head_input: str = method_option(
        "features", "what each head reads: 'features' (pooled features; the classifier is dropped) or 'logits' (the "
        "parent's N logits, as in the paper)", one_of("features", "logits"))
    distill_epochs: int = method_option(
        3, "epochs of distilling the parent into the chosen modules (backbones and heads); 0 keeps the parent's "
        "weights, as in the paper", at_least(0))
    distill_per_class: int = method_option(
        1000, "images per class to distil on (the training images, topped up)", at_least(1))
    distill_lr: float = method_option(
        0.001, "Adam learning rate of the distillation (cosine schedule)", greater_than(0))
    distill_temperature: float = method_option(2.0, "softmax temperature of the distillation", greater_than(0))
    distill_slack: float = method_option(
        4.0, "accuracy points the masks may lose beyond tolerance before distillation, which distillation must win "
        "back on validation", at_least(0))
    distill_tries: int = method_option(
        1, "most mask choices distilled (cheapest first; a failed try skips the masks it shows distillation cannot "
        "bring back) before keeping undistilled masks", at_least(1))
    distill_batch_size: int = method_option(
        256, "images per distillation step; larger runs faster per image on a CPU", at_least(2))
    distill_label_weight: float = method_option(
        0.5, "share of the distillation loss that is cross-entropy against the true labels (the rest: matching the "
        "parent's outputs); 0 uses no labels", between(0, 1))
    distill_augment_epochs: int = method_option(
        0, "first distillation epochs on randomly flipped and shifted images (the rest on the images as they are, as "
        "the composition sees them); 0, the default, was measured more accurate at a few epochs", at_least(0))
    penalty: str = method_option(
        "kernels", "what alpha penalises and the choice minimises: 'kernels' (kept conv kernels, the paper), "
        "'macs' (the modules' multiply-accumulates, i.e. their inference cost) or 'both' (the mean of the two "
        "shares)", one_of("kernels", "macs", "both"))
    size_budget: float = method_option(
        0.0, "mean share of kernels (or MACs, or their mean, as the penalty says) the modules may keep at no extra "
        "cost: if the search ends below it, its last masks are topped up to it with the channels nearest to being "
        "kept, and among choices within tolerance at or below it the most accurate wins; 0 = the cheapest wins, as "
        "in the paper", between(0, 1))
    classes_per_search: int = method_option(
        10, "most modules one search trains together; a split of more classes searches them in groups of this "
        "many (by class index), each on its own classes' images and a sample of the others, so its cost grows "
        "linearly with the classes split; 0 = all in one search", at_least(0))
    share_stem: bool = method_option(
        True, "keep the first convolution and its BatchNorm as in the parent (not distilled or recalibrated), so a "
        "composed classifier runs them once for all modules of the parent")

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "fast": _FAST,
        # the default with a longer search pressing on kernels and MACs, topped up and distilled longer
        "small": {**_FAST, "max_cycles": 5, "penalty": "both", "size_budget": 0.09, "distill_epochs": 8,
                  "distill_tries": 2, "distill_slack": 20.0},
        "paper": {"train_per_class": 400, "mask_lr": 0.01, "max_cycles": 8, "distill_epochs": 0},
        "thorough": {"train_per_class": 400, "mask_lr": 0.01, "max_cycles": 8, "distill_epochs": 2,
                     "distill_lr": 3e-4, "distill_slack": 3.0, "distill_tries": 2, "distill_batch_size": 64,
                     "distill_label_weight": 0.0},
    }
    preset_docs: ClassVar[dict[str, str]] = {
        "fast": "the default, spelled out: a short mask search on 100 images per class that may go 4 points "
                "below the parent, won back by three epochs of distillation that also learn from the labels "
                "(BENCHMARKS.md, labels-b256-ho)",
        "small": "the smallest modules measured within half a point of the parent: five mask epochs pressing on "
                 "kernels and MACs together, the last masks topped up to 9 % of that mean and distilled for eight "
                 "epochs, whatever their accuracy before; slower than the default (BENCHMARKS.md, split-size-curve)",
        "paper": "GradSplitter as published: a longer mask search on 400 images per class, and modules keep the "
                 "parent's weights (no distillation); slower and less accurate than the default on both benchmark "
                 "parents (BENCHMARKS.md, split-size-curve)",
        "thorough": "the default before the fast setting was measured: a longer search on 400 images per class "
                    "and up to two distillation tries on the soft targets alone; about twice as slow as the default "
                    "and less accurate on both benchmark parents (BENCHMARKS.md, split-size-curve)",
    }

    def distill_per_class_needed(self) -> int:
        return self.distill_per_class if self.distill_epochs > 0 else 0
