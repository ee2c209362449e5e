"""benchmarks.speed's --quick path on a tiny configuration: the table's rows and columns (no
timing assertions: the machine is shared)."""

from __future__ import annotations

import pytest

from benchmarks import speed as bench


def _rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the markdown table under ``heading`` (header row first)."""
    lines = text.splitlines()
    i = lines.index(heading) + 1
    while not lines[i].startswith("|"):
        i += 1
    rows = []
    while i < len(lines) and lines[i].startswith("|"):
        if not lines[i].startswith("|---"):
            rows.append([c.strip() for c in lines[i].strip("|").split("|")])
        i += 1
    return rows


@pytest.mark.slow
def test_quick_bench_writes_the_expected_tables(tmp_path):
    out = tmp_path / "bench.md"
    args = [
        "--quick",
        "--nets",
        "8-16-16-3,784-32-32-10",
        "--batches",
        "1,4,1024,0",
        "--dtypes",
        "float32,float64",
        "--repeats",
        "1",
        "--out",
        str(out),
    ]
    assert bench.main(args) == 0
    text = out.read_text()

    rows = _rows(text, "## Training throughput: fnnbench trainer vs PyTorch")
    assert rows[0] == list(bench.THROUGHPUT_COLUMNS)
    body = rows[1:]
    expected = [
        (net, dt, b)
        for net in ("8-16-16-3", "784-32-32-10")
        for dt in ("float32", "float64")
        for b in ("1", "4", "1024", "4096 (full)")
    ]
    assert [(r[0], r[1], r[2]) for r in body] == expected
    for r in body:
        assert float(r[3]) > 0  # fnnbench samples/s
        assert r[5] == "n/a" or float(r[5]) > 0  # ratio (n/a without PyTorch)
        assert r[7] in ("yes", "**no**", "n/a")

    machine = dict((r[0], r[1]) for r in _rows(text, "## Machine")[1:])
    assert {"CPU", "cores", "NumPy BLAS", "NumPy", "PyTorch", "date"} <= set(machine)

    gemm = _rows(text, "## GEMM peak and achieved fraction")
    assert [r[0] for r in gemm[1:3]] == ["GEMM peak float32 (N=1024)", "GEMM peak float64 (N=1024)"]

    overhead = _rows(text, "## Per-update overhead at batch 1 (small net)")
    assert [r[0] for r in overhead[1:]] == ["float32", "float64"]

    jobs = dict((r[0], r[1]) for r in _rows(text, "## Per-job costs (subprocesses)")[1:])
    assert any("import fnnbench.__main__" in k for k in jobs)
    assert "tracking overhead (on / off)" in jobs
    assert jobs["tracking overhead (on / off)"].endswith("x")
    assert any(k.startswith("peak memory of the digits job") for k in jobs)
