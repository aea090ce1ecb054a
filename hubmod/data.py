"""Labelled images for splitting and evaluation, always read through ``datasets``.

A DATASET string follows the same explicit rules as a SOURCE:

* ``fashion-mnist`` — built in, read from Debian's ``dataset-fashion-mnist`` files;
* a path (``/``, ``./``, ``../``, ``~``) — a ``save_to_disk`` folder, parquet file(s), or an image
  folder (one sub-folder per class);
* anything else — a Hugging Face dataset id, loaded with ``datasets.load_dataset`` (its cache and
  ``HF_DATASETS_OFFLINE`` / ``HF_HUB_OFFLINE`` are honoured).

Labels are matched to a model's classes by name, never by position.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import HubmodError, NotFoundError, first_line, option
from .refs import looks_like_path
from .untrusted import printable

FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_HF_ID = "zalando-datasets/fashion_mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def fashion_mnist_dir() -> Path:
    return Path(os.environ.get("HUBMOD_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


@dataclass
class LabeledImages:
    """Decoded images as one uint8 tensor [n, C, H, W] with integer labels into ``class_names``."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    name: str
    split: str
    hub_id: str | None = None  # the dataset's id on the Hub, for model cards
    rows: torch.Tensor | None = None  # each image's row number in the split as loaded (None: 0..n-1)

    def __post_init__(self) -> None:
        if self.rows is None:
            self.rows = torch.arange(len(self.labels))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> LabeledImages:
        index = torch.as_tensor(index, dtype=torch.long)
        return LabeledImages(self.images[index], self.labels[index], self.class_names, self.name, self.split,
                             self.hub_id, self.rows[index])

    def rows_within(self, rows: list[int] | torch.Tensor) -> torch.Tensor:
        """Indices (into this set) of the images whose split row numbers are among ``rows``."""
        return torch.nonzero(torch.isin(self.rows, torch.as_tensor(rows, dtype=torch.long))).flatten()

    def for_classes(self, model_classes: list[str], where: str) -> LabeledImages:
        """Relabel to a model's class order (by name); drop samples of classes the model lacks.

        Raises if the model has a class this data has no samples of: a split or an evaluation
        without it would be silently wrong.
        """
        folded = {n.casefold(): i for i, n in enumerate(self.class_names)}
        mapping = torch.full((len(self.class_names),), -1, dtype=torch.long)
        missing = []
        for j, name in enumerate(model_classes):
            i = folded.get(name.casefold())
            if i is None:
                missing.append(name)
            else:
                mapping[i] = j
        if missing:
            raise HubmodError(
                f"dataset {self.name} has no class {', '.join(repr(m) for m in missing)} that {where} needs "
                f"(dataset classes: {', '.join(self.class_names)})"
            )
        new = mapping[self.labels]
        keep = new >= 0
        present = torch.bincount(new[keep], minlength=len(model_classes))
        empty = [model_classes[j] for j in range(len(model_classes)) if present[j] == 0]
        if empty:
            raise HubmodError(f"dataset {self.name} ({self.split}) has no samples of {', '.join(empty)}")
        return LabeledImages(self.images[keep], new[keep], list(model_classes), self.name, self.split, self.hub_id,
                             self.rows[keep])

    def stratified(self, per_class: int, generator: torch.Generator, exclude: torch.Tensor | None = None,
                   classes: list[int] | None = None) -> torch.Tensor:
        """Up to ``per_class`` random indices of each class (of ``classes``, default all; not in
        ``exclude``), shuffled."""
        allowed = self._allowed(exclude)
        picks = []
        for c in range(len(self.class_names)) if classes is None else classes:
            idx = torch.nonzero((self.labels == c) & allowed).flatten()
            idx = idx[torch.randperm(len(idx), generator=generator)[:per_class]]
            picks.append(idx)
        out = torch.cat(picks) if picks else torch.empty(0, dtype=torch.long)
        return out[torch.randperm(len(out), generator=generator)]

    def sample_outside(self, classes: list[int], total: int, generator: torch.Generator,
                       exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Up to ``total`` random indices of images whose class is not in ``classes`` (not in ``exclude``)."""
        allowed = self._allowed(exclude) & ~torch.isin(self.labels, torch.tensor(classes, dtype=self.labels.dtype))
        idx = torch.nonzero(allowed).flatten()
        return idx[torch.randperm(len(idx), generator=generator)[:total]]

    def _allowed(self, exclude: torch.Tensor | None) -> torch.Tensor:
        allowed = torch.ones(len(self), dtype=torch.bool)
        if exclude is not None and len(exclude):
            allowed[exclude] = False
        return allowed


# --------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _check_split(spec: str, split: str, splits) -> None:
    if split not in splits:
        raise NotFoundError(f"dataset {spec} has no split {split!r}; it has: {', '.join(splits)}")


def fashion_mnist(split: str = "train"):
    """Fashion-MNIST as a ``datasets.Dataset`` (image: 28x28 uint8 Array2D, label: ClassLabel)."""
    from datasets import Array2D, ClassLabel, Dataset, Features

    _check_split(FASHION_MNIST, split, _FMNIST_FILES)
    root = fashion_mnist_dir()
    img_file, lbl_file = (root / f for f in _FMNIST_FILES[split])
    if not img_file.is_file() or not lbl_file.is_file():
        raise NotFoundError(
            f"Fashion-MNIST files are missing in {root}: run `apt-get install dataset-fashion-mnist` "
            "(or point HUBMOD_FASHION_MNIST_DIR at the idx .gz files)"
        )
    images, labels = _read_idx(img_file), _read_idx(lbl_file)
    features = Features({"image": Array2D((28, 28), "uint8"), "label": ClassLabel(names=FASHION_MNIST_CLASSES)})
    return Dataset.from_dict({"image": images, "label": labels.astype(np.int64)}, features=features)


# --------------------------------------------------------------------------- generic loading


def _open(spec: str, streaming: bool = False):
    """A ``datasets`` (Iterable)Dataset or (Iterable)DatasetDict for a DATASET string (without choosing a split).

    With ``streaming``, nothing is read up front: hub datasets, parquet files and image folders are
    opened as streams, a ``save_to_disk`` folder is memory-mapped Arrow and iterated lazily.
    """
    import datasets

    if looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise NotFoundError(f"dataset path {path} does not exist")
        if path.is_file() and path.suffix == ".parquet":
            return datasets.load_dataset("parquet", data_files={"train": str(path)}, streaming=streaming)
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
            return datasets.load_from_disk(str(path))
        if path.is_dir() and any(path.rglob("*.parquet")):
            files = sorted(path.rglob("*.parquet"))
            by_split: dict[str, list[str]] = {}
            for f in files:
                split = next((s for s in ("train", "test", "validation") if s in f.stem), "train")
                by_split.setdefault(split, []).append(str(f))
            return datasets.load_dataset("parquet", data_files=by_split, streaming=streaming)
        if path.is_dir():
            return datasets.load_dataset("imagefolder", data_dir=str(path), streaming=streaming)
        raise HubmodError(f"cannot read dataset {path}: give a save_to_disk folder, parquet files or an image folder")
    try:
        return datasets.load_dataset(spec, streaming=streaming)
    except FileNotFoundError as e:
        raise NotFoundError(f"dataset {spec!r} not found locally or on the Hub{_did_you_mean(spec)} "
                            f"({first_line(e)})") from None
    except (ConnectionError, OSError, ValueError) as e:
        hint = _did_you_mean(spec)
        if hint:
            raise NotFoundError(f"dataset {spec!r} could not be loaded{hint} ({first_line(e)})") from None
        raise HubmodError(f"cannot load dataset {spec!r}: {first_line(e)}") from None


def _did_you_mean(spec: str) -> str:
    """'; did you mean 'fashion-mnist'?' when ``spec`` looks like a typo of a name hubmod knows."""
    import difflib

    close = difflib.get_close_matches(spec.lower(), [FASHION_MNIST, FASHION_MNIST_HF_ID], n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def dataset_splits(spec: str, streaming: bool = False) -> list[str]:
    import datasets

    if spec == FASHION_MNIST:
        return list(_FMNIST_FILES)
    ds = _open(spec, streaming=streaming)
    return list(ds.keys()) if isinstance(ds, datasets.DatasetDict | datasets.IterableDatasetDict) else ["train"]


def load_images(spec: str, split: str = "train", size: tuple[int, int] | None = None) -> LabeledImages:
    """Decode one split of a DATASET into uint8 tensors.

    Images of different sizes are resized (shorter side, then centre crop) to ``size``, which the
    caller takes from the model's input size; same-size images are kept as they are.
    """

    if spec == FASHION_MNIST:  # built lazily: only the split asked for is decoded, once per process
        _check_split(spec, split, _FMNIST_FILES)
        return dataclasses.replace(_fashion_mnist_images(split, str(fashion_mnist_dir())))
    ds = _open_split(spec, split)
    hub_id = _hub_id(spec)
    return dataset_to_images(ds, name=spec, split=split, size=size, hub_id=hub_id)


def _open_split(spec: str, split: str):
    """One split of a DATASET (not the built-in one) as a ``datasets.Dataset``; one line if it has no such split."""
    import datasets

    ds = _open(spec)
    if isinstance(ds, datasets.DatasetDict):
        _check_split(spec, split, ds)
        return ds[split]
    if split != "train":
        raise NotFoundError(f"dataset {spec} has a single split; use {option('split', 'train')}")
    return ds


def load_unlabelled_images(spec: str, split: str = "train", size: tuple[int, int] | None = None
                           ) -> tuple[torch.Tensor, str | None]:
    """The images of one split of a DATASET, uint8 [n, C, H, W], and its Hub id; no label column is
    needed and any there is not read (``compose --adapt``: images of a task nobody labelled)."""
    if spec == FASHION_MNIST:
        _check_split(spec, split, _FMNIST_FILES)
        return _fashion_mnist_images(split, str(fashion_mnist_dir())).images, FASHION_MNIST_HF_ID
    ds = _open_split(spec, split)
    column = _image_column(ds)
    if column is None:
        raise HubmodError(f"dataset {spec} has no image column; it has: {', '.join(ds.features)} "
                          "(hubmod looks for an Image or Array feature)")
    if len(ds) == 0:
        raise HubmodError(f"dataset {spec} has no images in its {split} split")
    return _decode_images(ds, column, size, image_roots(spec)), _hub_id(spec)


@functools.lru_cache(maxsize=2)
def _fashion_mnist_images(split: str, root: str) -> LabeledImages:
    """The built-in dataset, decoded once and kept for the process's later splits and evaluations (decoding
    is a large share of a short split). The tensors are shared: callers take subsets and preprocessed
    copies, never write into them."""
    return dataset_to_images(fashion_mnist(split), name=FASHION_MNIST, split=split, hub_id=FASHION_MNIST_HF_ID)


def _hub_id(spec: str) -> str | None:
    """The dataset's id on the Hub, for model cards (none for a local path)."""
    return FASHION_MNIST_HF_ID if spec == FASHION_MNIST else (None if looks_like_path(spec) else spec)


