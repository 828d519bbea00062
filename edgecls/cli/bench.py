"""`edgecls bench`: latency and throughput per runtime, and the recommendation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..bench.decide import Constraints
from ..bench.measure import BenchConfig
from ..core.errors import EdgeclsError
from ..core.gates import MAX_DROP_HELP
from ..core.names import Device, Precision
from ..report.console import err, parity_outcomes, render_bench
from ..runtimes import RUNTIMES
from .common import (
    DEFAULT_BUNDLE,
    AcceptInconclusive,
    ForBatch,
    MaxLatency,
    MaxSize,
    Percentile,
    PercentileOpt,
    TieMargin,
    _choices,
    _emit_json,
    _finish_with_decision,
    _ints,
    handled,
)

DEFAULT_PERCENTILE = Percentile(Constraints.percentile)


@handled
def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")] = DEFAULT_BUNDLE,
    runtime: Annotated[str, typer.Option(help=f"Comma-separated: {_choices(RUNTIMES)}, or all.")] = "all",
    precision: Annotated[str, typer.Option(
        help=f"Comma-separated: {_choices(Precision)}, or all (fp32,int8).")] = "all",
    device: Annotated[Device, typer.Option(help="cpu, or gpu (a clear error where there is none).")
                      ] = BenchConfig.device,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes, e.g. 1,8,32.")] = "1",
    threads: Annotated[Optional[int], typer.Option(
        help="Threads for every runtime (default: the physical cores this process may use — CPU affinity and "
             "cgroup quota respected — the same for all).")] = BenchConfig.threads,
    warmup: Annotated[int, typer.Option(help="At least this many untimed runs after the first inference...")
                      ] = BenchConfig.warmup,
    warmup_time: Annotated[float, typer.Option(
        help="...and this many seconds, then on until the per-call time settles (at most 3 s).")
    ] = BenchConfig.warmup_time,
    min_runs: Annotated[int, typer.Option(help="At least this many timed runs per round...")
                        ] = BenchConfig.min_runs,
    min_time: Annotated[float, typer.Option(help="...and at least this many seconds of them (> 0).")
                        ] = BenchConfig.min_time,
    rounds: Annotated[int, typer.Option(help="Measure each configuration this many times, each in a fresh process, "
                                             "taking turns with the others. The round is the unit of evidence: "
                                             "the p50 is the median of the rounds' p50s, its interval their order "
                                             "statistics (6 rounds: 96.9%; 5: 93.8%; 3: 75%, each labelled), and "
                                             "ties are judged on per-round ratios.")] = BenchConfig.rounds,
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Write results as JSON ('-': stdout).")] = None,
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="Write results as CSV.")] = None,
    for_batch: ForBatch = Constraints.for_batch,
    max_latency: MaxLatency = Constraints.max_latency_ms,
    percentile: PercentileOpt = DEFAULT_PERCENTILE,
    max_size: MaxSize = Constraints.max_size_kb,
    max_drop: Annotated[Optional[float], typer.Option(
        help="Re-judge int8 files under this gate before recommending: " + MAX_DROP_HELP + ".")
    ] = Constraints.max_drop,
    tie_margin: TieMargin = Constraints.tie_margin,
    accept_inconclusive: AcceptInconclusive = Constraints.accept_inconclusive,
):
    """Measure latency and throughput of every runtime x precision (x batch size), each in a fresh process,
    in 6 interleaved rounds, with an interval for every p50 (96.9% at 6 rounds, labelled); then recommend the
    artifact to ship among those that pass parity, under the constraints given. Exit 1 when none qualifies.

    Examples:

      edgecls bench                                        # every available runtime, fp32 and int8, batch 1

      edgecls bench --batch 1,32 --for-batch 32 --max-size 100 --max-latency 5 --percentile p99

      edgecls bench --runtime onnx,openvino --batch 1,32 --threads 1 --csv bench.csv

      edgecls bench --rounds 9 --min-time 0.3                # 9 interleaved rounds: a 96.1% p50 interval

      edgecls bench --percentile p99 --min-runs 111 --max-latency 1  # p99 needs >= 662 runs (6 rounds x 111)
    """
    from ..bench.measure import bench as run
    from ..bench.measure import to_csv
    from ..core.bundle import Bundle
    from ..core.files import atomic_write, ensure_writable
    from ..core.hooks import Hooks
    from ..report.console import use_stderr

    for option, path in (("--json", json_file), ("--csv", csv_file)):
        if path is not None and str(path) != "-":
            ensure_writable(path, option)  # before minutes of measuring
    cfg = BenchConfig(runtimes=runtime, precisions=precision, device=device,
                      batches=_ints(batch, "--batch"), threads=threads, warmup=warmup, warmup_time=warmup_time,
                      min_runs=min_runs,
                      min_time=min_time, rounds=rounds,
                      constraints=Constraints(for_batch, max_latency, percentile.value, max_size, max_drop,
                                              tie_margin=tie_margin, accept_inconclusive=accept_inconclusive))

    class Progress(Hooks):
        def measured(self, row):
            done = f"round {row['round']}/{row['rounds']}" if "round" in row else f"{row['runs']} runs"
            err.print(f"{row['runtime']} {row['precision']} batch {row['batch']}: p50 {row['p50_ms']:.3f} ms "
                      f"({done})", highlight=False)

    result = run(bundle, cfg, hooks=Progress())
    if json_file is not None and str(json_file) == "-":
        _emit_json(result.to_dict())
    else:
        render_bench(result, parity_outcomes(Bundle.open(bundle).manifest))
        if json_file is not None:
            atomic_write(json_file, json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    if csv_file is not None:
        atomic_write(csv_file, to_csv(result.rows))
    with use_stderr(json_file is not None and str(json_file) == "-"):  # stdout carries the JSON alone
        if result.save_error:  # the results are shown above; say why they are not stored
            raise EdgeclsError(f"{result.save_error} (the results above are not stored)")
        _finish_with_decision(result.decision, "verify" in Bundle.open(bundle).manifest)
