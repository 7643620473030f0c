"""``qaccel demo``: a real quantized model on the accelerator, end to end.

Loads scikit-learn's bundled 8x8 digits, trains (or loads from the cache) a float MLP and a
binary MLP, quantizes the float one to int8, runs the test split through the accelerator with
the host driver (the co-simulated RTL by default, a board with ``--url serial:...``), and
prints accuracies, mismatches against the golden model, cycles, utilization and a projection
for the iCEBreaker. Saves a plot as PNG.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]

_SPLIT_SEED = 0
_BATCH = 60


def _cache_dir():
    root = os.environ.get("QACCEL_CACHE_DIR")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME",
                                                      Path.home() / ".cache")) / "qaccel"
    path = base / "demo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_digits():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit("qaccel demo needs scikit-learn: pip install 'qaccel[demo]'") from None
    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16.0, y, test_size=0.2, random_state=_SPLIT_SEED, stratify=y)


def _models(x_train, y_train, log):
    """Float layers, int8 model and binary model, from the cache when possible."""
    from sklearn.neural_network import MLPClassifier

    from .sw.mlp import quantize_mlp, train_binary_mlp
    from .sw.model import load_model, save_model

    import sklearn

    key = hashlib.sha256(f"{sklearn.__version__}|{np.__version__}|v1".encode()).hexdigest()[:12]
    cache = _cache_dir()
    float_path, int8_path, binary_path = (cache / f"{name}-{key}.npz" for name in
                                          ("float", "int8", "binary"))
    if float_path.exists() and int8_path.exists() and binary_path.exists():
        log(f"models loaded from the cache ({cache})")
        with np.load(float_path) as data:
            layers = [(data[f"w{i}"], data[f"b{i}"]) for i in range(int(data["count"]))]
        return layers, load_model(int8_path), load_model(binary_path)
    log("training a float MLP 64-64-10 (scikit-learn) ...")
    started = time.monotonic()
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0)
    clf.fit(x_train, y_train)
    layers = list(zip(clf.coefs_, clf.intercepts_))
    log(f"  done in {time.monotonic() - started:.1f} s; quantizing to int8 (KL calibration)")
    int8_model = quantize_mlp(layers, x_train, "entropy")
    log("training a binary MLP 64-256-10 (straight-through estimator) ...")
    started = time.monotonic()
    binary_model = train_binary_mlp(x_train, y_train, hidden=(256,), epochs=25, seed=0,
                                    input_threshold=6 / 16)
    log(f"  done in {time.monotonic() - started:.1f} s")
    np.savez(float_path, count=len(layers),
             **{f"w{i}": w for i, (w, _) in enumerate(layers)},
             **{f"b{i}": b for i, (_, b) in enumerate(layers)})
    save_model(int8_path, int8_model)
    save_model(binary_path, binary_model)
    return layers, int8_model, binary_model


def _run_batches(name, forward, x, progress):
    outputs = []
    batches = range(0, len(x), _BATCH)
    for start in progress(batches, desc=name, unit="batch"):
        outputs.append(forward(x[start:start + _BATCH]))
    return np.concatenate(outputs)


def _progress():
    try:
        from tqdm import tqdm

        return lambda it, **kw: tqdm(it, leave=False, **kw)
    except ImportError:
        return lambda it, **kw: it


def _plot(path, rows, cycles):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = [name for name, _ in rows]
    values = [100 * value for _, value in rows]
    left.barh(names, values, color=["#999", "#48c", "#26a", "#c84", "#a62"][:len(names)])
    left.set_xlim(min(values) - 5, 100)
    left.set_xlabel("test accuracy (%)")
    left.set_title("digits test split")
    for y, value in enumerate(values):
        left.text(value, y, f" {value:.1f}", va="center")
    if cycles is None:   # the device's counters wrapped
        right.text(0.5, 0.5, "device counters wrapped\n(too narrow for this run)",
                   ha="center", va="center", transform=right.transAxes)
        right.set_axis_off()
    else:
        labels = list(cycles)
        right.bar(labels, [cycles[label] for label in labels], color="#48c")
        right.set_ylabel("device cycles")
        right.set_title("cycle breakdown (device counters)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(args):
    from .sw import Accelerator, QaccelError

    url = getattr(args, "url", None) or "sim"
    log = lambda message: print(f"qaccel demo: {message}", file=sys.stderr, flush=True)
    started = time.monotonic()
    x_train, x_test, y_train, y_test = _load_digits()
    layers, int8_model, binary_model = _models(x_train, y_train, log)

    from .sw.mlp import float_forward

    float_acc = (float_forward(layers, x_test)[-1].argmax(1) == y_test).mean()
    int8_golden = int8_model.forward_golden(x_test)
    binary_golden = binary_model.forward_golden(x_test)
    int8_golden_acc = (int8_model.logits(int8_golden).argmax(1) == y_test).mean()
    binary_golden_acc = (binary_model.logits(binary_golden).argmax(1) == y_test).mean()

    log(f"opening the accelerator at {url!r}")
    progress = _progress()
    try:
        with Accelerator.open(url) as acc:
            info = acc.info
            acc.reset()
            reset_at = time.monotonic()
            int8_hw = binary_hw = None
            for engine, present in (("INT8", info.has_int8), ("binary", info.has_binary)):
                if not present:
                    log(f"the device has no {engine} engine (its INFO says so): that model "
                        f"runs on the golden model only")
            if info.has_int8:
                int8_hw = _run_batches("int8 MLP", lambda x: int8_model.forward(acc, x),
                                       x_test, progress)
            if info.has_binary:
                binary_hw = _run_batches("binary MLP", lambda x: binary_model.forward(acc, x),
                                         x_test, progress)
            counters = acc.counters()
            link = acc.stats
            # The device's counters wrap at 2**counter_width (INFO); a device clock can have
            # run at most this many cycles since the reset (a co-simulated one far fewer).
            wrap_seconds = 2 ** info.counter_width / info.clock_hz
            counters_wrapped = time.monotonic() - reset_at >= wrap_seconds
    except QaccelError as exc:
        raise SystemExit(f"qaccel demo: {exc}") from None

    rows = [("float (NumPy)", float_acc), ("int8, golden model", int8_golden_acc)]
    mismatches = 0
    if int8_hw is not None:
        mismatches += int(np.count_nonzero(int8_hw != int8_golden))
        rows.append(("int8, accelerator", (int8_model.logits(int8_hw).argmax(1)
                                           == y_test).mean()))
    rows.append(("binary, golden model", binary_golden_acc))
    if binary_hw is not None:
        mismatches += int(np.count_nonzero(binary_hw != binary_golden))
        rows.append(("binary, accelerator", (binary_model.logits(binary_hw).argmax(1)
                                             == y_test).mean()))

    images = len(x_test)
    pes = info.rows * info.cols
    utilization = counters["macs"] / (pes * counters["int8_busy"]) if counters["int8_busy"] \
        else 0.0
    busy = counters["int8_busy"] + counters["binary_busy"]
    fmax = info.clock_hz
    compute_rate = images * fmax / busy if busy else float("inf")
    # the link of the iCEBreaker: 3 Mbaud, 10 bits per byte on the wire
    wire_bytes_per_image = (link.bytes_out + link.bytes_in) / images
    link_rate = 3_000_000 / 10 / wire_bytes_per_image
    print()
    print(f"{'':24}{'test accuracy':>14}")
    for name, value in rows:
        print(f"{name:24}{100 * value:13.2f}%")
    print()
    print(f"outputs differing from the golden model: {mismatches}")
    if counters_wrapped:
        print(f"device counters: {info.counter_width}-bit on this device, so they may have "
              f"wrapped during the run (every {wrap_seconds:.3g} s at "
              f"{info.clock_hz / 1e6:g} MHz): cycle, MAC and op totals not shown")
    else:
        print(f"device cycles: {counters['cycles']:,} ({counters['int8_busy']:,} INT8 engine, "
              f"{counters['binary_busy']:,} binary engine)")
        if info.has_int8:
            print(f"MACs: {counters['macs']:,}; INT8 MAC utilization while busy: "
                  f"{100 * utilization:.1f}% of {pes} PEs")
        if info.has_binary:
            print(f"binary ops: {counters['binary_ops']:,}")
    print(f"link: {link.commands:,} commands, {link.retries} retries, "
          f"{link.bytes_out + link.bytes_in:,} wire bytes")
    if counters_wrapped:
        print(f"projection: {link_rate:,.0f} images/s over a 3 Mbaud UART")
    else:
        print(f"projection for a device at {fmax / 1e6:.1f} MHz: {compute_rate:,.0f} images/s "
              f"compute-bound, {link_rate:,.0f} images/s over a 3 Mbaud UART")
    plot_path = Path(getattr(args, "plot", None) or "qaccel-demo.png")
    _plot(plot_path, rows, None if counters_wrapped else
          {"INT8 busy": counters["int8_busy"], "binary busy": counters["binary_busy"],
           "idle/link": counters["cycles"] - busy})
    print(f"plot: {plot_path}  ({time.monotonic() - started:.1f} s in all)")
    summary = {"accuracy": {name: float(value) for name, value in rows},
               "mismatches": mismatches, "counters": counters,
               "counters_wrapped": counters_wrapped}
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 1 if mismatches else 0
