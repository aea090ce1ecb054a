"""Composing by class name (``hubmod compose CLASS... --from-hub``): the best module per class, chosen by measurement.

For each class, the modules `hubmod.find` lists with the best recorded F1 are the candidates. With
labelled images of the task (``--fit``), every candidate runs once on the same K images per class,
and the choice is the set under which the composition's cross-validated accuracy on those images is
highest: coordinate ascent from the choice without labels, one class at a time, as GradSplitter's reuse
experiments picked among candidate modules on a labelled mixed validation set. The combiner is then
fitted on the same images. Without labels the choice covers the classes with as few splits as it
can (modules of one split were trained to compete and compose about as well as their parent), or,
asked to, takes each class's best recorded F1. Both are weaker than measuring, recorded F1s
especially: each was measured against its own parent's other classes, not against this task's.
Every candidate considered, its score and why the chosen one won are recorded in the composed repo.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from . import calibration
from .combiners import DEFAULT_PENALTY, cross_validated_accuracy
from .composed import DEFAULT_COMBINER, ComposedClassifier, auto_calibration, check_fit_args, module_at, module_in
from .discovery import FoundModule, find
from .errors import HubmodError, InvalidRepoError, option
from .hub import Hub, get_hub
from .module import ClassModule
from .preprocess import batches_by_config
from .refs import same_class, slugify
from .untrusted import printable

logger = logging.getLogger(__name__)

DEFAULT_CANDIDATES = 5
MAX_CANDIDATES = 50
MAX_PASSES = 3  # coordinate ascent stops earlier when a pass changes nothing
BY_FIT = "fit"
BY_F1 = "recorded_f1"
BY_SPLITS = "fewest_splits"
UNLABELLED = {"splits": BY_SPLITS, "f1": BY_F1}  # how to choose without --fit (the option's values)
DEFAULT_UNLABELLED = "splits"  # the better of the two on every problem of BENCHMARKS.md, compose-from-hub


@dataclass
class Candidate:
    """One module considered for a class: where it is, what its card recorded, what it scored here."""

    class_name: str
    repo_id: str
    revision: str
    parent: str | None
    f1: float | None  # test F1 recorded at split time, within its own parent's classes
    score: float | None = None  # cross-validated accuracy of the composition with this module (BY_FIT)
    loss: float | None = None  # its mean held-out log-loss, which breaks ties in accuracy

    def record(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _check_args(classes: Sequence[str], candidates: int) -> None:
    if not classes or any(not isinstance(c, str) or not c.strip() for c in classes):
        raise HubmodError("name the classes to compose, e.g. hubmod compose Sneaker Bag --from-hub")
    seen: dict[str, str] = {}
    for c in classes:
        key = slugify(c) or c.casefold()
        if key in seen:
            raise HubmodError(f"{seen[key]!r} and {c!r} name the same class: name each class once")
        seen[key] = c
    if type(candidates) is not int or not 1 <= candidates <= MAX_CANDIDATES:
        raise HubmodError(f"{option('candidates')} must be a whole number from 1 to {MAX_CANDIDATES} "
                          f"(got {candidates!r})")


Loaded = dict[str, list[tuple[Candidate, ClassModule]]]  # each class's candidates, best recorded F1 first


def _load_candidates(found: dict[str, list[FoundModule]], target: Hub) -> Loaded:
    """Each class's candidates loaded at the commit the listing gave; a repo that fails to load is skipped."""
    loaded: Loaded = {}
    for wanted, rows in found.items():
        loaded[wanted] = []
        for row in rows:
            where = f"candidate {printable(row.repo_id)} for {printable(wanted)!r}"
            try:
                if row.sha is not None:
                    module, prov = module_at(target, row.repo_id, row.sha, where)
                else:
                    module, prov = module_in(target.snapshot(row.repo_id))
            except (InvalidRepoError, HubmodError) as e:
                logger.warning("skipping %s: %s", where, e)
                continue
            if not same_class(module.class_name, wanted):
                logger.warning("skipping %s: its card says %r but the module holds class %r", where,
                               printable(wanted), printable(module.class_name))
                continue
            loaded[wanted].append((Candidate(module.class_name, row.repo_id, prov["revision"], row.parent, row.f1),
                                   module))
    empty = [c for c, pairs in loaded.items() if not pairs]
    if empty:
        raise HubmodError(f"no loadable module of class {', '.join(map(repr, empty))} on the hub {target.name}: "
                          "split a parent that has it first (hubmod split REPO)")
    return loaded


def _f1(cand: Candidate) -> float:
    return cand.f1 if cand.f1 is not None else -1.0


