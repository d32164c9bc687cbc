"""``rankscope relate A [B] [--base BASE] [--k K] [--eps E] [--layer PATTERN] [--json]``.

Two checkpoints: per shared layer the subspace similarity of their top-k singular directions (left
and right), the principal angles and the φ(i, j) matrix (LoRA paper §7.2). One checkpoint with
``--base``: per layer the amplification factor (§7.3), the alignment with W0's top-k directions,
intruder dimensions of W0 + ΔW (Shuttleworth et al. 2024) and the ESD power-law alpha of W0 and
W0 + ΔW. Both with a base: the pair fields plus A's base fields under ``base``. ``--json`` prints
exactly one object ``{"layers": [...], "warnings": [...]}`` (see docs/relations.md).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

HELP = "how updates relate: two adapters' directions, or an update against its base weights"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="a checkpoint")
    p.add_argument("b", metavar="B", nargs="?", default=None, help="a second checkpoint (compared layer by layer)")
    p.add_argument("--base", metavar="BASE", default=None, help="base model weights (<layer>.weight): ΔW against W0")
    p.add_argument("--k", type=int, default=8, help="top singular directions compared (default 8)")
    p.add_argument("--eps", type=float, default=0.5, help="intruder threshold on the max |cos| (default 0.5)")
    p.add_argument("--layer", metavar="PATTERN", default=None, help="only layers matching a glob (*q_proj) or containing PATTERN")
    p.add_argument("--tuned", choices=("update", "dense"), default="update",
                   help="top-k of W0+ΔW as a low-rank update of W0 (default) or by a dense SVD")
    p.add_argument("--no-esd", action="store_true", help="skip the ESD power-law alpha (a dense svdvals of W0+ΔW per layer)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the base-SVD disk cache")
    p.add_argument("--cache-dir", default=None, help="base-SVD cache folder (default $RANKSCOPE_CACHE or ~/.cache/rankscope)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")


def _f(x, spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def render(result: dict) -> str:
    """One human line per layer, then the warnings (terminal-safe names)."""
    from ..errors import clean_terminal

    out = []
    for r in result["layers"]:
        parts = [clean_terminal(r["layer"])]
        if "subspace_similarity_left" in r:
            parts.append(f"k={r['k']} sim L {_f(r['subspace_similarity_left'])} R {_f(r['subspace_similarity_right'])} "
                         f"top-1 {_f(r['top1_similarity_left'])} angles {'/'.join(_f(a, '.0f') for a in r['principal_angles_deg'])}")
        b = r.get("base", r) if "amplification" in r.get("base", r) else None
        if b is not None:
            parts.append(f"amplification {_f(b['amplification'], '.2f')} (r={b.get('amplification_r', '-')}) "
                         f"align L {_f(b.get('alignment_left'))} R {_f(b.get('alignment_right'))} "
                         f"intruders {_f(b.get('intruders'), 'd')}/{b['k']} alpha {_f(b.get('alpha_base'), '.2f')} -> "
                         f"{_f(b.get('alpha_tuned'), '.2f')}")
        out.append("  ".join(parts))
    out += [clean_terminal(f"warning: {w}") for w in result["warnings"]]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from analysis.inspect import torch_threads

    from ..errors import UserError
    from ..relating import json_clean, open_inputs, relate_all

    if args.k < 1:
        raise UserError("--k", f"must be >= 1, got {args.k}")
    if not (0.0 < args.eps <= 1.0):
        raise UserError("--eps", f"must be in (0, 1], got {args.eps}")
    with torch_threads(1):
        inp = open_inputs(args.a, args.b, args.base, args.layer, cache=not args.no_cache, cache_dir=args.cache_dir)
    result = json_clean(relate_all(inp, args.k, args.eps, tuned=args.tuned, with_esd=not args.no_esd))
    if args.json:
        json.dump(result, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(render(result))
    return 0
