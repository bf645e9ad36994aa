"""Checkpoints in foreign layouts for the loaders' tests: transformers keys, and a huggingface_hub cache folder."""

from __future__ import annotations

import shutil

from anydepth.checkpoints import hf_to_v2_key_table


def to_hf(sd, depth):
    """Inverse of the table, written independently: official -> transformers keys, qkv split in three."""
    out = {}
    for src, dst in hf_to_v2_key_table(depth, swiglu=any(".mlp.w12." in k for k in sd)):
        for suffix in ("", ".weight", ".bias"):
            if dst + suffix in sd:
                out[src + suffix] = sd[dst + suffix]
    for i in range(depth):
        for suffix in ("weight", "bias"):
            q, k, v = sd[f"pretrained.blocks.{i}.attn.qkv.{suffix}"].chunk(3, dim=0)
            base = f"backbone.encoder.layer.{i}.attention.attention."
            out[base + "query." + suffix], out[base + "key." + suffix], out[base + "value." + suffix] = q, k, v
    return out


def fake_hub_cache(cache, repo_id, filename, source, revision="main"):
    """The folder layout huggingface_hub keeps: refs/<rev> -> snapshots/<commit>/<file>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, snap / filename)
    return snap / filename