def _image_column(ds) -> str | None:
    from datasets import Array2D, Array3D, Image

    feats = ds.features
    image_col = next((c for c, f in feats.items() if isinstance(f, Image | Array2D | Array3D)), None)
    return image_col or next((c for c in ("image", "img", "pixel_values") if c in feats), None)


def _columns(ds) -> tuple[str, str]:
    from datasets import ClassLabel

    feats = ds.features
    image_col = _image_column(ds)
    label_col = next((c for c, f in feats.items() if isinstance(f, ClassLabel)), None)
    label_col = label_col or next((c for c in ("label", "labels", "fine_label") if c in feats), None)
    if image_col is None or label_col is None:
        raise HubmodError(
            f"dataset needs an image column and a label column; it has: {', '.join(feats)} "
            "(hubmod looks for an Image/Array feature and a ClassLabel feature)"
        )
    return image_col, label_col


def dataset_to_images(ds, name: str, split: str, size: tuple[int, int] | None = None,
                      hub_id: str | None = None) -> LabeledImages:
    from datasets import ClassLabel

    image_col, label_col = _columns(ds)
    label_feat = ds.features[label_col]
    raw_labels = ds.with_format("numpy", columns=[label_col])[:][label_col]
    if isinstance(label_feat, ClassLabel):
        class_names = list(label_feat.names)
        labels = torch.as_tensor(np.asarray(raw_labels, dtype=np.int64))
    else:  # string labels: the names are the values themselves
        values = [str(v) for v in raw_labels]
        class_names = sorted(set(values))
        index = {n: i for i, n in enumerate(class_names)}
        labels = torch.tensor([index[v] for v in values], dtype=torch.long)
    images = _decode_images(ds, image_col, size, image_roots(name))
    if len(images) != len(labels):
        raise HubmodError(f"dataset {name}: {len(images)} images but {len(labels)} labels")
    return LabeledImages(images, labels, class_names, name, split, hub_id)


