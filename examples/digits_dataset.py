"""Save scikit-learn's 8x8 handwritten digits as a `datasets` folder hubmod reads like any other.

    python examples/digits_dataset.py ./digits                     # one train split, all 1,797 images
    python examples/digits_dataset.py ./digits --test-fraction 0.3 # train and test splits

The images are upscaled to 28 px gray (Fashion-MNIST's size) and the classes are named
'digit 0' .. 'digit 9', so they never share a name with a Fashion-MNIST class. A real second
dataset on every machine (scikit-learn ships it): use it as the other world of
``hubmod split ... --negatives ./digits``, or as a parent's data for a cross-domain composition.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def save_digits(path: str | Path, test_fraction: float = 0.0, seed: int = 0) -> Path:
    """Write the digits folder to ``path`` (unless it is there already) and return it. With a
    ``test_fraction``, a seeded permutation puts that share of the images in a test split."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
    from sklearn.datasets import load_digits

    path = Path(path)
    if (path / "dataset_dict.json").exists():
        return path
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), not {test_fraction}")
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).round().clamp(0, 255)
    images = x[:, 0].to(torch.uint8).numpy()
    labels = digits.target.astype(np.int64)
    features = Features({"image": Image(), "label": ClassLabel(names=[f"digit {d}" for d in range(10)])})

    def part(idx) -> Dataset:
        return Dataset.from_dict({"image": list(images[idx]), "label": labels[idx].tolist()}, features=features)

    if test_fraction == 0.0:
        splits = {"train": part(np.arange(len(labels)))}
    else:
        order = np.random.default_rng(seed).permutation(len(labels))
        cut = int((1.0 - test_fraction) * len(order))
        splits = {"train": part(order[:cut]), "test": part(order[cut:])}
    DatasetDict(splits).save_to_disk(str(path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", help="folder to write (left as it is if it already holds a dataset)")
    ap.add_argument("--test-fraction", type=float, default=0.0, help="share of the images in a test split")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train/test permutation")
    args = ap.parse_args()
    print(save_digits(args.output, args.test_fraction, args.seed))


if __name__ == "__main__":
    main()
