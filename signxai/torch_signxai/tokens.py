"""The token view of a PyTorch model (docs/transformers.md#text, signxai/core/tokens.py).

The embedding module that the model calls on the token ids themselves (found by running the model once on an
example batch and watching ``F.embedding``) is replaced, in a structural copy that shares every parameter, by a
module that returns the precomputed vectors the view receives; the caller's model is not touched. The view's
forward is ``(embeddings, ids)``: the model still receives the ids (held fixed per sample), so position ids, token
type ids and masks that it derives from them stay what they were.
"""
from __future__ import annotations

import contextvars
import copy
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from signxai.core.tokens import TokenView

_VECTORS: contextvars.ContextVar = contextvars.ContextVar("signxai_token_vectors", default=None)


class Injected(nn.Module):
    """Stands where the embedding was: returns the vectors the token view received (the identity on precomputed
    embedding outputs)."""

    def forward(self, ids):
        vectors = _VECTORS.get()
        if vectors is None:
            raise RuntimeError("the token view's embedding was called outside the view's forward")
        return vectors


class TokenModel(nn.Module):
    """``model`` with its token embedding replaced by :class:`Injected`: ``forward(embeddings, ids)``, the embedding
    vectors in PyTorch's channels-first layout of signxai (``(N, H, T)``, docs/api.md#arguments), transposed back to
    the ``(N, T, H)`` the model computes with."""

    #: its rule-based capture falls back to torch.export on (vectors, ids) where torch.fx fails (HF BERT, GPT-2)
    export_capture = True

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, embeddings, ids):
        token = _VECTORS.set(embeddings.transpose(1, 2))
        try:
            return self.model(ids)
        finally:
            _VECTORS.reset(token)


class _Watch(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls: list = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.embedding:
            self.calls.append((args[0] if args else kwargs.get("input"),
                               args[1] if len(args) > 1 else kwargs.get("weight")))
        return func(*args, **kwargs)


def _replaced(model: nn.Module, path: str, module: nn.Module) -> nn.Module:
    """A structural copy of ``model`` (shallow along ``path``, every other module and parameter shared) with the
    submodule at ``path`` replaced by ``module``."""
    root = copy.copy(model)
    root._modules = dict(model._modules)
    parent, names = root, path.split(".")
    for name in names[:-1]:
        child = copy.copy(parent._modules[name])
        child._modules = dict(child._modules)
        parent._modules[name] = child
        parent = child
    parent._modules[names[-1]] = module
    return root


def token_view(model: nn.Module, ids: np.ndarray, eval_mode) -> Optional[TokenView]:
    """The token view of ``model`` (docs/transformers.md#text); None where the model does not look ``ids`` up in an
    embedding table, ValueError where it does but the lookup cannot be replaced."""
    if not any(isinstance(m, nn.Embedding) for m in model.modules()):
        return None
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.as_tensor(ids[:1], device=device)
    watch = _Watch()
    try:
        with eval_mode(model), torch.no_grad(), watch:
            model(example)
    except Exception:  # noqa: BLE001 -- a model that cannot run on integers does not take token ids
        return None
    modules = {id(m.weight): (path, m) for path, m in model.named_modules() if isinstance(m, nn.Embedding)}
    for index, weight in watch.calls:
        if not (isinstance(index, torch.Tensor) and index.shape == example.shape and torch.equal(index, example)):
            continue
        if id(weight) not in modules:
            raise ValueError("the model looks its token ids up with F.embedding on a table that is not an "
                             "nn.Embedding module; signxai replaces the embedding module by the identity on "
                             "precomputed vectors (docs/transformers.md#text): hold the table in an nn.Embedding")
        path, embedding = modules[id(weight)]
        if embedding.max_norm is not None:
            raise ValueError(f"embedding {path!r} has max_norm set: its lookup renormalises rows of the table in "
                             f"place, which an explanation must not do")
        view = TokenModel(_replaced(model, path, Injected())).eval()

        def lookup(batch: np.ndarray, embedding=embedding) -> np.ndarray:
            with torch.no_grad():
                return embedding(torch.as_tensor(batch, device=embedding.weight.device)).float().cpu().numpy()
        return TokenView(view, lookup, True, path)
    return None