def _decode_images(ds, column: str, size: tuple[int, int] | None, roots: list[Path]) -> torch.Tensor:
    from datasets import Image

    if not isinstance(ds.features[column], Image):
        arr = _as_uint8(np.asarray(ds.with_format("numpy", columns=[column])[:][column]),
                        f"image column {column!r} holds")
        t = torch.from_numpy(arr)
        return t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
    encoded = ds.cast_column(column, Image(decode=False))[column]  # decoded here, where file paths are checked
    return _stack([_decode_one(value, True, roots) for value in encoded], size)


def _as_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    """Pixel values as uint8, refusing values a byte cannot hold rather than wrapping them around."""
    if arr.dtype == np.uint8:
        return arr
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise HubmodError(f"{what} values outside 0..255")
    return arr.astype(np.uint8)


def _stack(tensors: list[torch.Tensor], size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 [C, H, W] images as one batch; differing sizes are resized to ``size``."""
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) == 1:
        return torch.stack(tensors)
    if size is None:
        raise HubmodError("images differ in size; hubmod needs a target size to batch them")
    channels = max(t.shape[0] for t in tensors)
    return torch.stack([_resize_u8(_expand(t, channels), size) for t in tensors])


def _expand(t: torch.Tensor, channels: int) -> torch.Tensor:
    return t.expand(channels, -1, -1) if t.shape[0] == 1 and channels == 3 else t[:channels]


def _resize_u8(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    from .preprocess import DataConfig, _resize_crop

    cfg = DataConfig((t.shape[0], *size), (0.0,) * t.shape[0], (1.0,) * t.shape[0])
    x = _resize_crop(t[None].float(), cfg)[0]
    return x.round().clamp(0, 255).to(torch.uint8)


def load_for_model(spec: str, split: str, class_names: list[str], where: str,
                   size: tuple[int, int] | None = None) -> LabeledImages:
    """One split, relabelled to a model's classes (by name)."""
    return load_images(spec, split, size).for_classes(class_names, where)


# --------------------------------------------------------------------------- streaming


STREAM_SHUFFLE_BUFFER = 2048


def sample_stream(spec: str, split: str, class_names: list[str], where: str, quotas: list[int],
                  size: tuple[int, int] | None = None, seed: int = 0) -> list[LabeledImages]:
    """Per-class samples of one split, read as a shuffled stream: only the images kept are decoded.

    ``quotas`` gives how many images of each class go to each returned part (e.g. validation, then
    training), so the parts are disjoint. Reading stops as soon as every quota is filled, which is
    what lets a split of a big dataset hold a few thousand decoded images instead of all of them.
    """
    from datasets import ClassLabel, Image

    stream = _stream_split(spec, split)
    features = stream.features
    if features is None:
        raise HubmodError(f"dataset {spec} does not declare its features, which streaming needs; "
                          f"run the split without {option('stream', True)}")
    image_col, label_col = _columns(stream)
    raw_images = isinstance(features[image_col], Image)
    if raw_images:  # keep the encoded bytes until an image is kept
        stream = stream.cast_column(image_col, Image(decode=False))
    label_feat = features[label_col]
    names = list(label_feat.names) if isinstance(label_feat, ClassLabel) else None
    folded = {n.casefold(): j for j, n in enumerate(class_names)}
    if names is not None:
        missing = [c for c in class_names if c.casefold() not in {n.casefold() for n in names}]
        if missing:
            raise HubmodError(f"dataset {spec} has no class {', '.join(repr(m) for m in missing)} that {where} "
                              f"needs (dataset classes: {', '.join(names)})")
    roots = image_roots(spec)
    want = sum(quotas) * len(class_names)
    got: list[list[list[torch.Tensor]]] = [[[] for _ in class_names] for _ in quotas]
    filled = 0
    for example in stream.shuffle(seed=seed, buffer_size=STREAM_SHUFFLE_BUFFER):
        label = example[label_col]
        j = folded.get((names[label] if names is not None else str(label)).casefold())
        if j is None:
            continue
        part = next((p for p, q in enumerate(quotas) if len(got[p][j]) < q), None)
        if part is None:
            continue
        got[part][j].append(_decode_one(example[image_col], raw_images, roots))
        filled += 1
        if filled == want:
            break
    empty = [class_names[j] for j in range(len(class_names)) if not any(got[p][j] for p in range(len(quotas)))]
    if empty:
        raise HubmodError(f"dataset {spec} ({split}) has no samples of {', '.join(empty)}")
    hub_id = _hub_id(spec)
    parts = []
    for p in range(len(quotas)):
        tensors = [t for j in range(len(class_names)) for t in got[p][j]]
        labels = torch.tensor([j for j in range(len(class_names)) for _ in got[p][j]], dtype=torch.long)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + p))
        images = _stack(tensors, size) if tensors else torch.empty(0, 1, *(size or (1, 1)), dtype=torch.uint8)
        parts.append(LabeledImages(images[order], labels[order], list(class_names), spec,
                                   f"{split} (streamed sample)", hub_id))
    return parts


