"""Train a timm CNN on Fashion-MNIST and publish it as a timm-format repo (a parent to split).

    python examples/train_parent.py --arch resnet18 --repo demo/resnet18-fmnist --epochs 2
    python examples/train_parent.py --arch hubmod_vgg --repo demo/vgg-fmnist --classes 0-4
    python examples/train_parent.py --arch resnet18 --repo demo/rn18-rgb32 --in-chans 3 --size 32
    python examples/train_parent.py --arch hubmod_vgg --repo demo/weak --scarce Shirt,Coat --epochs 1

The repo holds config.json (architecture, model_args, label_names, pretrained_cfg with the data
config) and model.safetensors, written by timm's own ``save_for_hf``: ``timm.create_model(
'hf-hub:<repo>', pretrained=True)`` loads it (for ``hubmod_vgg``, after ``import hubmod.archs``, which registers it).
"""

from __future__ import annotations

import argparse
import json

import torch

from hubmod.data import FASHION_MNIST, FASHION_MNIST_CLASSES, FASHION_MNIST_HF_ID, load_images
from hubmod.metrics import parent_report
from hubmod.training import fashion_mnist_config, hold_out, publish_parent, save_parent, train_parent


def parse_classes(text: str | None) -> list[str]:
    """'0-4', '5,7,9' or 'Sneaker,Bag' -> class names."""
    if not text:
        return list(FASHION_MNIST_CLASSES)
    out = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part and all(p.isdigit() for p in part.split("-", 1)):
            lo, hi = (int(p) for p in part.split("-", 1))
            out += FASHION_MNIST_CLASSES[lo : hi + 1]
        elif part.isdigit():
            out.append(FASHION_MNIST_CLASSES[int(part)])
        else:
            out.append(part)
    return out


def keep_few(images, scarce: list[str], count: int) -> torch.Tensor:
    """Indices of ``images`` with only the first ``count`` samples of each ``scarce`` class left."""
    unknown = [c for c in scarce if c not in images.class_names]
    if unknown:
        raise SystemExit(f"--scarce: unknown class {unknown[0]!r}; classes: {', '.join(images.class_names)}")
    keep = torch.ones(len(images), dtype=torch.bool)
    for name in scarce:
        idx = torch.nonzero(images.labels == images.class_names.index(name)).flatten()
        keep[idx[count:]] = False
    return torch.nonzero(keep).flatten()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18",
                    help="timm architecture (resnet18, hubmod_vgg, mobilenetv3_small_050, ...)")
    ap.add_argument("--repo", help="publish to this repo id on the hub")
    ap.add_argument("--output-dir", help="or write the repo files to this directory")
    ap.add_argument("--hub", default="local", help="local (embedded, default), hf, or an endpoint URL")
    ap.add_argument("--epochs", type=float, default=2.0, help="epochs (fractional: part of one epoch)")
    ap.add_argument("--classes", help="train on these classes only: '0-4', '5,6', 'Sneaker,Bag' (default: all 10)")
    ap.add_argument("--per-class", type=int, default=0, help="training images per class (0: all 6,000)")
    ap.add_argument("--scarce", help="classes to starve ('Shirt,Coat'): a model weak on just these, to patch")
    ap.add_argument("--scarce-count", type=int, default=20, help="training images kept of each --scarce class")
    ap.add_argument("--in-chans", type=int, default=1, help="input channels (3: gray images are repeated)")
    ap.add_argument("--size", type=int, default=28, help="input size in pixels")
    ap.add_argument("--model-args", default="{}", help="JSON of extra timm model arguments")
    ap.add_argument("--holdout-per-class", type=int, default=0,
                    help="keep this many training images per class out of training and name them in config.json; "
                         "hubmod split then validates on them (a fairer reference than images the parent saw)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--label-smoothing", type=float, default=0.1, help="the cross-entropy's label smoothing")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.repo and not args.output_dir:
        ap.error("give --repo (publish to the hub) or --output-dir")

    classes = parse_classes(args.classes)
    train = load_images(FASHION_MNIST, "train").for_classes(classes, args.arch)
    if args.per_class:
        train = train.subset(train.stratified(args.per_class, torch.Generator().manual_seed(args.seed)))
    if args.scarce:
        train = train.subset(keep_few(train, parse_classes(args.scarce), args.scarce_count))
    validation = None
    if args.holdout_per_class:
        train, validation = hold_out(train, args.holdout_per_class, args.seed, FASHION_MNIST)
    cfg = fashion_mnist_config(args.in_chans, args.size)
    parent = train_parent(args.arch, train, cfg, epochs=args.epochs, lr=args.lr, seed=args.seed,
                          model_args=json.loads(args.model_args), validation=validation,
                          label_smoothing=args.label_smoothing)
    test = load_images(FASHION_MNIST, "test").for_classes(classes, args.arch)
    acc = parent_report(parent.model, test, cfg).accuracy
    notes = f"Test accuracy on the {len(classes)} classes: {100 * acc:.2f} % ({len(test)} Fashion-MNIST test images)."
    result = {"arch": args.arch, "classes": classes, "test_accuracy": acc, "train_seconds": parent.train_seconds,
              "train_images": len(train)}
    if args.output_dir:
        save_parent(parent, args.output_dir, dataset_id=FASHION_MNIST_HF_ID, notes=notes)
        result["output_dir"] = args.output_dir
    if args.repo:
        result["repo"] = args.repo
        result["revision"] = publish_parent(parent, args.repo, args.hub, dataset_id=FASHION_MNIST_HF_ID, notes=notes)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
