"""Benchmark: the zero-shot rules and ``--adapt`` on the vgg + resnet18 pair trained four times longer.

    python benchmarks/longer_parents_fmnist.py            # measure (trains and splits what the hub lacks)
    python benchmarks/longer_parents_fmnist.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

zero_shot_fmnist.py and adapt_fmnist.py measure modules of parents trained for 3 epochs, a budget
chosen for 2 CPU cores, not for the parents' quality. A module can only be as good as the features
its parent learned, so this script measures the same rules, on the same problems and with the same
code (second_pair_fmnist.py's), on reuse_fmnist.py's ``LONGER`` pair: the same architectures and
recipe, trained for 12 epochs, twice (seeds 0 and 1). Results go to
benchmarks/results/longer_parents.json and BENCHMARKS.md.
"""

from __future__ import annotations

import second_pair_fmnist
from common import RESULTS, section_main
from reuse_fmnist import LONGER

OUT = RESULTS / "longer_parents.json"
SECTION = "longer-parents"
TRAININGS = (0, 1)


def main() -> None:
    section_main(__doc__, SECTION, "Zero-shot and `--adapt` on parents trained longer", OUT,
                 lambda: second_pair_fmnist.measure(LONGER, TRAININGS), second_pair_fmnist.render,
                 prepare=lambda: second_pair_fmnist.ensure_trainings(LONGER, TRAININGS))


if __name__ == "__main__":
    main()
