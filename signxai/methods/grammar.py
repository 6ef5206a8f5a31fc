"""Method names (docs/methods.md#names): a recursive-descent parser over the '_'-separated words of a name, and the
resolver that merges keyword parameters with the values embedded in the name and the defaults."""

from __future__ import annotations

import difflib
import math
import numbers
import re
import reprlib
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from .catalog import CATALOG

ALWAYS_ACCEPTED = ("target", "batched", "dtype")
GRADIENT_BASES = ("gradient", "guided_backprop", "deconvnet", "smoothgrad", "vargrad", "integrated_gradients")
GRAD_CAM_PRESETS = {"VGG16ILSVRC": "block5_conv3", "VGG16MITPL365": "relu5_3", "MNISTCNN": "conv2d_1"}
LRP_INPUT_RULES = {"lrp": None, "lrpsign": "sign", "lrpz": "z", "zblrp": "zb", "w2lrp": "w2", "flatlrp": "flat"}
ZB_VGG16ILSVRC_BOUNDS = {"low": -123.68, "high": 151.061}
COMPOSITE_EPSILON = 0.1
LAYER_ALIAS = "last_conv_layer_name"
RULE_MAP_METHOD = "lrp"  # the bare prefix: an LRP method whose rules come from rules= (a signxai.lrp.Composite)

_DIGITS = re.compile(r"[0-9]+")
_REQUIRED = object()
_short = reprlib.Repr()  # repr for error messages, bounded for huge strings and arrays
_short.maxstring = _short.maxother = 120


@dataclass(frozen=True)
class Method:
    """A parsed (and, from resolve_method, fully resolved) explanation method."""

    name: str
    base: str
    product: str | None = None
    input_rule: str | None = None
    rule: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    timeseries: bool = False
    # method "lrp" (or a rule map given as the method): its signxai.lrp.Composite. A catalog LRP name leaves it None;
    # it compiles to its composite from input_rule/rule/params (signxai.core.composite.compile_method).
    composite: Any = field(default=None, hash=False, repr=False)


# ---------------------------------------------------------------------------------------------------
# Parameter checks


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError
    result = float(value)
    if not math.isfinite(result):
        raise ValueError
    return result


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError
    return int(value)


def _real_or_array(value: Any) -> Any:
    """A scalar becomes a float; an array is kept as given once it is numeric and finite."""
    if isinstance(value, numbers.Number) or isinstance(value, (str, bytes)):
        return _real(value)
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or not np.isfinite(array).all():
        raise ValueError
    return value


def _layer(value: Any) -> Any:
    if isinstance(value, (numbers.Number, bytes)) or (isinstance(value, str) and not value):
        raise TypeError
    return value


@dataclass(frozen=True)
class _Check:
    """Validates one parameter value, raising ValueError that states the constraint."""

    constraint: str
    convert: Callable[[Any], Any]
    test: Callable[[Any], bool] = lambda value: True

    def __call__(self, method: str, key: str, value: Any) -> Any:
        try:
            result = self.convert(value)
            valid = self.test(result)
        except (TypeError, ValueError, OverflowError, RuntimeError):
            valid = False
        if not valid:
            raise ValueError(f"Method {_short.repr(method)}: {key}={_short.repr(value)} is invalid; "
                             f"{key} must be {self.constraint}.")
        return result


FINITE = _Check("a finite number", _real)
POSITIVE = _Check("a finite number > 0", _real, lambda value: value > 0)
NON_NEGATIVE = _Check("a finite number >= 0", _real, lambda value: value >= 0)
STEPS = _Check("an integer >= 2", _integer, lambda value: value >= 2)
NUM_SAMPLES = _Check("an integer >= 1", _integer, lambda value: value >= 1)
SEED = _Check("an integer in [0, 2**32)", _integer, lambda value: 0 <= value < 2**32)
REAL_OR_ARRAY = _Check("a finite number or an array of finite numbers", _real_or_array)
LAYER = _Check("a layer name (str) or a layer/module object", _layer)

