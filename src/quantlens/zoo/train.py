"""Train the bundled ResNet8 on CIFAR-10 on the CPU.

Recipe: SGD with Nesterov momentum and a one-cycle learning rate, weight decay on conv and dense
weights only, random crop (4-pixel zero padding) and horizontal flip, label smoothing, and an
exponential moving average (EMA) of the weights that is evaluated and saved. Every epoch appends
one JSON line (loss, learning rate, test accuracy of the raw and the EMA weights) to
``metrics.jsonl`` and saves ``checkpoint.pt`` so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from quantlens.datasets.cifar10 import Cifar10Split, load_split
from quantlens.errors import InputError
from quantlens.zoo.resnet8 import ResNet8, count_parameters

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run; the defaults are the recipe of the bundled model."""

    epochs: int = 120
    batch_size: int = 128
    max_lr: float = 0.2
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    ema_decay: float = 0.999
    seed: int = 0
    threads: int = 2


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Randomly crop (after 4-pixel zero padding) and flip a uint8 NHWC batch."""
    n = images.shape[0]
    padded = torch.nn.functional.pad(images, (0, 0, 4, 4, 4, 4))
    offsets = torch.randint(0, 9, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(images)
    for i in range(n):
        top, left = int(offsets[i, 0]), int(offsets[i, 1])
        crop = padded[i, top : top + 32, left : left + 32]
        out[i] = crop.flip(1) if flips[i] else crop
    return out


def evaluate(model: nn.Module, split: Cifar10Split, batch_size: int = 500) -> float:
    """Return top-1 accuracy in percent of ``model`` on ``split``."""
    model.eval()
    correct = 0
    images = torch.from_numpy(split.images)
    labels = torch.from_numpy(split.labels)
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            batch = images[start : start + batch_size].float()
            correct += int((model(batch).argmax(1) == labels[start : start + batch_size]).sum())
    return 100.0 * correct / len(split)


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_weight = name.endswith("weight") and param.ndim > 1
        (decay if is_weight else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    # BatchNorm running statistics are averaged like the weights: copying the live model's
    # statistics into the averaged weights mismatches them and ruins the EMA model's accuracy.
    with torch.no_grad():
        for ema_value, value in zip(ema.state_dict().values(), model.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value, 1.0 - decay)
            else:
                ema_value.copy_(value)


def train(
    *,
    data_dir: str | Path | None,
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
) -> Path:
    """Train ResNet8 and return the path of the final EMA weights (``resnet8_trained.pt``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)

    train_split = load_split(data_dir, "train")
    test_split = load_split(data_dir, "test")
    logger.info("training on %d images, testing on %d", len(train_split), len(test_split))

    model = ResNet8().to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model)
    logger.info("ResNet8 with %d parameters", count_parameters(model))
    optimizer = torch.optim.SGD(
        _parameter_groups(model, config.weight_decay), lr=config.max_lr, momentum=0.9, nesterov=True
    )
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.max_lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    generator = torch.Generator().manual_seed(config.seed)
    start_epoch = 0

    checkpoint_path = out / "checkpoint.pt"
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=True)
        if int(state.get("epochs", config.epochs)) != config.epochs:
            raise InputError(
                f"{checkpoint_path} belongs to a {state['epochs']}-epoch run, so it cannot resume "
                f"a {config.epochs}-epoch one; use another --out or the same --epochs"
            )
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        start_epoch = int(state["epoch"])
        logger.info("resuming from %s after epoch %d", checkpoint_path, start_epoch)

    images = torch.from_numpy(train_split.images)
    labels = torch.from_numpy(train_split.labels)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    for epoch in range(start_epoch, config.epochs):
        model.train()
        began = time.perf_counter()
        order = torch.randperm(len(train_split), generator=generator)
        total_loss = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        for step in bar:
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = augment(images[index], generator).float()
            loss = loss_fn(model(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            _update_ema(ema, model, config.ema_decay)
            total_loss += float(loss)
            bar.set_postfix(loss=f"{total_loss / (step + 1):.3f}")
        record = {
            "epoch": epoch + 1,
            "loss": round(total_loss / steps_per_epoch, 4),
            "lr": scheduler.get_last_lr()[0],
            "test_accuracy": round(evaluate(model, test_split), 2),
            "ema_test_accuracy": round(evaluate(ema, test_split), 2),
            "seconds": round(time.perf_counter() - began, 1),
        }
        logger.info("%s", json.dumps(record))
        with (out / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        torch.save(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "epoch": epoch + 1,
                "epochs": config.epochs,
            },
            checkpoint_path,
        )

    final = out / "resnet8_trained.pt"
    torch.save({k: v.contiguous() for k, v in ema.state_dict().items()}, final)
    return final


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the training options to ``parser`` (a new one when None)."""
    parser = parser or argparse.ArgumentParser(prog="quantlens zoo train", description=__doc__)
    defaults = TrainConfig()
    parser.add_argument("--data-dir", help="CIFAR-10 folder with train and test splits")
    parser.add_argument("--out", default="runs/resnet8", help="output folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="default: %(default)s")
    parser.add_argument("--max-lr", type=float, default=defaults.max_lr, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads (default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Train from parsed command-line options."""
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_lr=args.max_lr,
        seed=args.seed,
        threads=args.threads,
    )
    final = train(data_dir=args.data_dir, out_dir=args.out, config=config)
    print(f"trained weights written to {final}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    raise SystemExit(run(build_parser().parse_args()))
