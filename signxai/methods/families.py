"""Method families as records (docs/methods.md#families).

A :class:`Family` says, for one base word of the grammar (``gradient``, ``smoothgrad``, ``lrp``…), which driver of
``signxai/core/explain.py`` runs it (:class:`Driver` and its subclasses), which keyword parameters it accepts with
which defaults and checks, which products (``_x_input``, ``_x_sign``) may follow it, which models it applies to and,
for a wrapper (noise tunnel, path integration), which base methods it may wrap. The parser
(``signxai/methods/grammar.py``) reads names through these records and ``explain`` dispatches on
``type(family.driver)``, so adding a family is adding a record here and a driver there (docs/methods.md#families).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

from .checks import ATTENTION, LAYER, NON_NEGATIVE, NUM_SAMPLES, REAL_OR_ARRAY, SEED, STEPS, Check

Product = Literal["input", "sign"]  # `_x_input` → B ⊙ x; `_x_sign[_mu[_v]]` → B ⊙ s_μ(x)
Syntax = Literal["plain", "grad_cam", "lrp"]  # the grammar production that reads the words after the keyword
Applicability = Literal["any", "convolutional"]  # the models a family applies to

PRODUCTS: tuple[Product, ...] = ("input", "sign")
# LRP prefixes → the rule of the input layers (docs/methods.md#tokens); the keywords of the "lrp" family
LRP_INPUT_RULES: Mapping[str, str | None] = MappingProxyType(
    {"lrp": None, "lrpsign": "sign", "lrpz": "z", "zblrp": "zb", "w2lrp": "w2", "flatlrp": "flat"})


# ---------------------------------------------------------------------------------------------------
# Drivers: which function of signxai/core/explain.py runs a family, with the switches it needs


@dataclass(frozen=True)
class Driver:
    """Names the driver of ``signxai/core/explain.py`` that computes a family's base map B (before products);
    ``explain._DRIVERS`` maps each subclass to its function."""


@dataclass(frozen=True)
class RandomPlane(Driver):
    """A U(−1, 1) plane broadcast over channels (docs/methods.md#random-uniform)."""


@dataclass(frozen=True)
class Gradient(Driver):
    """``backend.gradients``: ∂y_c/∂x (docs/methods.md#gradient-family)."""


@dataclass(frozen=True)
class GuidedBackward(Driver):
    """``backend.graph_backward`` with the guided-backprop mapping, or DeconvNet's (docs/methods.md#guided-backprop)."""

    deconvnet: bool


@dataclass(frozen=True)
class GradCam(Driver):
    """``backend.cam_activations`` reduced and upsampled in NumPy; ``guided``: times guided backprop
    (docs/methods.md#grad-cam)."""

    guided: bool


@dataclass(frozen=True)
class LrpBackward(Driver):
    """``backend.graph_backward`` with the method's composite and the LRP head (docs/lrp.md)."""


@dataclass(frozen=True)
class NoiseTunnel(Driver):
    """A wrapper: the base map averaged over noisy copies of the input; ``variance``: their variance instead
    (docs/methods.md#noise-tunnel)."""

    variance: bool


@dataclass(frozen=True)
class PathIntegral(Driver):
    """A wrapper: the base map (the gradient) averaged along the straight path from the reference, times
    ``x − reference`` (docs/methods.md#path-integration)."""


# ---------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Param:
    """A keyword parameter of a family: its check and its default (:data:`UNSET`: an optional keyword that is in a
    method's ``params`` only where given; its default is then the driver's)."""

    check: Check
    default: Any


#: the default of an optional keyword parameter that is recorded only where given (LRP's ``attention=``)
UNSET = object()


@dataclass(frozen=True)
class Wrapping:
    """What a wrapper family may wrap (docs/methods.md#wrappers)."""

    default_base: str  # the base method of the family's own name: `smoothgrad` ≡ `smoothgrad(gradient)`
    bases: tuple[str, ...]  # the families (record names) whose methods it may wrap
    base_products: bool  # whether the base may carry its own `_x_input`/`_x_sign` product
    why: str  # the reason given when another base is refused


@dataclass(frozen=True)
class Family:
    """One method family: the grammar words that start its names, the driver that runs it, its parameters and
    products, the models it applies to, and (for a wrapper) what it wraps (docs/methods.md#families)."""

    name: str  # the record's key and the `Method.base` of its names
    driver: Driver
    keywords: tuple[str, ...] = ()  # the words a name of the family starts with; () means (name,)
    params: Mapping[str, Param] = field(default_factory=dict, hash=False)  # accepted by every name, in this order
    products: tuple[Product, ...] = ()  # the suffixes that may follow the base
    syntax: Syntax = "plain"  # "plain": keyword [product]; "grad_cam"/"lrp": the family's own production
    applies_to: Applicability = "any"
    chunked: bool = False  # evaluates many points in chunks: accepts batch_size=
    wraps: Wrapping | None = None  # a wrapper: a method of another family is its base
    group: str = ""  # its key in method_families() (default: name; LRP names are grouped by rule)
    symbol: str = ""  # its symbol in docs/catalog.md

    def __post_init__(self) -> None:
        object.__setattr__(self, "keywords", self.keywords or (self.name,))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "group", self.group or self.name)


