"""Layer-wise LRP rules: rule objects and composites (rule maps), the same for Keras and PyTorch models.

    from signxai import lrp
    composite = lrp.Composite([("input", lrp.ZBox(-1.0, 1.0)),
                               ("conv", lrp.AlphaBeta(1, 0)),
                               (lrp.Name("fc*"), lrp.Epsilon(0.25))], default=lrp.Z())
    R = signxai.calculate_relevancemap(model, x, composite)        # or method="lrp", rules=composite

Entries are ``(selector, rule)`` pairs, first match wins; a kernel layer no entry gives a rule gets ``default``. A
selector is a layer type (``"dense"``, ``"conv"``, ``"batchnorm"``, ``"add"``, ``"avgpool"``, ``"activation"``, also
``"product"``, ``"pass"``, ``"reindex"``, and the attention kinds ``"bilinear"``, ``"softmax"``, ``"norm"`` of
docs/transformers.md), ``"input"`` (the input layers of docs/lrp.md#input-layers),
``Name(pattern, …)`` (Keras layer name or PyTorch module path; wildcards allowed) or a predicate ``f(layer) -> bool`` on
a :class:`Layer`. Every LRP catalog name is such a composite: ``composite_for("lrpsign_epsilon_0_1")``. Writing a rule
of your own: docs/lrp_rules.md.
"""
from __future__ import annotations

from signxai.core.composite import (INPUT, LAYER_KINDS, AlphaBeta, BatchNormRule, Composite, Epsilon, Flat,
                                    Gradient, KernelRule, Layer, Name, Pass, Rule, Sign, SignalTakeAll, StdxEpsilon,
                                    WSquare, Z, ZBox, compile_method)
from signxai.core.composite import GateOrUniform, LayerNormRule, SoftmaxRule, Uniform, ValuesOnly
from signxai.core.rules import safe_divide, sign0
from signxai.core.rules import weighted_backward as transpose_apply


def composite_for(method: str, **params) -> Composite:
    """The composite an LRP method name compiles to (the one its maps are computed with), e.g.
    ``composite_for("lrpsign_epsilon_0_1")`` → ``Composite([('input', Sign(mu=0.0))], default=Epsilon(epsilon=0.1))``.
    ``params`` are the name's keyword parameters (``epsilon=``, ``low=``/``high=`` …)."""
    from signxai.methods import resolve_method

    resolved = resolve_method(method, **params)
    if resolved.base != "lrp":
        raise ValueError(f"{method!r} is not an LRP method; composites describe LRP methods only")
    return compile_method(resolved)


__all__ = ["AlphaBeta", "BatchNormRule", "Composite", "Epsilon", "Flat", "Gradient", "INPUT", "KernelRule",
           "LAYER_KINDS", "Layer", "Name", "Pass", "Rule", "Sign", "SignalTakeAll", "StdxEpsilon", "WSquare", "Z",
           "Uniform", "GateOrUniform", "ValuesOnly", "SoftmaxRule", "LayerNormRule",
           "ZBox", "composite_for", "safe_divide", "sign0", "transpose_apply"]
