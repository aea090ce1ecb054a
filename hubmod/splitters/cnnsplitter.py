"""CNNSplitter (Qi et al., ASE 2022): modules found by a genetic search over groups of kernels.

For every class, the channels of each channel group are ranked by how strongly they respond to
that class's confidently predicted images and cut into a few rank groups; a gene switches one rank
group of one module on or off. Because genes live on torch-pruning's channel groups, layers coupled
by residual additions share their genes without any per-architecture table. An individual holds
the genes of all N modules; its fitness is the accuracy of the N masked modules composed by
argmax of their own-class logits, plus a little of their diversity (1 - Jaccard of kept kernels).

What hubmod does where the authors worked by hand or on a GPU:

* the per-layer keep ratios that seed the population come from an automatic sensitivity analysis
  (each group pruned alone, by mean importance, until the parent loses ``sensitivity_drop`` points);
* a candidate's N modules are evaluated as one batched masked forward on a small fitness set,
  and fitness is memoised per genome, since steady-state crossover keeps producing known genomes;
* the search stops when the best fitness has not improved for ``patience`` generations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from ..batching import in_chunks, progress_bar
from ..channels import ChannelGroup, GroupMasks, group_activations, unit_channels
from .base import (
    ClassSlice,
    MethodConfig,
    Rule,
    SplitContext,
    SplitOutcome,
    Splitter,
    at_least,
    between,
    method_option,
)


@dataclass
class CNNSplitterConfig(MethodConfig):
    method_name: ClassVar[str] = "cnnsplitter"
    train_per_class: int = method_option(200, "images per class for kernel importance", at_least(1))
    val_per_class: int = method_option(
        200, "held-out images per class for sensitivity, the final check and calibration", at_least(1))
    fitness_per_class: int = method_option(
        50, "validation images per class that every candidate is scored on", at_least(1))
    confidence: float = method_option(
        0.9, "only images the parent predicts with at least this probability rank kernels",
        Rule(lambda v: 0 <= v < 1, "at least 0 and below 1"))
    population: int = method_option(20, "individuals kept by the steady-state search", at_least(2))
    generations: int = method_option(40, "most generations", at_least(0))
    offspring: int = method_option(6, "children made (and scored) per generation", at_least(1))
    mutation: float = method_option(0.01, "probability that a child's gene flips", between(0, 1))
    accuracy_weight: float = method_option(
        0.5, "weight of composed accuracy in the fitness of feasible candidates (the rest is module diversity, which "
        "favours small class-specific modules)", between(0, 1))
    sensitivity_drop: float = method_option(
        0.5, "accuracy points a channel group may cost when pruned alone (sets initial keep ratios)", at_least(0))
    sensitivity_steps: int = method_option(
        9, "keep ratios tried per channel group in the sensitivity analysis (9: 0.9, 0.8, ... 0.1); fewer costs less "
        "on parents with many groups", at_least(1))
    tolerance: float = method_option(
        1.0, "accuracy points below the parent that a candidate may lose and still count as feasible", at_least(0))
    patience: int = method_option(10, "stop after this many generations without a better best fitness", at_least(1))


def rank_groups(size: int) -> int:
    """How many genes a channel group gets: 10 rank groups below 256 channels, else 100 (the authors' rule)."""
    return min(size, 10 if size < 256 else 100)


def kernel_importance(model: nn.Module, groups: list[ChannelGroup], x: torch.Tensor, y: torch.Tensor,
                      num_classes: int, confidence: float) -> dict[str, torch.Tensor]:
    """[num_classes, units] per group: mean post-ReLU activation of each unit's channels on each class's images.

    Only images the parent predicts correctly with at least ``confidence`` count (all of the class's
    images if none do). Coupled outputs of a group (a residual stream) are averaged.
    """
    with torch.no_grad():
        probs = in_chunks(model, x).softmax(1)
        out = {g.name: torch.zeros(num_classes, g.units) for g in groups}
        for c in range(num_classes):
            own = y == c
            sure = own & (probs.argmax(1) == c) & (probs[:, c] >= confidence)
            pick = x[sure] if sure.any() else x[own]
            if len(pick) == 0:
                continue
            for name, v in group_activations(model, groups, pick, per_image=False).items():
                out[name][c] = v
    return out


@dataclass
class Genome:
    """Gene layout: for each group, the channel -> rank-group map of every module."""

    groups: list[ChannelGroup]
    chunk_of: dict[str, torch.Tensor]  # [n, units] rank group of each unit for each module
    genes: list[int]  # genes per group
    weights: torch.Tensor  # [total units] conv kernels carried by each unit

    @classmethod
    def from_importance(cls, groups: list[ChannelGroup], importance: dict[str, torch.Tensor]) -> Genome:
        chunk_of, genes = {}, []
        for g in groups:
            k = rank_groups(g.units)
            order = importance[g.name].argsort(dim=1, descending=True, stable=True)
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(g.units).expand_as(order).contiguous())
            chunk_of[g.name] = rank * k // g.units  # most important units in rank group 0
            genes.append(k)
        weights = torch.cat([torch.full((g.units,), float(g.kernels_per_unit)) for g in groups])
        return cls(groups, chunk_of, genes, weights)

    @property
    def modules(self) -> int:
        return next(iter(self.chunk_of.values())).shape[0]

    @property
    def offsets(self) -> list[int]:
        return gene_offsets(self.genes)

    def masks(self, individual: torch.Tensor, modules: list[int] | None = None) -> dict[str, torch.Tensor]:
        """individual [m, total genes] (bool) -> per-group unit masks [m, units] (float).

        The rows are modules ``modules`` (all n modules, in order, by default).
        """
        off = self.offsets
        return {g.name: individual[:, off[i] : off[i + 1]].gather(
                    1, self.chunk_of[g.name] if modules is None else self.chunk_of[g.name][modules]).float()
                for i, g in enumerate(self.groups)}

    def seed(self, n: int, keep_ratio: list[float], generator: torch.Generator, spread: float = 0.15,
             scale: float = 1.0) -> torch.Tensor:
        """One individual: each module keeps the top ~scale x keep_ratio (+- spread) of each group's rank groups."""
        parts = []
        for k, r in zip(self.genes, keep_ratio, strict=True):
            jitter = (torch.rand(n, generator=generator) * 2 - 1) * spread
            on = torch.clamp(torch.ceil((r * scale + jitter) * k), 1, k).long()
            parts.append(torch.arange(k)[None, :] < on[:, None])
        return torch.cat(parts, dim=1)