def _by_f1(pairs: list[tuple[Candidate, ClassModule]]) -> int:
    return max(range(len(pairs)), key=lambda i: (_f1(pairs[i][0]), -i))


def _split_key(cand: Candidate, module: ClassModule) -> str:
    return module.config.split_id or f"repo {cand.repo_id}"  # a module written before split ids: its own split


def _by_splits(loaded: Loaded) -> list[int]:
    """As few splits as cover the classes: repeatedly the split with modules of the most classes still
    uncovered (ties: the better mean recorded F1), its best-F1 module of each. Modules of one split were
    trained to compete, so they compose about as well as their parent; modules of different splits were not."""
    classes, choice = list(loaded), {}
    while len(choice) < len(classes):
        cover: dict[str, dict[str, int]] = {}
        for c in classes:
            if c in choice:
                continue
            for j, (cand, module) in enumerate(loaded[c]):
                best = cover.setdefault(_split_key(cand, module), {})
                if c not in best or _f1(cand) > _f1(loaded[c][best[c]][0]):
                    best[c] = j
        reach = {key: (len(best), sum(_f1(loaded[c][j][0]) for c, j in best.items()) / len(best))
                 for key, best in cover.items()}
        choice.update(cover[max(sorted(cover), key=reach.__getitem__)])
    return [choice[c] for c in classes]


class _Outputs:
    """Every candidate's head input and raw score on the fit images, computed once; calibrated per rule on demand."""

    def __init__(self, modules: list[ClassModule], images: torch.Tensor):
        feats: list[list[torch.Tensor]] = [[] for _ in modules]
        raws: list[list[torch.Tensor]] = [[] for _ in modules]
        with torch.no_grad():
            for inputs in batches_by_config(images, [m.data_config for m in modules], 256, "the candidates"):
                for i, m in enumerate(modules):
                    f = m.head_input(inputs[m.data_config])
                    feats[i].append(f.cpu())
                    raws[i].append(m.head(f).cpu())
        self.modules = modules
        self.features = [torch.cat(f) for f in feats]
        self.raw = [torch.cat(r) for r in raws]
        self._calibrated: dict[tuple[int, str], torch.Tensor] = {}

    def scores(self, i: int, method: str) -> torch.Tensor:
        if (i, method) not in self._calibrated:
            self._calibrated[i, method] = self.modules[i].calibrated(self.raw[i], method, self.features[i])
        return self._calibrated[i, method]


def _choose_by_fit(loaded: Loaded, images: torch.Tensor, labels: torch.Tensor, combiner: str,
                   calibration_method: str, seed: int, start: list[int]) -> list[int]:
    """Per class, the candidate index under which the composition's cross-validated accuracy is best
    (coordinate ascent from ``start``)."""
    classes = list(loaded)
    flat = [(c, j) for c in classes for j in range(len(loaded[c]))]
    outputs = _Outputs([loaded[c][j][1] for c, j in flat], images)
    index = {key: i for i, key in enumerate(flat)}

    def measure(choice: list[int]) -> tuple[float, float]:
        ids = [index[c, j] for c, j in zip(classes, choice, strict=True)]
        method = calibration_method
        if method == calibration.AUTO:
            method = auto_calibration([outputs.modules[i] for i in ids])
        scores = torch.stack([outputs.scores(i, method) for i in ids], dim=1)
        features = torch.cat([outputs.features[i] for i in ids], dim=1)
        return cross_validated_accuracy(combiner, scores, features, labels, torch.Generator().manual_seed(seed))

    choice = list(start)
    best = measure(choice)
    for _ in range(MAX_PASSES):
        changed = False
        for k, c in enumerate(classes):
            for j in range(len(loaded[c])):
                trial = choice[:k] + [j] + choice[k + 1 :]
                acc, loss = best if j == choice[k] else measure(trial)
                if j != choice[k] and (acc, -loss) > (best[0], -best[1]):
                    choice, best, changed = trial, (acc, loss), True
        if not changed:
            break
    for k, c in enumerate(classes):  # each candidate's score: the composition with it, the others as chosen
        for j, (cand, _) in enumerate(loaded[c]):
            cand.score, cand.loss = best if j == choice[k] else measure(choice[:k] + [j] + choice[k + 1 :])
    return choice


