"""``maha generate``: sample text from a ``maha train`` checkpoint, streamed as it is produced.

::

    maha generate --checkpoint runs/nash --prompt "def " --max-new-tokens 200

The prompt's UTF-8 bytes are the token ids (the models are byte-level, vocabulary 256).
The prompt is echoed, then each sampled byte is decoded incrementally (a UTF-8 character
split over several bytes appears once complete; invalid sequences become U+FFFD) and
written to stdout, flushed after every token; a newline ends the output. Tokens come from
``model.iter_generate`` (the streaming cache unless ``--no-cache``): token ``t`` is drawn
from ``softmax(logits_t / temperature)`` restricted to the ``top_k`` most likely bytes.
``--compile`` runs each new token through compiled graphs (:mod:`maha.decoding`;
``model.iter_generate(..., compile=True)``): the first new tokens wait for the
compilation, the later ones are faster.

Context: with the cache the prompt may hold at most the model's ``block_size`` bytes (else
the command exits with status 2 before any output); once prompt and new tokens pass
``block_size``, every further token is computed on the last ``block_size`` bytes (a sliding
context, as ``--no-cache`` does from the start).
"""

from __future__ import annotations

import argparse
import codecs
import itertools
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

import torch

__all__ = ["build_parser", "main", "stream_text"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of :func:`main`."""
    p = argparse.ArgumentParser(
        prog="maha generate",
        description="Sample text from a trained byte-level language model, streamed to stdout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a 'maha train' --checkpoint-dir (its newest checkpoint) or a ckpt_*.pt file",
    )
    p.add_argument("--prompt", required=True, help="text to continue (its UTF-8 bytes)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="bytes to sample")
    p.add_argument("--temperature", type=float, default=1.0, help="> 0; logits are divided by it")
    p.add_argument(
        "--top-k", type=int, default=None, help="sample among the k most likely bytes (1: greedy)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the sampler (default: random)")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the whole context for every token instead of the streaming cache",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the MAHA model's one-token step with torch.compile (maha.decoding: the "
        "first new tokens wait for the compilation, minutes with inductor on a CPU the first "
        "time; later ones are faster)",
    )
    p.add_argument(
        "--compile-backend", default="inductor", help="the torch.compile backend of --compile"
    )
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:K")
    return p


def stream_text(tokens: Iterable[torch.Tensor | int], out: TextIO) -> str:
    """Write byte tokens to ``out`` as UTF-8 text as they arrive, flushing after each one.

    Args:
        tokens: an iterable of ``(1, 1)`` integer tensors (or ints) in ``[0, 256)``.
        out: a text stream.

    Returns:
        The text written (equal to ``bytes(all tokens).decode("utf-8", errors="replace")``).
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = []
    for token in tokens:
        value = int(token.reshape(-1)[0]) if isinstance(token, torch.Tensor) else int(token)
        piece = decoder.decode(bytes([value]))
        if piece:
            out.write(piece)
            pieces.append(piece)
        out.flush()
    tail = decoder.decode(b"", final=True)
    if tail:
        out.write(tail)
        pieces.append(tail)
    out.flush()
    return "".join(pieces)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, load the model, stream the sampled text; bad input exits with status 2."""
    from .loading import load_model
    from .training.distributed import resolve_device

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_new_tokens < 0:
        parser.error(f"--max-new-tokens must be >= 0; received {args.max_new_tokens}")
    if args.compile and args.no_cache:
        parser.error("--compile compiles the cached decoding step; it cannot go with --no-cache")
    if not args.prompt:
        parser.error("--prompt must be non-empty (the model continues a text); received ''")
    try:
        device = resolve_device(args.device)
    except (ValueError, TypeError) as err:
        parser.error(f"--device: {err}")
    try:
        model = load_model(args.checkpoint, device=device)
    except (ValueError, TypeError) as err:
        parser.error(f"--checkpoint: {err}")
    vocab = model.config.vocab_size
    if vocab < 256:
        parser.error(f"--checkpoint holds a model with vocab_size={vocab}; byte prompts need 256")
    raw = os.fsencode(args.prompt)  # the bytes as given (argv's undecodable bytes included)
    prompt = torch.tensor([list(raw)], dtype=torch.long, device=device)  # (1, T0)
    generator = None
    if args.seed is not None:
        generator = torch.Generator(device=device).manual_seed(args.seed)
    try:  # the first token checks every option (and runs the prompt) before any output
        tokens = model.iter_generate(
            prompt,
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            generator=generator,
            use_cache=not args.no_cache,
            compile=args.compile,
            compile_backend=args.compile_backend,
        )
        first = list(itertools.islice(tokens, 1))
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    sys.stdout.write(raw.decode("utf-8", errors="replace"))
    stream_text(itertools.chain(first, tokens), sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0
