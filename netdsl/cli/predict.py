"""`netdsl predict`: classify image files (and .npy arrays) with a trained network.

Each image is seen as training saw it: pixels in [0, 1], fitted to the network's input the way
its data set was (the whole image resized for digits/MNIST/CIFAR; the shorter side resized and
the centre cropped for folder:DIR), standardised with the data set's mean and standard deviation
per channel, all read from the checkpoint (netdsl train --save records them with the class
names). The batch runs through the inference path (Model.predict).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..errors import NetError
from .args import common, compile_file, positive_int, warn
from .paths import reads

NPY = ".npy"


def _read_array(path: Path) -> np.ndarray:
    """A .npy image: H x W, C x H x W or H x W x C; integers as 0-255 pixels, floats as [0, 1]."""
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise NetError(f"{path}: not a readable .npy array ({exc})") from None
    if a.dtype.kind not in "uif" or a.ndim not in (2, 3):
        raise NetError(f"{path}: a {a.dtype} array of shape {a.shape} is not an image "
                       "(H x W, C x H x W or H x W x C numbers)")
    if a.ndim == 2:
        a = a[None]
    elif a.shape[0] not in (1, 3) and a.shape[2] in (1, 3):
        a = a.transpose(2, 0, 1)
    a = a.astype(np.float32) / (255.0 if a.dtype.kind in "ui" else 1.0)
    if not np.isfinite(a).all():
        raise NetError(f"{path}: the array holds NaN or inf values")
    return a


def _read_picture(path: Path, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            a = np.asarray(img.convert("RGB" if channels == 3 else "L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise NetError(f"{path}: not an image Pillow can read ({exc})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def read_image(path: str, shape: tuple[int, int, int], data: dict | None) -> np.ndarray:
    """One file as the network's C x H x W input, fitted and standardised as `data` says (None:
    pixels in [0, 1] as they are, only resized)."""
    from ..train.data import resize
    p = Path(path)
    if not p.exists():
        raise NetError(f"{path}: no such file")
    if not p.is_file():
        raise NetError(f"{path}: not a file")
    c, h, w = shape
    a = _read_array(p) if p.suffix.lower() == NPY else _read_picture(p, c)
    if a.shape[0] != c:
        raise NetError(f"{path}: the image has {a.shape[0]} channel{'s' if a.shape[0] != 1 else ''}, "
                       f"the network takes {c}")
    if data and data.get("resize") == "shorter side":  # folder:DIR's evaluation: the centre crop
        scale = max(h, w) * float(data["ratio"]) / min(a.shape[1:])
        rh, rw = max(h, round(a.shape[1] * scale)), max(w, round(a.shape[2] * scale))
        a = resize(a[None], rh, rw)[0]
        top, left = (rh - h) // 2, (rw - w) // 2
        a = a[:, top:top + h, left:left + w]
    else:
        a = resize(a[None], h, w)[0]
    if data:
        mean = np.asarray(data["mean"], dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(data["std"], dtype=np.float32).reshape(-1, 1, 1)
        a = (a - mean) / std
    return a.astype(np.float32)


def _statistics(info: dict, args, classes: int, channels: int) -> dict | None:
    data = info.get("data")
    usable = isinstance(data, dict) and len(data.get("mean", ())) == channels and len(data.get("std", ())) == channels
    if not usable and not args.no_normalise:
        raise NetError(f"--weights {args.weights}: the checkpoint records no data set statistics (the mean and "
                       "standard deviation per channel training standardised with)",
                       hint="save it again with this netdsl's train --save, or pass --no-normalise to feed "
                            "pixels in [0, 1] as they are")
    return data if usable and not args.no_normalise else None


def cmd_predict(args) -> int:
    from ..backend.executor import Model
    net = compile_file(args)
    warn(net, args)
    if len(net.input_shape) != 3:
        raise NetError(f"{args.file}: {net.name} takes {'x'.join(map(str, net.input_shape))} values, not an image "
                       "(C x H x W)")
    trunk = net.outputs[0][1]
    classes = net.layer(trunk).shape[0]
    model = Model(net, device="cpu", seed=0)
    info = model.load(args.weights, warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    data = _statistics(info, args, classes, net.input_shape[0])
    names = list((info.get("data") or {}).get("class_names") or [])
    names = names + [str(k) for k in range(len(names), classes)]
    x = np.stack([read_image(path, net.input_shape, data) for path in args.images])
    scores = model.predict(x)
    if net.graph.nodes[trunk]["op"] != "softmax":  # scores, not probabilities: softmax them
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores = e / e.sum(axis=1, keepdims=True)
    top = min(args.top, classes)
    results = []
    for path, p in zip(args.images, scores):
        best = np.argsort(-p, kind="stable")[:top]
        results.append({"file": path, "top": [{"class": int(k), "name": names[k], "probability": float(p[k])}
                                              for k in best]})
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(f"{r['file']}: " + ", ".join(f"{t['name']} {t['probability']:.3f}" for t in r["top"]))
    return 0


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify image files (and .npy arrays) with a trained network",
                       description="Classify images with a trained network: each resized and standardised as the "
                                   "network's training data was (from the checkpoint), the top classes with their "
                                   "probabilities, one line per image.")
    common(p)
    reads(p.add_argument("--weights", required=True, metavar="CK.safetensors",
                         help="the trained checkpoint (netdsl train --save)"))
    reads(p.add_argument("images", nargs="+", metavar="IMAGE",
                         help="image files (PNG, JPEG, ...: whatever Pillow reads) or .npy arrays"))
    p.add_argument("--top", type=positive_int, default=5, help="how many classes to show per image (default 5)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-normalise", "--no-normalize", action="store_true",
                   help="a checkpoint without data set statistics: feed pixels in [0, 1] unstandardised")
    p.set_defaults(func=cmd_predict)
