"""Short pilots that chose the teacher's shape, resolution and recipe: a stock transformers ResNet trained by a
plain PyTorch loop on 45,000 CIFAR-10 training images and scored on the other 5,000 (never on the test split).

The loop mirrors ``scripts/train_teacher.py`` with ``configs/teacher_cifar10_resnet.yaml`` (SGD with Nesterov
momentum, linear warm-up then linear decay, label smoothing, bf16 autocast, channels_last, a 2-pixel
reflect translation and a flip at 32x32, then a bicubic resize to the network's input) and adds the airbench
pieces under test, each behind a flag: a frozen patch-whitening stem, frozen batch-norm scales, a bias
learning-rate multiplier, a logit scale, airbench's triangular schedule, its lookahead averaging and
alternating flips. Pilots are short (4 epochs), so they rank choices by how fast they learn, not by where a
full run ends.

    python benchmarks/teacher_pilots.py --pilot 48px --dataset_name ../shared/data/cifar10   # ~5.5 min
    python benchmarks/teacher_pilots.py --table          # rebuild the section from the recorded pilots

Each pilot appends its per-epoch held-out accuracies to ``docs/results/teacher_pilots.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_page import save_section  # noqa: E402
from timing import LOCAL_CIFAR10, RESULTS, machine, machines_line  # noqa: E402

from hf_deit.data.device import crop_flip_normalise  # noqa: E402
from hf_deit.modeling import new_image_classifier  # noqa: E402
from hf_deit.training.whitening import whiten_first_convolution  # noqa: E402

SMALL = '{"embedding_size":32,"hidden_sizes":[64,256,256],"depths":[1,1,1],"layer_type":"basic"}'
SHIPPED = '{"embedding_size":64,"hidden_sizes":[128,256,512],"depths":[1,1,1],"layer_type":"basic"}'
TIMM_RESNET_D = '{"architecture":"resnet18d","model_args":{"layers":[1,1,1,1],"channels":[64,128,256,512]}}'
TIMM_RESNET_AA = ('{"architecture":"resnet18d","model_args":{"layers":[1,1,1,1],"channels":[64,128,256,512],'
                  '"aa_layer":"avg","replace_stem_pool":true}}')
AIRBENCH_OPTIMISER = ["--bs", "1024", "--lr", "1.5", "--mom", "0.85", "--wd", "1.333e-3", "--bias_scaler", "64",
                      "--logit_scale", "0.1111", "--sched", "triangle", "--whiten", "2", "--freeze_bn_scale", "1",
                      "--lookahead", "1", "--altflip", "1", "--bn_mom", "0.4"]
PILOTS = {
    "64px": ("ResNet 32 / [64, 256, 256] at 64 px, the shipped recipe", ["--arch", SMALL, "--size", "64"]),
    "48px": ("the same at 48 px", ["--arch", SMALL, "--size", "48"]),
    "48px_whiten": ("48 px, frozen whitening stem", ["--arch", SMALL, "--size", "48", "--whiten", "2"]),
    "64px_airbench": ("64 px, airbench's optimiser and tricks transplanted", ["--arch", SMALL, "--size", "64",
                                                                            *AIRBENCH_OPTIMISER]),
    "64px_shipped": ("the shipped teacher's shape, ResNet 64 / [128, 256, 512], at 64 px", ["--arch", SHIPPED]),
    "timm_resnet_d": ("timm's ResNet-D (deep stem, average-pool shortcuts), one block per stage, [64, 128, 256, 512], "
                      "at 64 px, through transformers' timm wrapper",
                      ["--model_type", "timm_wrapper", "--arch", TIMM_RESNET_D]),
    "timm_resnet_aa": ("the same, each strided block convolving before it average-pools (aa_layer: avg, "
                       "replace_stem_pool), as airbench's blocks do", ["--model_type", "timm_wrapper", "--arch", TIMM_RESNET_AA]),
    "timm_resnet_d_wrapper_init": ("timm_resnet_d initialised by the timm wrapper (convolutions and linears from "
                                   "N(0, 0.02), every norm scale one) instead of by timm",
                                   ["--model_type", "timm_wrapper", "--arch", TIMM_RESNET_D, "--wrapper_init", "1"]),
    "timm_resnet_aa_wrapper_init": ("timm_resnet_aa initialised by the timm wrapper",
                                    ["--model_type", "timm_wrapper", "--arch", TIMM_RESNET_AA, "--wrapper_init", "1"]),
}
OUT = RESULTS / "teacher_pilots.json"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
SCALE, SHIFT = 1 / STD, -MEAN / STD  # uint8 pixels to ImageNet-normalised floats: x * SCALE + SHIFT


def recipe_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--model_type", default="resnet", help="transformers model type (resnet, timm_wrapper, ...)")
    p.add_argument("--arch", default=SMALL, help="that model type's config fields (JSON)")
    p.add_argument("--wrapper_init", type=int, default=0,
                   help="1: keep the timm wrapper's N(0, 0.02) re-initialisation instead of timm's own init")
    p.add_argument("--size", type=int, default=64, help="network input side (bicubic from 32)")
    p.add_argument("--epochs", type=float, default=4)
    p.add_argument("--bs", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.4)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--mom", type=float, default=0.9)
    p.add_argument("--ls", type=float, default=0.2, help="label smoothing")
    p.add_argument("--warm", type=float, default=0.15, help="warm-up fraction (warmlinear schedule)")
    p.add_argument("--sched", default="warmlinear", choices=["warmlinear", "triangle"])
    p.add_argument("--whiten", type=int, default=0, help="1: whitening init, 2: whitening init, frozen")
    p.add_argument("--freeze_bn_scale", type=int, default=0)
    p.add_argument("--bias_scaler", type=float, default=1.0, help="learning-rate multiplier of 1-d parameters")
    p.add_argument("--logit_scale", type=float, default=1.0)
    p.add_argument("--lookahead", type=int, default=0, help="airbench's lookahead averaging from epoch 3")
    p.add_argument("--altflip", type=int, default=0, help="airbench's alternating flip")
    p.add_argument("--bn_mom", type=float, default=0.1)
    p.add_argument("--translate", type=int, default=2)
    p.add_argument("--holdout", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    return p


def load_uint8(dataset_name: str, names: tuple[str, ...] = ("train",)) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each named split as (N x 3 x 32 x 32 uint8 images, labels)."""
    from datasets import load_dataset

    splits = load_dataset(dataset_name)
    out = {}
    for split in names:
        images = np.stack([np.asarray(image.convert("RGB")) for image in splits[split]["img"]])
        out[split] = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(splits[split]["label"])
    return out