def gene_offsets(genes: list[int]) -> list[int]:
    """Where each group's genes start in an individual, and the total at the end."""
    return [0, *torch.tensor(genes).cumsum(0).tolist()]


def masked_logits(model: nn.Module, hooks: GroupMasks, masks: dict[str, torch.Tensor], x: torch.Tensor,
                  images_per_pass: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows of ``x``, logits [copies, rows, N]) with every mask copy run in one batched forward per chunk."""
    copies = next(iter(masks.values())).shape[0]
    step = max(1, images_per_pass // copies)
    with torch.no_grad(), hooks.active():
        hooks.set(masks)
        for i in range(0, len(x), step):
            xb = x[i : i + step]
            yield slice(i, i + len(xb)), model(xb.repeat(copies, 1, 1, 1)).view(copies, len(xb), -1)


class OwnLogits:
    """Each module's own-class logit on the fitness images, memoised per (module, its genes).

    A child made by crossover and light mutation shares most of its modules with individuals
    already scored, so only its new modules are run (as one batched masked forward); this, not
    the memo per whole genome, is what makes the steady-state search cheap.
    """

    def __init__(self, model: nn.Module, hooks: GroupMasks, genome: Genome, x: torch.Tensor,
                 images_per_pass: int = 3072):
        self.model, self.hooks, self.genome, self.x = model, hooks, genome, x
        self.images_per_pass = images_per_pass
        self.memo: dict[tuple[int, bytes], torch.Tensor] = {}
        self.modules_run = 0

    def __call__(self, individual: torch.Tensor) -> torch.Tensor:
        """[n, images] own-class logits of the individual's n modules."""
        keys = [(c, individual[c].numpy().tobytes()) for c in range(individual.shape[0])]
        new = [c for c, key in enumerate(keys) if key not in self.memo]
        if new:
            own = torch.empty(len(new), len(self.x))
            masks = self.genome.masks(individual[new], new)
            for rows, logits in masked_logits(self.model, self.hooks, masks, self.x, self.images_per_pass):
                own[:, rows] = logits[torch.arange(len(new)), :, torch.tensor(new)]
            for j, c in enumerate(new):
                self.memo[keys[c]] = own[j]
            self.modules_run += len(new)
        return torch.stack([self.memo[key] for key in keys])