_BASE_DEFAULTS = {
    "integrated_gradients": {"steps": (STEPS, 50), "reference": (REAL_OR_ARRAY, 0.0)},
    "smoothgrad": {"num_samples": (NUM_SAMPLES, 50), "noise_level": (NON_NEGATIVE, 0.2), "seed": (SEED, 0)},
    "vargrad": {"num_samples": (NUM_SAMPLES, 50), "noise_level": (NON_NEGATIVE, 0.2), "seed": (SEED, 0)},
}


@dataclass(frozen=True)
class _Slot:
    """A keyword parameter the method accepts: its check, its value (or _REQUIRED), and whether the name
    fixes that value (then a kwarg may only repeat it)."""

    check: _Check
    value: Any = _REQUIRED
    from_name: bool = False


# ---------------------------------------------------------------------------------------------------
# Parser


class _Parser:
    """Recursive-descent parser for the grammar of docs/methods.md#grammar, one '_'-separated word at a time."""

    def __init__(self, name: str):
        if not isinstance(name, str):
            raise TypeError(f"The method name must be a str, not {type(name).__name__}.")
        self.name = name
        self.words = name.split("_")
        self.pos = 0
        self.slots: dict[str, _Slot] = {}
        self.implied: dict[str, Any] = {}  # values set by the name that no kwarg may give (plain _x_sign's mu)
        self.violations: list[str] = []

    def parse(self) -> Method:
        fields = self._method()
        if fields is None or self.pos != len(self.words):
            raise ValueError(_unknown_name_message(self.name))
        if self.violations:
            raise ValueError(self.violations[0])
        for key, slot in self.slots.items():
            if slot.from_name:
                slot.check(self.name, key, slot.value)
        params = dict(self.implied)
        params.update((key, slot.value) for key, slot in self.slots.items() if slot.value is not _REQUIRED)
        return Method(name=self.name, params=MappingProxyType(params), **fields)

    # -- tokens ------------------------------------------------------------------------------------

    def _accept(self, *keywords: str) -> str | None:
        """Consume and return the first keyword whose words come next, else None."""
        for keyword in keywords:
            parts = keyword.split("_")
            if self.words[self.pos:self.pos + len(parts)] == parts:
                self.pos += len(parts)
                return keyword
        return None

    def _digits(self) -> str | None:
        if self.pos < len(self.words) and _DIGITS.fullmatch(self.words[self.pos]):
            self.pos += 1
            return self.words[self.pos - 1]
        return None

    def _number(self) -> float | None:
        """num ::= [neg_] digits [_ digits]: 0_001 → 0.001, neg_0_5 → -0.5, 100 → 100.0."""
        start = self.pos
        sign = "-" if self._accept("neg") else ""
        integer = self._digits()
        if integer is None:
            self.pos = start
            return None
        return float(f"{sign}{integer}.{self._digits() or '0'}")

    # -- parameters --------------------------------------------------------------------------------

    def _default(self, key: str, check: _Check, value: Any) -> None:
        self.slots[key] = _Slot(check, value)

    def _embedded(self, key: str, check: _Check, value: float | None) -> None:
        """A parameter embedded in the name, or required as a kwarg when the name leaves it out."""
        self.slots[key] = _Slot(check) if value is None else _Slot(check, value, from_name=True)

    def _mu_suffix(self) -> None:
        """[_mu [_num]]; without `_mu`, mu is fixed at 0.0 and not a kwarg."""
        if self._accept("mu"):
            self._embedded("mu", FINITE, self._number())
        else:
            self.implied["mu"] = 0.0

    # -- productions -------------------------------------------------------------------------------

    def _method(self) -> dict[str, Any] | None:
        if self._accept("random_uniform"):
            self._default("seed", SEED, 1)
            return {"base": "random_uniform"}
        if self._accept("input_t_gradient"):
            return {"base": "gradient", "product": "input"}
        base = self._accept(*GRADIENT_BASES)
        if base:
            for key, (check, value) in _BASE_DEFAULTS.get(base, {}).items():
                self._default(key, check, value)
            return {"base": base, "product": self._product()}
        base = self._accept("grad_cam", "guided_grad_cam")
        if base:
            return self._grad_cam(base)
        prefix = self._accept(*LRP_INPUT_RULES)
        if prefix:
            return self._lrp(prefix)
        return None

    def _product(self) -> str | None:
        if self._accept("x_input"):
            return "input"
        if self._accept("x_sign"):
            self._mu_suffix()
            return "sign"
        return None

    def _grad_cam(self, base: str) -> dict[str, Any]:
        timeseries = base == "grad_cam" and self._accept("timeseries") is not None
        preset = None if timeseries else self._accept(*GRAD_CAM_PRESETS)
        if preset:
            self.slots["layer"] = _Slot(LAYER, GRAD_CAM_PRESETS[preset], from_name=True)
        else:
            self._default("layer", LAYER, None)
        return {"base": base, "timeseries": timeseries}

    def _lrp(self, prefix: str) -> dict[str, Any] | None:
        rule = self._lrp_rule()
        if rule is None:
            return None
        if prefix == "lrpsign":
            self._mu_suffix()
        elif self._accept("mu"):
            self._number()
            self.violations.append(f"Method {_short.repr(self.name)}: the LRP '_mu' suffix is allowed only with the "
                                   f"'lrpsign' prefix, not with {prefix!r}.")
        if self._accept("VGG16ILSVRC"):
            if prefix != "zblrp":
                self.violations.append(f"Method {_short.repr(self.name)}: the '_VGG16ILSVRC' suffix is allowed only with "
                                       f"the 'zblrp' prefix, not with {prefix!r}.")
            for key, value in ZB_VGG16ILSVRC_BOUNDS.items():
                self._default(key, REAL_OR_ARRAY, value)
        elif prefix == "zblrp":
            for key in ZB_VGG16ILSVRC_BOUNDS:
                self._embedded(key, REAL_OR_ARRAY, None)
        return {"base": "lrp", "input_rule": LRP_INPUT_RULES[prefix], "rule": rule}

    def _lrp_rule(self) -> str | None:
        if self._accept("z"):
            return "z"
        if self._accept("epsilon"):
            value = self._number()
            if self._accept("std_x"):
                self._embedded("stdfactor", POSITIVE, value)
                return "stdx_epsilon"
            self._embedded("epsilon", POSITIVE, value)
            return "epsilon"
        if self._accept("alpha"):
            alpha = self._number()
            if not self._accept("beta"):
                return None
            self._embedded("alpha", NON_NEGATIVE, alpha)
            self._embedded("beta", NON_NEGATIVE, self._number())
            return "alpha_beta"
        composite = self._accept("sequential_composite_a", "sequential_composite_b")
        if composite:
            self._default("epsilon", POSITIVE, COMPOSITE_EPSILON)
            return "composite_" + composite[-1]
        return None


