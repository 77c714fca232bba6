"""Case: per-activation statistics over CIFAR-10 test images, all layers, peak memory.

Three fresh processes per runtime, each loading the same images the same way
(``quantlens.inputs.cifar10_samples``) and feeding them in batches of the same size:

- ``plain``: the model's own inference (onnxruntime ``InferenceSession.run``, or the eager
  ResNet8 module under ``torch.no_grad``), outputs discarded;
- ``plain-imports``: the same, after importing the modules that quantlens capture loads
  (``quantlens.capture`` and its onnxruntime backend); this is the floor of ``streaming``;
- ``streaming``: ``quantlens.capture.capture_statistics``, which folds each batch into running
  statistics and drops it;
- ``keep-all``: ``quantlens.capture.capture`` on every batch, every activation kept, then
  ``stats.summarize`` and ``stats.histogram`` per activation over all images.

Peak memory is each process's peak resident set size (see ``worker.peak_rss``).
"""

from __future__ import annotations

import time

from quantlens_bench.measure import Quantity, Row, format_quantity, median, repeat_worker

TARGET_RATIO = 1.10
BINS = 64


def run_statistics(mode: str, path: str, data_dir: str | None, images: int, batch: int) -> dict[str, object]:
    """Worker task: run ``mode`` (plain, streaming or keep-all) over the first ``images`` test images."""
    from quantlens.inputs import cifar10_samples

    samples = cifar10_samples(list(range(images)), data_dir=data_dir)
    start = time.perf_counter()
    if mode in ("plain", "plain-imports"):
        if mode == "plain-imports":
            _import_capture_modules(path)
        _plain(path, samples, batch)
        activations = 0
    elif mode == "streaming":
        activations = _streaming(path, samples, batch)
    elif mode == "keep-all":
        activations = _keep_all(path, samples, batch)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return {"seconds": time.perf_counter() - start, "activations": activations}


def _import_capture_modules(path: str) -> None:
    import quantlens.capture  # noqa: F401

    if path.endswith(".onnx"):
        import quantlens.capture.onnx_runtime  # noqa: F401


def _plain(path: str, samples: object, batch: int) -> None:
    """Run the bundled ResNet8, which takes raw float32 NHWC pixels, converting one batch at a time."""
    import numpy as np

    images = samples.images  # type: ignore[attr-defined]
    starts = range(0, len(images), batch)
    if path.endswith(".onnx"):
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for start in starts:
            session.run(None, {name: images[start : start + batch].astype(np.float32)})
        return
    import torch

    from quantlens.zoo.resnet8 import ResNet8

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    module = ResNet8()
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    with torch.no_grad():
        for start in starts:
            module(torch.from_numpy(images[start : start + batch].astype(np.float32)))


def _streaming(path: str, samples: object, batch: int) -> int:
    from quantlens.capture import capture_statistics, split_batch
    from quantlens.runtime import open_session

    session = open_session(path)
    result = capture_statistics(session, split_batch(samples, batch), bins=BINS, progress=False)  # type: ignore[arg-type]
    return len(result.activations)


def _keep_all(path: str, samples: object, batch: int) -> int:
    import numpy as np

    from quantlens import stats
    from quantlens.capture import capture, split_batch
    from quantlens.runtime import open_session

    session = open_session(path)
    activations_by_name: dict[str, list[np.ndarray]] = {}
    for part in split_batch(samples, batch):  # type: ignore[arg-type]
        for activation in capture(session, part).activations:
            activations_by_name.setdefault(activation.name, []).append(activation.tensor.values)
    for arrays in activations_by_name.values():
        values = np.concatenate(arrays)
        stats.summarize(values)
        stats.histogram(values, BINS)
    return len(activations_by_name)


def rows(models: dict[str, str], *, data_dir: str | None, images: int, batch: int, repeats: int) -> list[Row]:
    """Measure the three modes per model file; report streaming against plain and against keep-all."""
    table = []
    for label, path in models.items():
        options = {"path": path, "data_dir": data_dir, "images": images, "batch": batch}
        peaks = {}
        seconds = {}
        for mode in ("plain", "plain-imports", "streaming", "keep-all"):
            results = repeat_worker("memory", {**options, "mode": mode}, repeats)
            peaks[mode] = median([result.number("peak_rss") for result in results])
            seconds[mode] = median([result.number("seconds") for result in results])
        setting = f"{images} images, batches of {batch}"
        times = ", ".join(f"{mode} {format_quantity(seconds[mode], 's')}" for mode in ("plain", "streaming", "keep-all"))
        floor_ratio = peaks["plain-imports"] / peaks["plain"]
        floor = (
            f"floor: plain inference after importing quantlens capture's modules "
            f"{format_quantity(peaks['plain-imports'], 'bytes')} = {floor_ratio:.3f}x"
        )
        if floor_ratio >= TARGET_RATIO:
            floor += ", which leaves no room for captured values, so no capture that needs these modules meets the target"
        table.append(
            Row(
                case=f"statistics over CIFAR-10, peak RSS vs plain inference, {label}",
                quantlens=Quantity(peaks["streaming"], "bytes"),
                compared=Quantity(peaks["plain"], "bytes"),
                compared_label="the model's own inference",
                target=f"<= {TARGET_RATIO:.2f}x",
                met=peaks["streaming"] <= TARGET_RATIO * peaks["plain"],
                notes=f"{setting}; {floor}; run times: {times}",
            )
        )
        table.append(
            Row(
                case=f"statistics over CIFAR-10, peak RSS vs keep-all, {label}",
                quantlens=Quantity(peaks["streaming"], "bytes"),
                compared=Quantity(peaks["keep-all"], "bytes"),
                compared_label="keep every activation, then compute",
                target="reported",
                met=None,
                notes=setting,
            )
        )
    return table