def run_pilot(a: argparse.Namespace, xtr: torch.Tensor, ytr: torch.Tensor, log=print) -> list[dict]:
    torch.manual_seed(a.seed)
    order = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))
    xva, yva = xtr[order[: a.holdout]], ytr[order[: a.holdout]]
    xtr, ytr = xtr[order[a.holdout:]], ytr[order[a.holdout:]]

    def resize(x: torch.Tensor) -> torch.Tensor:
        if a.size != 32:
            x = F.interpolate(x, size=(a.size, a.size), mode="bicubic", align_corners=False)
        return x.contiguous(memory_format=torch.channels_last)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return resize(torch.addcmul(SHIFT, x.float(), SCALE))

    first_flips = torch.rand(len(xtr)) < 0.5

    def augment(rows: torch.Tensor, epoch: int) -> torch.Tensor:
        """A reflect translation of up to ``a.translate`` pixels and a flip, at 32x32, normalised."""
        n, t = len(rows), a.translate
        lefts, tops = torch.randint(0, 2 * t + 1, (n,)), torch.randint(0, 2 * t + 1, (n,))
        flips = first_flips[rows] ^ bool(epoch % 2) if a.altflip else torch.rand(n) < 0.5
        return resize(crop_flip_normalise(xtr, rows, tops, lefts, flips, t, SCALE, SHIFT))

    if a.wrapper_init:  # the timm wrapper's own re-initialisation, which new_image_classifier undoes
        config = AutoConfig.for_model(a.model_type, num_labels=10, **json.loads(a.arch))
        model = AutoModelForImageClassification.from_config(config)
    else:
        model = new_image_classifier(a.model_type, json.loads(a.arch), {label: str(label) for label in range(10)})
    model = model.to(memory_format=torch.channels_last)
    if a.whiten:
        whiten_first_convolution(model, prep(xtr[:5000]), freeze=a.whiten == 2)
    if a.freeze_bn_scale:
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = a.bn_mom
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for _, p in trainable if p.ndim > 1], "weight_decay": a.wd, "scale": 1.0},
              {"params": [p for _, p in trainable if p.ndim <= 1], "scale": a.bias_scaler,
               "weight_decay": a.wd / a.bias_scaler if a.bias_scaler != 1 else 0.0}]
    optimizer = torch.optim.SGD(groups, lr=a.lr, momentum=a.mom, nesterov=True)
    steps_per_epoch = len(xtr) // a.bs
    total = int(a.epochs * steps_per_epoch)
    warm = int(a.warm * total)

    def lr_at(step: int) -> float:
        if a.sched == "triangle":
            return a.lr * float(np.interp(step, [0, int(0.23 * total), total], [0.2, 1.0, 0.07]))
        return a.lr * (step / max(1, warm) if step < warm else max(0.0, (total - step) / max(1, total - warm)))

    def evaluate() -> tuple[float, float]:
        model.eval()
        plain = flipped = 0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for start in range(0, len(xva), 1000):
                x, y = prep(xva[start:start + 1000]), yva[start:start + 1000]
                logits, mirrored = model(pixel_values=x).logits.float(), model(pixel_values=x.flip(-1)).logits.float()
                plain += (logits.argmax(-1) == y).sum().item()
                flipped += ((logits + mirrored).argmax(-1) == y).sum().item()
        model.train()
        return plain / len(xva), flipped / len(xva)

    lookahead, step, start, epochs = None, 0, time.time(), []
    model.train()
    for epoch in range(math.ceil(a.epochs)):
        permutation = torch.randperm(len(xtr))
        for batch in range(steps_per_epoch):
            if step >= total:
                break
            rows = permutation[batch * a.bs:(batch + 1) * a.bs]
            x, y = augment(rows, epoch), ytr[rows]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step) * group["scale"]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(pixel_values=x).logits * a.logit_scale
            loss = F.cross_entropy(logits.float(), y, label_smoothing=a.ls)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if a.lookahead and epoch >= 3 and step % 5 == 0:
                if lookahead is None:
                    lookahead = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    rho = (0.95 ** 5) * (step / total) ** 3
                    for (_, average), value in zip(lookahead.items(), model.state_dict().values()):
                        if value.dtype.is_floating_point:
                            average.lerp_(value, 1 - rho)
                            value.copy_(average)
        if lookahead is not None:
            for (_, average), value in zip(lookahead.items(), model.state_dict().values()):
                if value.dtype.is_floating_point:
                    value.copy_(average)
        top1, flip_top1 = evaluate()
        epochs.append({"epoch": epoch + 1, "minutes": round((time.time() - start) / 60, 2),
                       "heldout_top1": top1, "heldout_flip_tta_top1": flip_top1})
        log(json.dumps(epochs[-1]))
    return epochs