def _unknown_name_message(name: str) -> str:
    matches = difflib.get_close_matches(name, CATALOG, n=3, cutoff=0.6)
    hint = f"Did you mean: {', '.join(matches)}?" if matches else "See signxai.methods.list_methods()."
    return f"Unknown method {_short.repr(name)}. {hint}"


# ---------------------------------------------------------------------------------------------------
# Public API


def parse_method(name: str) -> Method:
    """Parse a method name (no kwargs). `params` holds the values the name fixes and the defaults;
    parameters the name requires as kwargs are absent. Raises ValueError, or TypeError for a non-str."""
    return _Parser(name).parse()


def resolve_method(name: Any, **params: Any) -> Method:
    """Parse `name` and merge `params` (docs/methods.md#parameters): embedded values, kwargs, defaults, validation.

    `target`, `batched` and `dtype` are handled by the caller and must not be passed here.
    `last_conv_layer_name` is accepted as an alias of `layer`. `name` may also be a signxai.lrp.Composite or rule
    object, ≡ "lrp" with rules=; the rule map is then in `.composite`.
    """
    from signxai.core.composite import Composite, Rule, as_composite

    if isinstance(name, (Composite, Rule)):
        if params.get("rules") is not None:
            raise ValueError("Give the rule map either as the method or as rules=, not both.")
        params = dict(params, rules=name)
        name = RULE_MAP_METHOD
    if isinstance(name, str) and name == RULE_MAP_METHOD:
        return _resolve_rule_map(params, as_composite)
    parser = _Parser(name)
    method = parser.parse()
    slots = parser.slots
    if LAYER_ALIAS in params and "layer" in slots:
        if "layer" in params:
            raise ValueError(f"Give either layer= or its alias {LAYER_ALIAS}=, not both.")
        params["layer"] = params.pop(LAYER_ALIAS)
    unknown = [key for key in params if key not in slots]
    if unknown:
        raise TypeError(_unknown_kwargs_message(name, unknown, parser))

    resolved = dict(parser.implied)
    missing = []
    for key, slot in slots.items():
        given = params.get(key)
        if given is None:
            if slot.value is _REQUIRED:
                missing.append(key)
            else:
                resolved[key] = slot.value
            continue
        value = slot.check(name, key, given)
        if slot.from_name and not _agrees(value, slot.value):
            raise ValueError(f"Method {_short.repr(name)}: {key}={_short.repr(given)} conflicts with the value embedded "
                             f"in the method name ({key}={slot.value!r}).")
        resolved[key] = slot.value if slot.from_name else value
    if missing:
        raise ValueError(_missing_message(name, missing, slots))
    if method.input_rule == "zb":
        _check_bounds(name, resolved["low"], resolved["high"])
    return replace(method, params=MappingProxyType(resolved))


