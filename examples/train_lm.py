"""Train a causal byte-level language model (MAHA or a baseline) on the standard library.

    python examples/train_lm.py --variant maha-nash --steps 200 --seq-len 1024
    python examples/train_lm.py --variant full --data path/to/text --checkpoint-dir ckpt
    python examples/train_lm.py ... --checkpoint-dir ckpt --resume        # continue a run
    torchrun --nproc_per_node=2 examples/train_lm.py --variant maha-nash  # DDP (gloo on CPU)

``python examples/train_lm.py --help`` lists every option; :mod:`maha.training` does the work.
"""

import sys

from maha.training import main

if __name__ == "__main__":
    sys.exit(main())
