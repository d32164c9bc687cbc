"""A Hugging Face Hub cache built by hand, and a tiny Hub served on 127.0.0.1.

``make_repos(tmp)`` writes, with the real ``transformers`` and ``peft``: a tiny Llama base saved as
SHARDED safetensors (``model.safetensors.index.json`` + several shards), and a PEFT DoRA adapter on it
whose ``adapter_config.json`` names ``org/base``; plus ΔW per layer from PEFT's own merge.
``put_repo(cache, repo_id, files, commit)`` lays files out as huggingface_hub does:
``models--org--name/{blobs/<sha256>, snapshots/<commit>/<file> -> ../../blobs/<sha256>, refs/main}``.
``FakeHub`` serves repos over HTTP the way huggingface_hub reads them (the tree listing, HEAD/GET
``/{repo}/resolve/{rev}/{file}`` with ``X-Repo-Commit``, ``ETag``, ``Content-Length``) and logs requests.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import torch

BASE_ID, ADAPTER_ID = "org/base", "org/adapter"
TARGETS = ["q_proj", "v_proj"]


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def make_repos(tmp: Path) -> dict:
    """Folders ``base/`` (sharded) and ``adapter/`` (DoRA on layer 1 only), and the expected ΔW per layer."""
    from peft import LoraConfig, get_peft_model

    base_dir, adapter_dir = tmp / "base", tmp / "adapter"
    model = tiny_llama()
    model.save_pretrained(base_dir, max_shard_size="12KB", safe_serialization=True)
    base_sd = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, layers_to_transform=[1], use_dora=True,
                     init_lora_weights=False)
    pm = get_peft_model(copy.deepcopy(model), cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    pm.peft_config["default"].base_model_name_or_path = BASE_ID
    pm.save_pretrained(adapter_dir, save_embedding_layers=False)
    merged = pm.merge_and_unload().state_dict()
    layers = [f"model.layers.1.self_attn.{t}" for t in TARGETS]
    expected = {n: (merged[n + ".weight"].double() - base_sd[n + ".weight"].double()) for n in layers}
    index = json.loads((base_dir / "model.safetensors.index.json").read_text())
    return {"base": base_dir, "adapter": adapter_dir, "expected": expected, "weight_map": index["weight_map"]}


def files_of(folder: Path, prefix: str = "") -> dict[str, Path]:
    return {prefix + p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def put_repo(cache: Path, repo_id: str, files: dict[str, Path], commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """Lay ``files`` ({path in repo: source file}) out in ``cache`` as one snapshot; returns the snapshot folder."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snap = root / "snapshots" / commit
    for rel, src in files.items():
        data = src.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (root / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snap


class FakeHub:
    """A loopback HTTP server standing in for the Hub: ``repos[repo_id] = (commit, {path: bytes})``."""

    def __init__(self) -> None:
        self.repos: dict[str, tuple[str, dict[str, bytes]]] = {}
        self.log: list[tuple[str, str]] = []
        self.auth: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:  # quiet
                pass

            def _route(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.log.append((self.command, path))
                hub.auth.append(self.headers.get("authorization", ""))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
                    repo = "/".join(parts[2:4])
                    if repo not in hub.repos:
                        return self._send(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"}, head)
                    commit, files = hub.repos[repo]
                    body = json.dumps([{"type": "file", "path": p, "size": len(b), "oid": "0" * 40}
                                       for p, b in sorted(files.items())]).encode()
                    return self._send(200, body, {"Content-Type": "application/json"}, head)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, rel = "/".join(parts[:2]), "/".join(parts[4:])
                    if repo not in hub.repos:
                        return self._send(404, b"", {"X-Error-Code": "RepoNotFound"}, head)
                    commit, files = hub.repos[repo]
                    if rel not in files:
                        return self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, head)
                    data = files[rel]
                    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                    return self._send(200, data, {"X-Repo-Commit": commit, "ETag": etag}, head)
                self._send(404, b"", {}, head)

            def _send(self, code: int, body: bytes, headers: dict[str, str], head: bool) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self._route(True)

            def do_GET(self) -> None:  # noqa: N802
                self._route(False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, repo_id: str, commit: str, files: dict[str, Path]) -> None:
        self.repos[repo_id] = (commit, {k: v.read_bytes() for k, v in files.items()})

    def fetched(self) -> list[str]:
        """The repo files requested with GET (downloads), as ``repo/path``."""
        out = []
        for method, path in self.log:
            parts = path.strip("/").split("/")
            if method == "GET" and len(parts) >= 5 and parts[2] == "resolve":
                out.append("/".join(parts[:2]) + ":" + "/".join(parts[4:]))
        return out

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