NOISE_PARAMS = {"num_samples": Param(NUM_SAMPLES, 50), "noise_level": Param(NON_NEGATIVE, 0.2),
                "seed": Param(SEED, 0)}
PATH_PARAMS = {"steps": Param(STEPS, 50), "reference": Param(REAL_OR_ARRAY, 0.0)}
NOISE_WRAPPING = Wrapping(
    default_base="gradient",
    bases=("gradient", "guided_backprop", "deconvnet", "integrated_gradients", "grad_cam", "guided_grad_cam", "lrp"),
    base_products=True,
    why="a noise tunnel averages a map that depends on the input; random_uniform does not, and a noise tunnel "
        "inside a noise tunnel would draw the same noise twice")
PATH_WRAPPING = Wrapping(
    default_base="gradient", bases=("gradient",), base_products=False,
    why="path integration integrates the gradient ∂y_c/∂x along the path, which is what makes the attributions sum "
        "to y_c(x) − y_c(reference); other maps are not the derivative of anything along the path")

FAMILY_LIST: tuple[Family, ...] = (
    Family("random_uniform", RandomPlane(), params={"seed": Param(SEED, 1)}, group="random", symbol="U"),
    Family("gradient", Gradient(), products=PRODUCTS, symbol="G"),
    Family("guided_backprop", GuidedBackward(deconvnet=False), products=PRODUCTS, symbol="GBP"),
    Family("deconvnet", GuidedBackward(deconvnet=True), products=PRODUCTS, symbol="DCN"),
    Family("integrated_gradients", PathIntegral(), params=PATH_PARAMS, products=PRODUCTS, chunked=True,
           wraps=PATH_WRAPPING, symbol="IG"),
    Family("smoothgrad", NoiseTunnel(variance=False), params=NOISE_PARAMS, products=PRODUCTS, chunked=True,
           wraps=NOISE_WRAPPING, symbol="SG"),
    Family("vargrad", NoiseTunnel(variance=True), params=NOISE_PARAMS, products=PRODUCTS, chunked=True,
           wraps=NOISE_WRAPPING, symbol="VG"),
    Family("grad_cam", GradCam(guided=False), params={"layer": Param(LAYER, None)}, syntax="grad_cam",
           applies_to="convolutional", symbol="CAM"),
    Family("guided_grad_cam", GradCam(guided=True), params={"layer": Param(LAYER, None)}, syntax="grad_cam",
           applies_to="convolutional", group="grad_cam", symbol="GBP ⊙ CAM"),
    Family("lrp", LrpBackward(), keywords=tuple(LRP_INPUT_RULES), syntax="lrp",
           params={"attention": Param(ATTENTION, UNSET)}),  # default "attnlrp" (docs/transformers.md#cp-lrp)
)

FAMILIES: Mapping[str, Family] = MappingProxyType({family.name: family for family in FAMILY_LIST})
WRAPPERS: tuple[str, ...] = tuple(family.name for family in FAMILY_LIST if family.wraps is not None)


def family(name: str) -> Family:
    """The record of a family (a `Method.base`)."""
    return FAMILIES[name]
