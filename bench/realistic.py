"""Realistic inputs (issue 12): one tiny Transformers-style tagger, timed by podium's own measurement on a
realistic length mix, side by side in one run, interleaved:

    .venv/bin/python bench/realistic.py [--reps 3] [--iterations 100] [--sentences 400]

A  padding ``max_length`` (512, podium's default: the worst case) vs ``longest`` (each batch padded to its
   longest sequence, as a serving tokenizer pads), TorchScript on CPU, batch sizes 1 and 8.
B  the same model as TorchScript (torch) vs ONNX (onnxruntime), both on CPU, ``padding: longest``.

The tagger: a 2-layer Transformer encoder (width 128, 4 heads) over a 30k vocabulary, forward(input_ids,
attention_mask), traced to TorchScript and exported to ONNX. The length mix: NER-like sentences, lognormal
token counts (median ~24, p90 ~60), truncated at 512; seeded, so every repetition times the same requests.
Figures: p50 ms per request, median of the repetitions, with min-max.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from podium.backends.factory import make_backend
from podium.core.config import BenchmarkConfig
from podium.core.validation import parse_model
from podium.measurement.measure import run_measurement

VOCAB = 30_000


class EncoderTagger(torch.nn.Module):
    def __init__(self, width: int = 128, heads: int = 4, layers: int = 2, labels: int = 9):
        super().__init__()
        self.embeddings = torch.nn.Embedding(VOCAB, width)
        self.positions = torch.nn.Embedding(512, width)
        layer = torch.nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.classifier = torch.nn.Linear(width, labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        hidden = self.embeddings(input_ids) + self.positions(positions)
        hidden = self.encoder(hidden, src_key_padding_mask=attention_mask == 0)
        return self.classifier(hidden)


def export(folder: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    model = EncoderTagger().eval()
    example = (torch.randint(1, VOCAB, (2, 16)), torch.ones(2, 16, dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script = folder / "model.pt"
        torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(script))
        batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=512)
        onnx = folder / "model.onnx"
        torch.onnx.export(
            model,
            example,
            str(onnx),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}},
            external_data=False,
        )
    return script, onnx


def sentences(path: Path, count: int) -> dict[str, float]:
    rng = np.random.default_rng(7)
    lengths = np.clip(np.round(rng.lognormal(np.log(24), 0.6, count)).astype(int), 3, 512)
    path.write_text("".join(json.dumps(rng.integers(1, VOCAB, n).tolist()) + "\n" for n in lengths))
    return {
        "p50": float(np.percentile(lengths, 50)),
        "p90": float(np.percentile(lengths, 90)),
        "max": int(lengths.max()),
    }


def p50s(model: Path, data: Path, iterations: int, **benchmarking) -> dict[int, float]:
    base = {
        "batch_sizes": [1, 8],
        "iterations": iterations,
        "warmup_iterations": 20,
        "test_data": str(data),
        "device": "cpu",
        "stability": {"max_windows": 6},
    }
    cfg = parse_model(BenchmarkConfig, {"benchmarking": base | benchmarking}, "bench")
    backend = make_backend(cfg.benchmarking, model_file=model)
    try:
        measured = run_measurement(backend, cfg, model_file=model)
    finally:
        backend.close()
    return {b: measured.metrics[f"latency_batch_{b}_p50_ms"] for b in (1, 8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--sentences", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
        folder = Path(tmp)
        script, onnx = export(folder)
        mix = sentences(folder / "sentences.jsonl", args.sentences)
        print(
            f"length mix: {args.sentences} sentences, tokens p50 {mix['p50']:g}, p90 {mix['p90']:g}, max {mix['max']}"
        )
        arms = {
            "torchscript max_length": (script, {"padding": "max_length"}),
            "torchscript longest": (script, {"padding": "longest"}),
            "onnx longest": (onnx, {"padding": "longest", "model_format": "onnx"}),
        }
        figures: dict[str, dict[int, list[float]]] = {name: {1: [], 8: []} for name in arms}
        for rep in range(args.reps):
            for name, (model, settings) in arms.items():  # interleaved: each repetition runs every arm
                for b, value in p50s(model, folder / "sentences.jsonl", args.iterations, **settings).items():
                    figures[name][b].append(value)
            print(f"repetition {rep + 1}/{args.reps} done", flush=True)
    print(f"\n{'arm':<26}{'batch 1 p50 ms':>26}{'batch 8 p50 ms':>26}")
    for name, by_batch in figures.items():
        cells = [f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})" for v in by_batch.values()]
        print(f"{name:<26}{cells[0]:>26}{cells[1]:>26}")
    for b in (1, 8):
        full = statistics.median(figures["torchscript max_length"][b])
        longest = statistics.median(figures["torchscript longest"][b])
        ort = statistics.median(figures["onnx longest"][b])
        print(
            f"batch {b}: max_length / longest = {full / longest:.2f}x; onnxruntime / torchscript = {ort / longest:.2f}x"
        )


if __name__ == "__main__":
    main()
