"""Train the two metric models and export them to ``weights/``.

    python -m lowdim_tinyfaces.metrics.train --out runs/metrics

Deterministic given the seed and thread count (one thread by default).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from lowdim.files import atomic_write

from ..styles import STYLES
from ..world import render_tensor
from . import evaluate
from .data import degrade, identity_index, other_styles, sample_levels, seeds
from .identity import NAME as ID_NAME
from .identity import IdentityEncoder
from .nets import WEIGHTS_DIR, num_params, save_weights
from .style import NAME as STYLE_NAME
from .style import StyleClassifier

Log = Callable[[dict], None]


def _lr(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def nt_xent(emb: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Supervised contrastive loss on unit embeddings; positives share a label."""
    logits = emb @ emb.T / tau
    eye = torch.eye(len(emb), dtype=torch.bool)
    logits = logits.masked_fill(eye, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    logp = logits.log_softmax(1)
    return -(logp * pos).sum(1).div(pos.sum(1).clamp_min(1)).mean()


def train_style(args: argparse.Namespace, log: Log) -> StyleClassifier:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = StyleClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=args.style_lr, weight_decay=1e-4)
    started = time.time()
    for step in range(args.style_steps):
        lv = sample_levels(args.style_batch, rng, 0)
        st = rng.integers(0, len(STYLES), args.style_batch)
        x = degrade(render_tensor(lv, list(st), seeds(len(st), rng)), gen)
        _set_lr(opt, _lr(step, args.style_steps, args.style_lr))
        loss = F.cross_entropy(model(x), torch.from_numpy(st))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.style_steps - 1:
            log({"model": "style", "step": step, "loss": loss.item(), "t": time.time() - started})
    return model.eval()


def _identity_batch(k: int, rng: np.random.Generator, gen: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """``k`` identities drawn twice, each time in another style: the contrastive loss's positives are the pairs."""
    lv = sample_levels(k, rng, 0)
    s1 = rng.integers(0, len(STYLES), k)
    s2 = other_styles(s1, rng)
    levels = np.concatenate([lv, lv])
    return degrade(render_tensor(levels, list(np.concatenate([s1, s2])), seeds(2 * k, rng)), gen), levels


def _factor_loss(logits: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy over the face factors."""
    # A tensor start keeps the sum a Tensor for the type checker; 0-dim zeros + x is x bit for bit.
    return sum((F.cross_entropy(lg, target[:, f]) for f, lg in enumerate(logits)), torch.zeros(())) / len(logits)


def _factor_accuracy(logits: list[torch.Tensor], target: torch.Tensor) -> float:
    """The mean accuracy over the face factors, for the log (only on the steps it writes: each .item() waits)."""
    return float(np.mean([(lg.argmax(1) == target[:, f]).float().mean().item() for f, lg in enumerate(logits)]))


def train_identity(args: argparse.Namespace, log: Log) -> IdentityEncoder:
    torch.manual_seed(args.seed + 1)
    rng = np.random.default_rng(args.seed + 1)
    gen = torch.Generator().manual_seed(args.seed + 1)
    model = IdentityEncoder()
    opt = torch.optim.AdamW(model.parameters(), lr=args.id_lr, weight_decay=1e-4)
    started = time.time()
    for step in range(args.id_steps):
        x, levels = _identity_batch(args.id_identities, rng, gen)
        _set_lr(opt, _lr(step, args.id_steps, args.id_lr))
        model.train()
        emb, logits = model(x)
        target = torch.from_numpy(levels)
        ce = _factor_loss(logits, target)
        con = nt_xent(emb, torch.from_numpy(identity_index(levels)), args.tau)
        loss = ce + args.con_weight * con
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.id_steps - 1:
            log({"model": "identity", "step": step, "ce": ce.item(), "con": con.item(),
                 "factor_acc": _factor_accuracy(logits, target), "t": time.time() - started})
    return model.eval()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/metrics"))
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="where the weights go (default: the package's, in the checkout only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--style-steps", type=int, default=300)
    parser.add_argument("--style-batch", type=int, default=64)
    parser.add_argument("--style-lr", type=float, default=3e-3)
    parser.add_argument("--id-steps", type=int, default=1500)
    parser.add_argument("--id-identities", type=int, default=48, help="per batch; 2 views each")
    parser.add_argument("--id-lr", type=float, default=2e-3)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--con-weight", type=float, default=0.5)
    parser.add_argument("--skip-style", action="store_true")
    parser.add_argument("--skip-identity", action="store_true")
    return parser


def _style_report(args: argparse.Namespace, log: Log) -> dict:
    """Train the style classifier, write its weights, and return its section of the report."""
    started = time.time()
    style = train_style(args, log)
    weights_config = {"model": style.config, "params": num_params(style), "train_seconds": time.time() - started}
    save_weights(style, weights_config, STYLE_NAME, args.weights_dir)
    report: dict = {
        **weights_config,
        "accuracy_clean": evaluate.style_accuracy(style, seed=11),
        "accuracy_degraded": evaluate.style_accuracy(style, seed=11, degraded=True),
    }
    log({"style_report": report})
    return report


def _identity_report(args: argparse.Namespace, log: Log) -> dict:
    """Train the identity encoder, write its weights (with the chosen threshold), and return its report section."""
    started = time.time()
    encoder = train_identity(args, log)
    weights_config = {"model": encoder.config, "params": num_params(encoder), "train_seconds": time.time() - started}
    report: dict = {
        **weights_config,
        "factor_accuracy_clean": evaluate.factor_accuracy(encoder, seed=12),
        "factor_accuracy_degraded": evaluate.factor_accuracy(encoder, seed=12, degraded=True),
        "verification_clean": evaluate.verification_report(encoder, seed=13),
        "verification_degraded": evaluate.verification_report(encoder, seed=13, degraded=True),
    }
    # The validation-chosen threshold (clean renders) ships with the weights.
    weights_config["threshold"] = report["verification_clean"]["threshold"]
    save_weights(encoder, weights_config, ID_NAME, args.weights_dir)
    log({"identity_report": report})
    return report


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line; an installed package's weights are overwritten only when named (``--weights-dir``)."""
    from .. import model_files  # the module attribute, which a test replaces

    parser = _parser()
    args = parser.parse_args(argv)
    args.weights_dir = args.weights_dir or model_files.shipped_folder_default(WEIGHTS_DIR)
    if args.weights_dir is None:
        parser.error(model_files.installed_refusal("--weights-dir", "metric weights it ships"))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    with (args.out / "train_log.jsonl").open("a") as log_file:

        def log(record: dict) -> None:
            print(json.dumps(record), flush=True)
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

        if not args.skip_style:
            report["style"] = _style_report(args, log)
        if not args.skip_identity:
            report["identity"] = _identity_report(args, log)
    name = "report.json" if not (args.skip_style or args.skip_identity) else "report_partial.json"
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(args.out / name, lambda temp: Path(temp).write_text(text))

if __name__ == "__main__":
    main()