def _why(pairs: list[tuple[Candidate, ClassModule]], chosen: int, by: str, covered: int = 0, of: int = 0) -> str:
    if len(pairs) == 1:
        return "the only candidate"
    if by == BY_SPLITS:
        parent = pairs[chosen][0].parent or "an unnamed parent"
        return (f"of the split of {parent}, which covers {covered} of the {of} classes (fewest splits: modules of "
                "one split were trained to compete); no labelled images, so a weaker choice than --fit")
    others = [c for i, (c, _) in enumerate(pairs) if i != chosen]
    if by == BY_FIT:
        best = pairs[chosen][0]
        runner = max(others, key=lambda o: (o.score, -o.loss))
        if best.score == runner.score:
            return (f"the composition's cross-validated accuracy ties at {best.score:.2%} with another candidate; "
                    f"its held-out log-loss is the lowest ({best.loss:.3f}, next {runner.loss:.3f})")
        return f"highest cross-validated accuracy of the composition ({best.score:.2%}, next {runner.score:.2%})"
    return "highest recorded F1 (no labelled images: F1s of different parents are not measured on this task)"


def compose_from_hub(classes: Sequence[str], output: str | None = None, hub: str | Hub | None = None,
                     candidates: int = DEFAULT_CANDIDATES, fit: str | None = None, shots: int = 10,
                     combiner: str = DEFAULT_COMBINER, calibration_method: str = calibration.AUTO, seed: int = 0,
                     fit_split: str | None = None, private: bool = False,
                     unlabelled: str = DEFAULT_UNLABELLED, adapt: str | None = None,
                     adapt_split: str = "train") -> ComposedClassifier:
    """A classifier for ``classes`` assembled from the best modules ``hub`` holds, chosen as the module docstring says.

    ``candidates``: modules considered per class (the best by recorded F1). With ``fit``, a combiner
    of kind ``combiner`` is fitted on the same ``shots`` images per class the choice was measured on.
    ``unlabelled``: the choice without ``fit``, and where the measured choice starts: ``splits`` (as few
    splits as cover the classes) or ``f1`` (each class's best recorded F1). ``adapt``: unlabelled images of the
    task the chosen modules' scores are balanced on (hubmod.adaptation); not with ``fit``.
    """
    _check_args(classes, candidates)
    if unlabelled not in UNLABELLED:
        raise HubmodError(f"unknown choice {option('unlabelled', unlabelled)}; use one of {', '.join(UNLABELLED)}")
    check_fit_args(fit, shots, combiner, adapt)
    target = get_hub(hub)
    found = find(list(classes), hub=target, sort="f1", limit=candidates)
    missing = [c for c, rows in found.items() if not rows]
    if missing:
        raise HubmodError(f"no module of class {', '.join(map(repr, missing))} on the hub {target.name}: split a "
                          "parent that has it first (hubmod split REPO), or check the class name with hubmod find")
    loaded = _load_candidates(found, target)
    names = [loaded[c][0][1].class_name for c in classes]
    blind = UNLABELLED[unlabelled]
    choice = _by_splits(loaded) if blind == BY_SPLITS else [_by_f1(loaded[c]) for c in classes]
    drawn = None
    if fit is not None:
        from .fitting import draw_fit_images

        everyone = [m for c in classes for _, m in loaded[c]]
        drawn = draw_fit_images(everyone, fit, shots, seed, fit_split, class_names=names, fall_back=True)
        choice = _choose_by_fit(loaded, drawn[0].images, drawn[0].labels, combiner, calibration_method, seed, choice)
        by = BY_FIT
    else:
        by = blind
        logger.warning("no labelled images (--fit): modules chosen by %s, a weaker choice than measuring them",
                       "fewest splits" if by == BY_SPLITS else "recorded F1")
    splits = [_split_key(*loaded[c][j]) for c, j in zip(classes, choice, strict=True)]
    chosen = [loaded[c][j] for c, j in zip(classes, choice, strict=True)]
    modules = [m for _, m in chosen]
    method = auto_calibration(modules) if calibration_method == calibration.AUTO else calibration_method
    provenance = [{"repo_id": cand.repo_id, "revision": cand.revision, "hub": target.name} for cand, _ in chosen]
    model = ComposedClassifier(modules, method, provenance)
    if drawn is not None:
        from .fitting import fit_combiner

        fit_combiner(model, fit, shots, combiner, seed, fit_split, drawn=drawn)
    if adapt is not None:
        from .adaptation import adapt_combiner

        adapt_combiner(model, adapt, adapt_split, seed)
    model.selection = {
        "by": by, "hub": target.name, "candidates_per_class": candidates, "unlabelled": unlabelled,
        "penalty": DEFAULT_PENALTY if by == BY_FIT else None,
        "classes": [{"class_name": n, "chosen": j, "why": _why(loaded[c], j, by, splits.count(key), len(classes)),
                     "candidates": [cand.record() for cand, _ in loaded[c]]}
                    for c, n, j, key in zip(classes, names, choice, splits, strict=True)],
    }
    if model.selection["penalty"] is None:
        del model.selection["penalty"]
    if output:
        model.push_to_hub(output, hub, private=private)
    return model
