"""Pool runs of ``bench/serve_load.py`` (rounds in turn) into one figure: req/s ON / OFF and
server CPU ON - OFF, with 95 % confidence intervals.

What: each log's round lines (``round K: telemetry ON  600 ok, ... in 3.479 s (172.5 req/s;
server CPU 4.99 ms a request)``), paired back to back as ``serve_load.py`` pairs them; per
log, the geometric mean of the req/s ratios and the mean CPU difference, each with its
Student's t interval; then all logs' pairs together. ``--run MEAN LOW HIGH PAIRS`` adds a run
known only by its printed summary (a geometric mean and its 95 % interval, from a log that
is gone), ``--cpu-run`` its CPU difference; with any, the runs are pooled by their
variances (inverse-variance weights, a normal interval).

Why: one run of 80 pairs decides the ratio to about ±0.6 % on this machine; a 1.5 % cost
takes several runs, from more than one session. A run's pairs are independent (a new pair of
server processes each), so pairs from several runs pool as one sample.

Needs logs of ``serve_load.py`` from 1f02cd0 on (seconds to the millisecond).

Run (from the repo root)::

    .venv/bin/python bench/pool_serve_load.py run1.txt run2.txt
    .venv/bin/python bench/pool_serve_load.py run3.txt --run 0.986 0.978 0.994 80
"""

from __future__ import annotations

import math
import pathlib
import re
import statistics

import _common

_ROUND = re.compile(
    r"round \d+: (telemetry O(?:N|FF))\s+([\d,]+) ok, \d+ errors in ([\d.]+) s "
    r"\([\d,.]+ req/s; server CPU ([\d.]+) ms a request\)"
)


def pairs(log: pathlib.Path) -> list[tuple[float, float]]:
    """Each pair's log(req/s ON / OFF) and server CPU ON - OFF (ms a request)."""
    rounds = [m.groups() for m in map(_ROUND.search, log.read_text().splitlines()) if m]
    found = []
    for first, second in zip(rounds[::2], rounds[1::2], strict=True):
        on, off = sorted((first, second), key=lambda r: r[0] != "telemetry ON")
        if (on[0], off[0]) != ("telemetry ON", "telemetry OFF"):
            raise SystemExit(f"{log}: a pair of rounds that is not ON and OFF: {first}, {second}")
        rate_on, rate_off = (int(r[1].replace(",", "")) / float(r[2]) for r in (on, off))
        found.append((math.log(rate_on / rate_off), float(on[3]) - float(off[3])))
    return found


def interval(values: list[float]) -> tuple[float, float, float]:
    """The mean and its 95 % interval (Student's t)."""
    low, high = _common.mean_interval(values)
    return statistics.fmean(values), low, high


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("logs", nargs="*", type=pathlib.Path, help="serve_load.py's output")
    parser.add_argument(
        "--run", nargs=4, type=float, action="append", default=[],
        metavar=("MEAN", "LOW", "HIGH", "PAIRS"),
        help="a run known by its req/s ratio's geometric mean and 95 %% interval",
    )  # fmt: skip
    parser.add_argument(
        "--cpu-run", nargs=4, type=float, action="append", default=[],
        metavar=("MEAN", "LOW", "HIGH", "PAIRS"),
        help="a run known by its server CPU difference's mean and 95 %% interval (ms)",
    )  # fmt: skip
    args = parser.parse_args()
    ratios: list[tuple[float, float, int]] = []  # per run: mean log ratio, its error, pairs
    cpus: list[tuple[float, float, int]] = []  # the same for the CPU difference
    everything: list[tuple[float, float]] = []
    for log in args.logs:
        found = pairs(log)
        everything += found
        logs, cpu = [x for x, _ in found], [c for _, c in found]
        mean, low, high = interval(logs)
        ratios.append(_run(mean, low, high, len(found)))
        cpus.append(_run(*interval(cpu), len(found)))
        print(f"{log}: {len(found)} pairs, req/s ON / OFF {_ratio(mean, low, high)}; "
              f"server CPU ON - OFF {_cpu(*interval(cpu))}")  # fmt: skip
    if len(args.logs) > 1:
        mean, low, high = interval([x for x, _ in everything])
        print(f"all {len(everything)} pairs: req/s ON / OFF {_ratio(mean, low, high)}; "
              f"server CPU ON - OFF {_cpu(*interval([c for _, c in everything]))}")  # fmt: skip
    ratios += [_run(*map(math.log, run[:3]), int(run[3])) for run in args.run]
    cpus += [_run(*run[:3], int(run[3])) for run in args.cpu_run]
    pooled = (("req/s ON / OFF", ratios, _ratio), ("server CPU ON - OFF", cpus, _cpu))
    for name, runs, text in pooled:
        if len(runs) > len(args.logs):
            weights = [1 / error**2 for _, error, _ in runs]
            mean = sum(w * m for w, (m, _, _) in zip(weights, runs, strict=True)) / sum(weights)
            half = 1.959964 / sum(weights) ** 0.5
            print(f"{len(runs)} runs, {sum(n for _, _, n in runs)} pairs, by their variances: "
                  f"{name} {text(mean, mean - half, mean + half)}")  # fmt: skip


def _run(mean: float, low: float, high: float, count: int) -> tuple[float, float, int]:
    """A run as its mean, the mean's standard error (from its 95 % interval), its pairs."""
    return mean, (high - low) / (2 * _common.t_975(count - 1)), count


def _ratio(mean: float, low: float, high: float) -> str:
    return f"{math.exp(mean):.4f} (95 % interval {math.exp(low):.4f} to {math.exp(high):.4f})"


def _cpu(mean: float, low: float, high: float) -> str:
    return f"{mean:+.3f} ms (95 % interval {low:+.3f} to {high:+.3f})"


if __name__ == "__main__":
    main()
