"""The existence check's query with and without the result condition (issue 25: done means a result), on a copy
of the cached 12k-run bench store, interleaved; per query, median of 5 repetitions of 200 hits and 200 misses.

    .venv/bin/python bench/existence_query.py    (needs ~/.cache/podium/bench-stores from bench/costs.py)
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from podium.tracking.tables import RunTables

STORE = Path.home() / ".cache" / "podium" / "bench-stores" / "store-t1000-b10.db"


def main() -> None:
    copy = Path(tempfile.mkdtemp(prefix="podium-exists-")) / "store.db"
    shutil.copy(STORE, copy)
    tables = RunTables(f"sqlite:///{copy}")
    tables._fetch([("CREATE INDEX IF NOT EXISTS podium_tags_key_value ON tags (key, value)", ())])
    (rows,) = tables._fetch(
        [
            (
                "SELECT t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                "WHERE t.key = 'benchmark_key' AND r.status = 'FINISHED' LIMIT 1",
                (),
            )
        ]
    )
    key, experiments = rows[0][0], tables.active_experiment_ids()
    ways = {"without the result condition (baseline)": (), "with it (latency_batch_1_ms)": ("latency_batch_1_ms",)}
    out: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(5):
        for name, metrics in ways.items():
            t0 = time.perf_counter()
            for _ in range(200):
                for k in (key, "0" * 64):
                    tables.finished_runs_tagged("benchmark_key", k, experiments, metrics)
            out[name].append((time.perf_counter() - t0) / 400 * 1000)
    base = statistics.median(next(iter(out.values())))
    print("| query | ms | ratio |\n| --- | ---: | ---: |")
    for name, values in out.items():
        print(f"| {name} | {statistics.median(values):.3f} | {statistics.median(values) / base:.2f}x |")
    tables.close()
    shutil.rmtree(copy.parent)


if __name__ == "__main__":
    main()