def _resolve_rule_map(params: dict, as_composite: Callable[[Any], Any]) -> Method:
    """The bare name "lrp" with a layer-wise rule map in rules= (signxai.lrp, docs/lrp_rules.md)."""
    unknown = [key for key in params if key != "rules"]
    if unknown:
        raise TypeError(f"Method {RULE_MAP_METHOD!r} got unexpected keyword argument(s) "
                        f"{', '.join(map(repr, unknown))}; it accepts: rules, {', '.join(ALWAYS_ACCEPTED)} (the rule "
                        f"parameters belong to the rule objects).")
    if params.get("rules") is None:
        raise ValueError(f"Method {RULE_MAP_METHOD!r} requires rules=: a signxai.lrp.Composite (a layer-wise rule "
                         f"map), one rule for every kernel layer, or a list of (selector, rule) pairs; see "
                         f"docs/lrp_rules.md.")
    return Method(name=RULE_MAP_METHOD, base="lrp", composite=as_composite(params["rules"]))


def _agrees(given: Any, fixed: Any) -> bool:
    """Whether a kwarg repeats a value fixed by the name: floats compare as floats, a layer by name."""
    if isinstance(fixed, str):
        return (given if isinstance(given, str) else getattr(given, "name", None)) == fixed
    return given == fixed


def _unknown_kwargs_message(name: str, unknown: list[str], parser: _Parser) -> str:
    accepted = ", ".join([*parser.slots, *ALWAYS_ACCEPTED])
    message = (f"Method {_short.repr(name)} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
               f"it accepts: {accepted}.")
    if "mu" in unknown and "mu" in parser.implied:
        message += f" To set mu, use the method {name + '_mu'!r}."
    return message


def _missing_message(name: str, missing: list[str], slots: Mapping[str, _Slot]) -> str:
    if "low" in missing or "high" in missing:
        return (f"Method {_short.repr(name)} requires both low= and high= (the input bounds of the ZB rule), "
                f"e.g. low=-123.68, high=151.061 for caffe-preprocessed ImageNet inputs, "
                f"or use the '_VGG16ILSVRC' suffix for those defaults.")
    wanted = "; ".join(f"{key}= ({slots[key].check.constraint})" for key in missing)
    return f"Method {_short.repr(name)} requires the keyword argument(s) {wanted}."


def _check_bounds(name: str, low: Any, high: Any) -> None:
    try:
        low_array, high_array = np.broadcast_arrays(np.asarray(low, np.float64), np.asarray(high, np.float64))
    except ValueError:
        raise ValueError(f"Method {_short.repr(name)}: low and high must broadcast to a common shape.") from None
    if np.any(low_array > high_array):
        raise ValueError(f"Method {_short.repr(name)}: low must be <= high elementwise.")
