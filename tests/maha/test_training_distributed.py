"""DDP: two CPU processes (torchrun, gloo) train to the same parameters as one process.

With the global batch split between the ranks, DDP's averaged gradient equals the gradient of
the mean loss over the combined batch, so in float64 (dropout off) both ranks must hold the
parameters of a single-process run on the combined batch, up to summation-order rounding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from maha import MAHAConfig
from maha.training import TrainConfig, prepare, train

# One torchrun launch trains every variant in one process group.
WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from maha import MAHAConfig
    from maha.training import TrainConfig, train
    from maha.training.distributed import cleanup_distributed

    out, data, opts, model = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    rank = int(os.environ["RANK"])
    for variant in sys.argv[5:]:
        config = TrainConfig(
            **opts, variant=variant, data=data, model=MAHAConfig(**json.loads(model))
        )
        result = train(config)
        torch.save(
            {"params": result.model.state_dict(), "world": int(os.environ["WORLD_SIZE"]),
             "loss": result.train_loss, "val": result.val_bpb},
            os.path.join(out, f"{variant}-rank{rank}.pt"),
        )
    cleanup_distributed()
    """
)

VARIANTS = ["maha-mean", "local"]  # "local" has parameters unused by the loss


def _torchrun():
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    corpus = tmp / "text"
    corpus.mkdir()
    for i in range(5):
        (corpus / f"f{i}.txt").write_text("".join(f"row {i} {j} {j * j}\n" for j in range(80)))
    model = dict(block_size=32, n_layer=1, n_head=2, d_model=16, num_scales=2, window=8)
    opts = dict(
        val_fraction=0.3,
        seq_len=32,
        steps=3,
        batch_size=4,
        lr=1e-2,
        eval_every=0,
        eval_sequences=4,
        dtype="float64",
        device="cpu",
        progress=False,
    )
    script = tmp / "worker.py"
    script.write_text(WORKER)
    # faulthandler prints each rank's Python stack if it aborts; each rank's output goes to its
    # own log so that a failure shows the ranks' words, not only torchrun's traceback
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    logs = tmp / "logs"
    cmd = _torchrun() + ["--standalone", "--nproc_per_node=2", "--redirects=3"]
    cmd += [f"--log-dir={logs}", str(script)]
    cmd += [str(tmp), str(corpus), json.dumps(opts), json.dumps(model), *VARIANTS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    if proc.returncode != 0:
        ranks = "".join(
            f"--- rank {log.parent.name} {log.name}:\n{log.read_text()[-2000:]}\n"
            for log in sorted(logs.rglob("*.log"))
            if log.read_text().strip()
        )
        pytest.fail(f"torchrun exited with {proc.returncode}\n{ranks}{proc.stderr[-1500:]}")
    return tmp, corpus, opts, model


@pytest.mark.parametrize("variant", VARIANTS)
def test_two_rank_ddp_equals_one_process_on_the_combined_batch(ddp_run, variant):
    tmp, corpus, opts, model = ddp_run
    ranks = [torch.load(tmp / f"{variant}-rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    config = TrainConfig(**opts, variant=variant, data=str(corpus), model=MAHAConfig(**model))
    initial = prepare(config).model.state_dict()
    single = train(config)
    reference = single.model.state_dict()
    for name, value in reference.items():
        torch.testing.assert_close(
            ranks[0]["params"][name], ranks[1]["params"][name], rtol=0, atol=0
        )
        torch.testing.assert_close(ranks[0]["params"][name], value, rtol=1e-10, atol=1e-12)
    moved = [k for k, v in initial.items() if not torch.equal(v, reference[k])]
    assert len(moved) > len(reference) // 2  # the steps really changed the parameters
    # the logged loss is the mean over ranks, i.e. the combined batch's loss
    for (s0, l0), (s1, l1) in zip(ranks[0]["loss"], single.train_loss):
        assert s0 == s1 and l0 == pytest.approx(l1, rel=1e-10)
    assert ranks[0]["val"] == pytest.approx(single.val_bpb, rel=1e-10)


def test_cleanup_frees_reference_cycles_while_the_group_still_exists(tmp_path):
    """Objects in reference cycles (as DDP's hooks leave them) are freed before the group goes.

    Freed only at interpreter exit, after ``destroy_process_group``, gloo's work objects abort
    the process; :func:`cleanup_distributed` therefore collects garbage first.
    """
    import gc
    import weakref

    import torch.distributed as dist

    from maha.training.distributed import cleanup_distributed

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:

        class Node:
            pass

        node = Node()
        node.self = node  # a cycle: only the collector frees it
        node.tensor = torch.ones(2)
        seen = []
        weakref.finalize(node, lambda: seen.append(dist.is_initialized()))
        del node
        gc.disable()  # no automatic collection in between
        try:
            cleanup_distributed()
        finally:
            gc.enable()
        assert seen == [True]
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
