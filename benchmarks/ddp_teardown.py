"""How often a two-rank DDP + gloo launch aborts at exit, with and without the collection.

A diagnostic for :func:`maha.training.distributed.cleanup_distributed`, not a speed benchmark.
Each launch is ``torchrun --standalone --nproc_per_node=2`` of a bare script: a
``DistributedDataParallel(nn.Linear(4, 4))`` takes three backward steps inside a function (as
``maha.training.train`` does), then the process group is left either

- ``destroy``: with ``torch.distributed.destroy_process_group()`` alone, or
- ``cleanup``: with :func:`cleanup_distributed` (a garbage collection, then the destroy).

With torch 2.13 on CPU the first aborts at interpreter exit in a fraction of launches
("terminate called without an active exception", SIGABRT, after the Python code finished): DDP's
autograd hooks leave reference cycles that hold gloo work objects, freed only after the group.
The script prints the failures per mode and exits 1 if any ``cleanup`` launch failed.

    python benchmarks/ddp_teardown.py                  # 30 launches per mode, about 3 minutes
    python benchmarks/ddp_teardown.py --launches 2     # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    from maha.training.distributed import cleanup_distributed

    dist.init_process_group("gloo")


    def steps():
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4).double())
        for _ in range(3):
            model(torch.randn(2, 4, dtype=torch.float64)).sum().backward()


    steps()
    if sys.argv[1] == "cleanup":
        cleanup_distributed()
    else:
        dist.destroy_process_group()
    """
)
MODES = ("destroy", "cleanup")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--launches", type=int, default=30, help="torchrun launches per mode")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per launch")
    args = p.parse_args(argv)
    if args.launches < 1:
        p.error(f"--launches must be a positive integer; received {args.launches}")
    return args


def _torchrun() -> list[str]:
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


def launch(script: Path, mode: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """One two-rank launch of the worker in ``mode``."""
    cmd = _torchrun() + ["--standalone", "--nproc_per_node=2", str(script), mode]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    from tqdm.auto import tqdm

    args = parse_args(argv)
    failures = dict.fromkeys(MODES, 0)
    aborts = dict.fromkeys(MODES, 0)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "worker.py"
        script.write_text(WORKER)
        # interleaved, so that both modes see the same machine state
        runs = [mode for _ in range(args.launches) for mode in MODES]
        for mode in tqdm(runs, desc="launches", file=sys.stderr):
            done = launch(script, mode, args.timeout)
            if done.returncode != 0:
                failures[mode] += 1
                aborts[mode] += "without an active exception" in done.stderr
    print("| leave the group with | failed launches | of which the exit abort | launches |")
    print("| --- | --- | --- | --- |")
    for mode in MODES:
        name = "destroy_process_group()" if mode == "destroy" else "cleanup_distributed()"
        print(f"| {name} | {failures[mode]} | {aborts[mode]} | {args.launches} |")
    return 1 if failures["cleanup"] else 0


if __name__ == "__main__":
    sys.exit(main())