def single_point_crossover(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A child taking a's genes before a random cut of the flattened genome and b's after it."""
    flat_a, flat_b = a.flatten(), b.flatten()
    cut = int(torch.randint(1, flat_a.numel(), (1,), generator=generator)) if flat_a.numel() > 1 else 0
    return torch.cat([flat_a[:cut], flat_b[cut:]]).view_as(a)


def mutate(individual: torch.Tensor, rate: float, generator: torch.Generator, genes: list[int]) -> torch.Tensor:
    """Flip each gene with probability ``rate``; every module keeps its top rank group in every group."""
    flips = torch.rand(individual.shape, generator=generator) < rate
    child = individual ^ flips
    for start in gene_offsets(genes)[:-1]:
        child[:, start] = True
    return child


def diversity(masks: dict[str, torch.Tensor], weights: torch.Tensor) -> float:
    """Mean pairwise 1 - Jaccard of the modules' kept kernels (each channel weighted by its kernels)."""
    kept = torch.cat([m for m in masks.values()], dim=1)  # [n, channels]
    n = kept.shape[0]
    if n < 2:
        return 0.0
    inter = (kept * weights) @ kept.T
    total = (kept * weights).sum(1)
    union = total[:, None] + total[None, :] - inter
    jac = inter / union.clamp_min(1e-9)
    iu = torch.triu_indices(n, n, 1)
    return float((1 - jac[iu[0], iu[1]]).mean())


class CNNSplitter(Splitter):
    name = "cnnsplitter"
    pretty_name = "CNNSplitter"
    paper = ("Qi et al., Patching Weak Convolutional Neural Network Models through Modularization and "
             "Composition, ASE 2022")
    paper_url = "https://doi.org/10.1145/3551349.3561153"
    config_class = CNNSplitterConfig

    def split(self, ctx: SplitContext) -> SplitOutcome:
        cfg: CNNSplitterConfig = self.config  # type: ignore[assignment]
        gen = torch.Generator().manual_seed(ctx.seed)
        torch.manual_seed(ctx.seed)
        n, model, groups = ctx.num_classes, ctx.model, ctx.groups
        hooks = GroupMasks(model, groups)
        fx, fy = _per_class(ctx.val_x, ctx.val_y, n, cfg.fitness_per_class)

        importance = kernel_importance(model, groups, ctx.train_x, ctx.train_y, n, cfg.confidence)
        genome = Genome.from_importance(groups, importance)
        own_logits = OwnLogits(model, hooks, genome, fx)
        parent_fitness_accuracy = own_accuracy(genome, own_logits, fy, [1.0] * len(groups), gen)
        steps = cfg.sensitivity_steps
        keep_ratio = _sensitivity(genome, own_logits, fy, gen, parent_fitness_accuracy - cfg.sensitivity_drop / 100,
                                  tuple((steps - i) / (steps + 1) for i in range(steps)))
        target = parent_fitness_accuracy - cfg.tolerance / 100
        memo: dict[bytes, tuple[float, float, float]] = {}

        def fitness(individual: torch.Tensor) -> tuple[float, float, float]:
            key = individual.numpy().tobytes()
            if key not in memo:
                acc = float((own_logits(individual).argmax(0) == fy).float().mean())
                div = diversity(genome.masks(individual), genome.weights)
                # feasible individuals (within tolerance of the parent) always rank above the rest
                fit = cfg.accuracy_weight * acc + (1 - cfg.accuracy_weight) * div if acc >= target else acc - 1
                memo[key] = (fit, acc, div)
            return memo[key]

        population = [genome.seed(n, ratio, gen, spread=0.0 if i == 0 else 0.1)
                      for i, ratio in enumerate(_seed_ratios(keep_ratio, cfg.population))]
        population = [mutate(p, cfg.mutation, gen, genome.genes) if i else p for i, p in enumerate(population)]
        scored = sorted(((fitness(p), p) for p in population), key=lambda t: -t[0][0])
        history = [_record(0, scored[0], genome)]
        bar = progress_bar(ctx.progress, cfg.generations, "cnnsplitter", "gen")
        stale = 0
        try:
            for generation in range(1, cfg.generations + 1):
                best_before = scored[0][0][0]
                for _ in range(cfg.offspring):
                    a, b = _tournament(scored, gen), _tournament(scored, gen)
                    child = mutate(single_point_crossover(a, b, gen), cfg.mutation, gen, genome.genes)
                    scored.append((fitness(child), child))
                scored = _unique_best(scored, cfg.population)
                history.append(_record(generation, scored[0], genome))
                bar.update(1)
                bar.set_postfix(best=f"{scored[0][0][0]:.4f}", acc=f"{scored[0][0][1]:.4f}",
                                kept=f"{history[-1]['retention']:.3f}")
                stale = 0 if scored[0][0][0] > best_before + 1e-9 else stale + 1
                if stale >= cfg.patience:
                    break
        finally:
            bar.close()

        best = scored[0][1]
        masks = genome.masks(best)
        val_accuracy = float((OwnLogits(model, hooks, genome, ctx.val_x)(best).argmax(0) == ctx.val_y).float().mean())
        slices = []
        for c in ctx.targets:
            kept = unit_channels(groups, {name: m[c] for name, m in masks.items()})
            slices.append(ClassSlice(class_index=c, kept=kept, head={"type": "logit", "in_features": n, "index": c}))
        metrics = {
            "generations_run": len(history) - 1,
            "candidates_scored": len(memo),
            "module_forwards": own_logits.modules_run,
            "val_accuracy": val_accuracy,
            "parent_val_accuracy": ctx.parent_val_accuracy,
            "parent_fitness_accuracy": parent_fitness_accuracy,
            "mean_retention": history[-1]["retention"],
            "initial_keep_ratio": {g.name: r for g, r in zip(groups, keep_ratio, strict=True)},
            "history": history,
        }
        return SplitOutcome(slices=slices, metrics=metrics)


def _per_class(x: torch.Tensor, y: torch.Tensor, n: int, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.cat([torch.nonzero(y == c).flatten()[:per_class] for c in range(n)])
    return x[idx], y[idx]


def _seed_ratios(keep_ratio: list[float], population: int) -> list[list[float]]:
    """Keep ratios the population starts from: the sensitivity ratios themselves, then alternately
    ratios moved towards keeping everything (alone, each group costs little, but the costs add up,
    so the search needs feasible starting points) and ratios scaled down to half (small modules)."""
    out = [list(keep_ratio)]
    for i in range(1, population):
        t = ((i + 1) // 2) / max(1, population // 2)
        if i % 2:
            out.append([r + (1 - r) * t for r in keep_ratio])
        else:
            out.append([r * (1 - 0.5 * t) for r in keep_ratio])
    return out


def own_accuracy(genome: Genome, own_logits: OwnLogits, y: torch.Tensor, keep: list[float],
                 generator: torch.Generator) -> float:
    """Composed accuracy when every module keeps the top ``keep[g]`` of its own channels in each group."""
    individual = genome.seed(genome.modules, keep, generator, spread=0.0)
    return float((own_logits(individual).argmax(0) == y).float().mean())


def _sensitivity(genome: Genome, own_logits: OwnLogits, y: torch.Tensor, generator: torch.Generator,
                 floor: float, ratios: tuple[float, ...] = tuple(r / 10 for r in range(9, 0, -1))) -> list[float]:
    """Per group, the smallest keep ratio whose composed accuracy stays at or above ``floor`` alone.

    Every module keeps its own most important channels of the group (the rest of the network
    whole), and the modules are composed as in the fitness, so the ratios measure what a module
    can lose rather than what the parent can. Ratios are tried from large to small until one fails.
    """
    out = []
    for i in range(len(genome.groups)):
        kept = 1.0
        for r in ratios:
            if own_accuracy(genome, own_logits, y, [r if j == i else 1.0 for j in range(len(genome.groups))],
                            generator) < floor:
                break
            kept = r
        out.append(kept)
    return out


def _tournament(scored: list, generator: torch.Generator, size: int = 3) -> torch.Tensor:
    picks = torch.randint(0, len(scored), (size,), generator=generator).tolist()
    return scored[min(picks)][1]  # scored is sorted best first


def _unique_best(scored: list, keep: int) -> list:
    seen, out = set(), []
    for item in sorted(scored, key=lambda t: -t[0][0]):
        key = item[1].numpy().tobytes()
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out[:keep]


def _record(generation: int, best: tuple, genome: Genome) -> dict:
    (fit, acc, div), individual = best
    masks = genome.masks(individual)
    kept = torch.cat(list(masks.values()), dim=1)
    retention = float(((kept * genome.weights).sum(1) / genome.weights.sum()).mean())
    return {"generation": generation, "fitness": fit, "fitness_accuracy": acc, "diversity": div,
            "retention": retention}