def section(results: dict) -> str:
    """The results page's section: every recorded pilot, its curve on the held-out images, its time."""
    lines = ["## Teacher pilots: shape, resolution and recipe", "",
             "4-epoch pilots of `python benchmarks/teacher_pilots.py --pilot NAME` (a plain loop that mirrors the "
             "teacher recipe, see the script), trained on 45,000 training images and scored on the other 5,000 "
             "(one standard error ≈ 0.6 points); the test split is not read.", "",
             "| pilot | what | held-out top-1 after epoch 1 / 2 / 3 / 4 (%) | flip TTA, last (%) | minutes |",
             "|---|---|---|---:|---:|"]
    for name, result in results.items():
        curve = " / ".join(f"{100 * e['heldout_top1']:.1f}" for e in result["epochs"])
        last = result["epochs"][-1]
        lines.append(f"| {name} | {result['what']} | {curve} | {100 * last['heldout_flip_tta_top1']:.1f} | "
                     f"{last['minutes']:.1f} |")
    return "\n".join(lines) + "\n\n" + machines_line({name: r["machine"] for name, r in results.items()})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], parents=[recipe_parser()])
    parser.add_argument("--pilot", choices=sorted(PILOTS))
    parser.add_argument("--dataset_name", default=LOCAL_CIFAR10)
    parser.add_argument("--table", action="store_true", help="print the table of the recorded pilots")
    args = parser.parse_args(argv)
    results = json.loads(OUT.read_text())["pilots"] if OUT.exists() else {}
    if args.table:
        save_section({"pilots": results, "markdown": section(results)}, OUT)
        return
    what, flags = PILOTS[args.pilot] if args.pilot else ("custom", [])
    recipe = parser.parse_args(flags + list(argv if argv is not None else sys.argv[1:]))  # the command line wins
    train = load_uint8(args.dataset_name)["train"]
    results[args.pilot or "custom"] = {"what": what, "recipe": {k: v for k, v in vars(recipe).items()
                                                                 if k not in ("pilot", "table", "dataset_name")},
                                       "machine": machine(), "epochs": run_pilot(recipe, *train)}
    save_section({"pilots": results, "markdown": section(results)}, OUT)


if __name__ == "__main__":
    main()