def _stream_split(spec: str, split: str):
    """One split as an ``IterableDataset``."""
    import datasets

    if spec == FASHION_MNIST:
        _check_split(spec, split, _FMNIST_FILES)
        return fashion_mnist(split).to_iterable_dataset(num_shards=8)
    ds = _open(spec, streaming=True)
    if isinstance(ds, datasets.DatasetDict | datasets.IterableDatasetDict):
        _check_split(spec, split, ds)
        ds = ds[split]
    elif split != "train":
        raise NotFoundError(f"dataset {spec} has a single split; use {option('split', 'train')}")
    return ds.to_iterable_dataset(num_shards=8) if isinstance(ds, datasets.Dataset) else ds


def image_roots(spec: str) -> list[Path]:
    """Where a dataset's image files may be read from: its own folder, or (from the Hub) the download caches.

    A row of a dataset can name an image by file path instead of holding its bytes; a path
    anywhere else (``/etc/...``, ``~/.ssh/...``) is refused, not opened.
    """
    if looks_like_path(spec):
        path = Path(spec).expanduser().resolve()
        return [path if path.is_dir() else path.parent]
    import datasets.config
    from huggingface_hub import constants

    return [Path(datasets.config.HF_DATASETS_CACHE).resolve(), Path(constants.HF_HUB_CACHE).resolve()]


def _decode_one(value, encoded: bool, roots: list[Path]) -> torch.Tensor:
    """One image, from encoded bytes / a file path under ``roots``, or from an array."""
    if not encoded:
        arr = _as_uint8(np.asarray(value), "image")
        t = torch.from_numpy(np.ascontiguousarray(arr))
        return t[None] if t.ndim == 2 else t.permute(2, 0, 1).contiguous()
    import io

    from PIL import Image as PILImage

    from .preprocess import _pil_to_chw

    if value.get("bytes") is not None:
        source = io.BytesIO(value["bytes"])
    elif isinstance(value.get("path"), str) and value["path"]:
        source = Path(value["path"]).resolve()
        if "://" in value["path"] or not any(source.is_relative_to(r) for r in roots):
            raise HubmodError(f"an image of the dataset names the file {printable(value['path'])[:200]!r}, outside "
                              "the dataset's own folder; hubmod only opens image files of the dataset")
    else:
        raise HubmodError("an image in the dataset has neither bytes nor a path")
    try:
        return _pil_to_chw(PILImage.open(source))
    except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise HubmodError(f"an image of the dataset cannot be decoded ({printable(e)[:200]})") from None
