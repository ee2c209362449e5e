"""fnnbench's benchmark tools: run from a checkout, not part of the installed package.

    python -m benchmarks.speed              trainer vs PyTorch throughput, GEMM peak, per-update
                                            overhead, per-job costs -> benchmarks/results.md
                                            (``make bench``)
    python -m benchmarks.report_speed       ``python -m fnnbench.report`` on a large synthetic
                                            MLflow store (runs from tests.fixtures.store)
    python -m benchmarks.tracking_overhead  the same job with MLflow tracking on vs off

``--help`` on each lists its options. ``results.md`` is the output of the last full
``benchmarks.speed`` run, kept for reference; ratios are only comparable within one run.
"""
