"""Method names (docs/methods.md#names): a recursive-descent parser over the '_'-separated words of a name, and the
resolver that merges keyword parameters with the values embedded in the name and the defaults.

What a family accepts (its keywords, parameters, products, the bases a wrapper takes) comes from its record in
``signxai/methods/families.py``; this module holds the syntax: the productions of docs/methods.md#grammar, the
wrapper form ``wrapper(base)[product]`` (docs/methods.md#wrappers) and the error messages.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from .catalog import CATALOG
from .checks import (FINITE, LAYER, NON_NEGATIVE, NUM_SAMPLES, POSITIVE, REAL_OR_ARRAY, SEED,  # noqa: F401
                     STEPS, Check, short as _short)
from .families import FAMILIES, FAMILY_LIST, LRP_INPUT_RULES, WRAPPERS, Applicability, Family, Product, UNSET

ALWAYS_ACCEPTED = ("target", "batched", "dtype")
GRADIENT_BASES = tuple(f.name for f in FAMILY_LIST if f.syntax == "plain" and f.products)  # take _x_input/_x_sign
GRAD_CAM_PRESETS = {"VGG16ILSVRC": "block5_conv3", "VGG16MITPL365": "relu5_3", "MNISTCNN": "conv2d_1"}
NAME_ALIASES = {"input_t_gradient": ("gradient", "input")}  # whole names: (family, product)
ZB_VGG16ILSVRC_BOUNDS = {"low": -123.68, "high": 151.061}
COMPOSITE_EPSILON = 0.1
LAYER_ALIAS = "last_conv_layer_name"
RULE_MAP_METHOD = "lrp"  # the bare prefix: an LRP method whose rules come from rules= (a signxai.lrp.Composite)
MAX_NESTING = 3  # wrappers inside wrappers: noise over path over the gradient is the deepest meaningful form
WRAPPER_FORM = "wrapper(base)[_x_input | _x_sign[_mu[_v]]]"

_DIGITS = re.compile(r"[0-9]+")
_REQUIRED = object()
_RULE_MAP = object()  # the base of a wrapper is the bare "lrp" (rules= decides), resolved by resolve_method only
_Check = Check  # the former private name


@dataclass(frozen=True)
class Method:
    """A parsed (and, from resolve_method, fully resolved) explanation method."""

    name: str
    base: str  # the family (a key of signxai.methods.families.FAMILIES)
    product: str | None = None
    input_rule: str | None = None
    rule: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    timeseries: bool = False
    # method "lrp" (or a rule map given as the method): its signxai.lrp.Composite. A catalog LRP name leaves it None;
    # it compiles to its composite from input_rule/rule/params (signxai.core.composite.compile_method).
    composite: Any = field(default=None, hash=False, repr=False)
    # a wrapper (smoothgrad, vargrad, integrated_gradients): the base method it wraps, e.g. `gradient` for the
    # catalog names and `lrp_epsilon_0_1` for smoothgrad(lrp_epsilon_0_1) (docs/methods.md#wrappers)
    inner: Method | None = None

    @property
    def family(self) -> Family:
        """The record of the method's family (signxai/methods/families.py)."""
        return FAMILIES[self.base]

    @property
    def chain(self) -> tuple[Method, ...]:
        """The method and the bases it wraps, outermost first: smoothgrad(lrp_z) → (smoothgrad(lrp_z), lrp_z)."""
        return (self,) + (self.inner.chain if self.inner is not None else ())

    @property
    def applies_to(self) -> Applicability:
        """The models the method applies to: "convolutional" if any family of its chain needs a convolution."""
        return "convolutional" if any(m.family.applies_to == "convolutional" for m in self.chain) else "any"


@dataclass(frozen=True)
class _Slot:
    """A keyword parameter the method accepts: its check, its value (or _REQUIRED), and whether the name
    fixes that value (then a kwarg may only repeat it)."""

    check: Check
    value: Any = _REQUIRED
    from_name: bool = False


# ---------------------------------------------------------------------------------------------------
# Parser


class _Parser:
    """Recursive-descent parser for the grammar of docs/methods.md#grammar, one '_'-separated word at a time.

    A wrapper name (``smoothgrad(lrp_z)_x_input``, or the plain ``smoothgrad_x_input`` ≡
    ``smoothgrad(gradient)_x_input``) gets a parser of its base method in ``inner`` (or ``_RULE_MAP`` for the bare
    ``lrp``, which resolve_method resolves with rules=)."""

    def __init__(self, name: str, depth: int = 0, rule_map_base: bool = False):
        if not isinstance(name, str):
            raise TypeError(f"The method name must be a str, not {type(name).__name__}.")
        self.name = name
        self.words = name.split("_")
        self.pos = 0
        self.depth = depth
        self.rule_map_base = rule_map_base  # whether a wrapper's base may be the bare "lrp" (resolve_method)
        self.slots: dict[str, _Slot] = {}
        self.implied: dict[str, Any] = {}  # values set by the name that no kwarg may give (plain _x_sign's mu)
        self.violations: list[str] = []
        self.family: Family | None = None  # the family the name was read as
        self.inner: _Parser | object | None = None
        self.shared: set[str] = set()  # keywords fixed by the name both here and in the base: none may be given

    def parse(self) -> Method:
        wrapped = "(" in self.name or ")" in self.name
        fields = self._wrapped() if wrapped else self._method()
        if fields is None or self.pos != len(self.words):
            raise ValueError(_unknown_name_message(self.name))
        if self.violations:
            raise ValueError(self.violations[0])
        for key, slot in self.slots.items():
            if slot.from_name:
                slot.check(self.name, key, slot.value)
        if isinstance(self.inner, _Parser):
            fields["inner"] = self._parse_base(self.inner)
        params = dict(self.implied)
        params.update((key, slot.value) for key, slot in self.slots.items()
                      if slot.value is not _REQUIRED and slot.value is not UNSET)
        return Method(name=self.name, params=MappingProxyType(params), **fields)

    def accepted(self) -> list[str]:
        """The keyword parameters the method accepts, its own first, then those of the base it wraps."""
        inner = (self.inner.accepted() if isinstance(self.inner, _Parser) else
                 ["rules"] if self.inner is _RULE_MAP else [])
        return [*self.slots, *inner]

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

    def _default(self, key: str, check: Check, value: Any) -> None:
        self.slots[key] = _Slot(check, value)

    def _embedded(self, key: str, check: Check, value: float | None) -> None:
        """A parameter embedded in the name, or required as a kwarg when the name leaves it out."""
        self.slots[key] = _Slot(check) if value is None else _Slot(check, value, from_name=True)

    def _family_params(self, family: Family) -> None:
        """The parameters every name of the family accepts, with their defaults (its record)."""
        for key, param in family.params.items():
            self._default(key, param.check, param.default)

    def _mu_suffix(self) -> None:
        """[_mu [_num]]; without `_mu`, mu is fixed at 0.0 and not a kwarg."""
        if self._accept("mu"):
            self._embedded("mu", FINITE, self._number())
        else:
            self.implied["mu"] = 0.0

    # -- productions -------------------------------------------------------------------------------

    def _method(self) -> dict[str, Any] | None:
        alias = self._accept(*NAME_ALIASES)
        if alias:
            base, product = NAME_ALIASES[alias]
            self._family_params(FAMILIES[base])
            return {"base": base, "product": product}
        for family in FAMILY_LIST:
            keyword = self._accept(*family.keywords)
            if keyword:
                self.family = family
                return _PRODUCTIONS[family.syntax](self, family, keyword)
        return None

    def _plain(self, family: Family, keyword: str) -> dict[str, Any]:
        """keyword [product]; a wrapper's plain name wraps its default base (smoothgrad ≡ smoothgrad(gradient))."""
        self._family_params(family)
        if family.wraps is not None:
            self.inner = _Parser(family.wraps.default_base, self.depth + 1)
        return {"base": family.name, "product": self._product(family.products)}

    def _product(self, allowed: tuple[Product, ...]) -> str | None:
        if "input" in allowed and self._accept("x_input"):
            return "input"
        if "sign" in allowed and self._accept("x_sign"):
            self._mu_suffix()
            return "sign"
        return None

    def _grad_cam(self, family: Family, base: str) -> dict[str, Any]:
        self._family_params(family)
        timeseries = base == "grad_cam" and self._accept("timeseries") is not None
        preset = None if timeseries else self._accept(*GRAD_CAM_PRESETS)
        if preset:
            self.slots["layer"] = _Slot(LAYER, GRAD_CAM_PRESETS[preset], from_name=True)
        return {"base": base, "timeseries": timeseries}

    def _lrp(self, family: Family, prefix: str) -> dict[str, Any] | None:
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
                self.violations.append(f"Method {_short.repr(self.name)}: the '_VGG16ILSVRC' suffix is allowed only "
                                       f"with the 'zblrp' prefix, not with {prefix!r}.")
            for key, value in ZB_VGG16ILSVRC_BOUNDS.items():
                self._default(key, REAL_OR_ARRAY, value)
        elif prefix == "zblrp":
            for key in ZB_VGG16ILSVRC_BOUNDS:
                self._embedded(key, REAL_OR_ARRAY, None)
        self._family_params(family)  # after the rule's own parameters (attention=)
        return {"base": family.name, "input_rule": LRP_INPUT_RULES[prefix], "rule": rule}

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

    # -- the wrapper form: wrapper "(" method ")" [product] (docs/methods.md#wrappers) -----------------

    def _fail(self, reason: str) -> ValueError:
        return ValueError(f"Method {_short.repr(self.name)}: {reason}")

    def _wrapped(self) -> dict[str, Any]:
        name = self.name
        open_at = name.find("(")
        close_at = _matching_parenthesis(name, open_at)
        if close_at is None:
            raise self._fail(f"unbalanced parentheses; a wrapper is written {WRAPPER_FORM}, "
                             f"e.g. 'smoothgrad(lrp_epsilon_0_1)'.")
        head, base, tail = name[:open_at], name[open_at + 1:close_at], name[close_at + 1:]
        family = self.family = self._wrapper_family(head, base)
        assert family.wraps is not None
        if self.depth >= MAX_NESTING:
            raise self._fail(f"wrappers nest at most {MAX_NESTING} deep.")
        if not base:
            raise self._fail(f"the parentheses are empty; name the base method, e.g. '{head}(gradient)'.")
        self._family_params(family)
        self.words = tail[1:].split("_") if tail.startswith("_") else []
        product = self._product(family.products) if tail.startswith("_") else None
        if (tail and not tail.startswith("_")) or self.pos != len(self.words):
            raise self._fail(f"{tail!r} after the parentheses is not a product; a wrapper is written "
                             f"{WRAPPER_FORM}.")
        inner_head = base[:base.find("(")] if "(" in base else ""
        if inner_head in FAMILIES:  # a wrapper inside: refuse it before reading further
            self._check_base(FAMILIES[inner_head], None)
        if base == RULE_MAP_METHOD:
            self._check_base(FAMILIES["lrp"], None)
            if not self.rule_map_base:
                raise self._fail(f"its base {RULE_MAP_METHOD!r} takes its rules from rules=; give them to "
                                 f"calculate_relevancemap (or resolve_method) together with this name.")
            self.inner = _RULE_MAP
        else:
            self.inner = _Parser(base, self.depth + 1, self.rule_map_base)
        return {"base": family.name, "product": product}

    def _wrapper_family(self, head: str, base: str) -> Family:
        family = FAMILIES.get(head)
        if family is not None and family.wraps is not None:
            return family
        for wrapper in WRAPPERS:
            if head.startswith(wrapper + "_x_"):
                raise self._fail(f"a product goes after the parentheses: '{wrapper}({base}){head[len(wrapper):]}'.")
        wrappers = ", ".join(WRAPPERS)
        if family is not None or _parses(head):
            raise self._fail(f"{head!r} does not wrap a base method; the wrappers are {wrappers}.")
        matches = difflib.get_close_matches(head, WRAPPERS, n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
        raise self._fail(f"unknown wrapper {_short.repr(head)}.{hint} The wrappers are {wrappers}, written "
                         f"{WRAPPER_FORM}.")

    def _parse_base(self, inner: _Parser) -> Method:
        """The base method of a wrapper, parsed and checked against the wrapper's record."""
        try:
            method = inner.parse()
        except ValueError as error:
            raise self._fail(f"its base method: {error}") from None
        self._check_base(method.family, method.product)
        shared = sorted(set(self.slots) & set(inner.accepted()))
        open_keys = [key for key in shared if not (self.slots[key].from_name and inner.fixes(key))]
        if open_keys:
            raise self._fail(f"both the wrapper and its base {inner.name!r} take the keyword(s) "
                             f"{', '.join(open_keys)}, so a keyword would be ambiguous; embed both values in the "
                             f"name (e.g. '_mu_0_5' in each).")
        self.shared = set(shared)
        return method

    def fixes(self, key: str) -> bool:
        """Whether the name fixes ``key`` (embedded), here or in the first part of the base chain that takes it."""
        if key in self.slots:
            return self.slots[key].from_name
        return isinstance(self.inner, _Parser) and self.inner.fixes(key)

    def _check_base(self, base: Family, product: str | None) -> None:
        wrapper = self.family
        assert wrapper is not None and wrapper.wraps is not None
        wraps = wrapper.wraps
        if base.name not in wraps.bases:
            raise self._fail(f"{wrapper.name} cannot wrap the {base.name} family: {wraps.why}. Its base may be "
                             f"a method of the families: {', '.join(wraps.bases)}.")
        if product is not None and not wraps.base_products:
            raise self._fail(f"the base of {wrapper.name} must be the plain {', '.join(wraps.bases)} without a "
                             f"product ({wraps.why}); put a product after the parentheses instead.")


_PRODUCTIONS: dict[str, Callable[..., dict[str, Any] | None]] = {
    "plain": _Parser._plain, "grad_cam": _Parser._grad_cam, "lrp": _Parser._lrp}


def _matching_parenthesis(name: str, open_at: int) -> int | None:
    """The index of the ')' that closes the '(' at ``open_at`` (None if there is none, or a ')' comes first)."""
    if open_at < 0:
        return None
    depth = 0
    for index in range(open_at, len(name)):
        depth += {"(": 1, ")": -1}.get(name[index], 0)
        if depth == 0:
            return index
    return None


def _parses(name: str) -> bool:
    try:
        _Parser(name, MAX_NESTING).parse()
    except ValueError:
        return False
    return True


def _unknown_name_message(name: str) -> str:
    matches = difflib.get_close_matches(name, CATALOG, n=3, cutoff=0.6)
    hint = f"Did you mean: {', '.join(matches)}?" if matches else "See signxai.methods.list_methods()."
    for wrapper in WRAPPERS:
        rest = name[len(wrapper) + 1:]
        if name.startswith(wrapper + "_") and rest and _parses(rest):
            hint += f" To wrap a base method, write '{wrapper}({rest})' (docs/methods.md#wrappers)."
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
    object, ≡ "lrp" with rules=; the rule map is then in `.composite`. A wrapper's keywords are split between the
    wrapper and its base method by which of them accepts each (docs/methods.md#wrappers).
    """
    from signxai.core.composite import Composite, Rule

    if isinstance(name, (Composite, Rule)):
        if params.get("rules") is not None:
            raise ValueError("Give the rule map either as the method or as rules=, not both.")
        params = dict(params, rules=name)
        name = RULE_MAP_METHOD
    if isinstance(name, str) and name == RULE_MAP_METHOD:
        return _resolve_rule_map(params)
    parser = _Parser(name, rule_map_base=True)
    return _resolve(parser, parser.parse(), params)


def _resolve(parser: _Parser, method: Method, params: dict[str, Any]) -> Method:
    """Merge ``params`` into the parsed ``method``: its own keywords here, the rest to the base it wraps."""
    name, slots = parser.name, parser.slots
    accepted = parser.accepted()
    if LAYER_ALIAS in params and "layer" in slots:
        if "layer" in params:
            raise ValueError(f"Give either layer= or its alias {LAYER_ALIAS}=, not both.")
        params = dict(params)
        params["layer"] = params.pop(LAYER_ALIAS)
    unknown = [key for key in params if key not in accepted and not (key == LAYER_ALIAS and "layer" in accepted)]
    if unknown:
        raise TypeError(_unknown_kwargs_message(name, unknown, parser))
    ambiguous = sorted(parser.shared & set(params))
    if ambiguous:
        raise ValueError(f"Method {_short.repr(name)}: {', '.join(ambiguous)}= would set both the wrapper and its "
                         f"base, and the name fixes both; leave it out.")

    resolved = dict(parser.implied)
    missing = []
    for key, slot in slots.items():
        given = params.get(key)
        if given is None:
            if slot.value is _REQUIRED:
                missing.append(key)
            elif slot.value is not UNSET:
                resolved[key] = slot.value
            continue
        value = slot.check(name, key, given)
        if slot.from_name and not _agrees(value, slot.value):
            raise ValueError(f"Method {_short.repr(name)}: {key}={_short.repr(given)} conflicts with the value "
                             f"embedded in the method name ({key}={slot.value!r}).")
        resolved[key] = slot.value if slot.from_name else value
    if missing:
        raise ValueError(_missing_message(name, missing, slots))
    if method.input_rule == "zb":
        _check_bounds(name, resolved["low"], resolved["high"])
    rest = {key: value for key, value in params.items() if key not in slots}
    inner = method.inner
    if parser.inner is _RULE_MAP:
        inner = _resolve_rule_map(rest)
    elif isinstance(parser.inner, _Parser):
        assert inner is not None
        inner = _resolve(parser.inner, inner, rest)
    return replace(method, params=MappingProxyType(resolved), inner=inner)


def _resolve_rule_map(params: dict) -> Method:
    """The bare name "lrp" with a layer-wise rule map in rules= (signxai.lrp, docs/lrp_rules.md)."""
    from signxai.core.composite import as_composite

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
    accepted = ", ".join([*parser.accepted(), *ALWAYS_ACCEPTED])
    message = (f"Method {_short.repr(name)} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
               f"it accepts: {accepted}.")
    if "mu" in unknown and "mu" in parser.implied and "(" not in name:
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


def method_families() -> dict[str, list[str]]:
    """Group the catalog names by family, in catalog order.

    Families are the gradient-style bases ("random", "gradient", "guided_backprop", "deconvnet",
    "integrated_gradients", "smoothgrad", "vargrad", "grad_cam" incl. guided Grad-CAM) and, for LRP,
    one family per base rule: "lrp_z", "lrp_epsilon", "lrp_stdx_epsilon", "lrp_alpha_beta",
    "lrp_composite_a", "lrp_composite_b". The group of a non-LRP name is its family record's ``group``
    (signxai/methods/families.py).
    """
    families: dict[str, list[str]] = {}
    for name in CATALOG:
        method = parse_method(name)
        family = f"lrp_{method.rule}" if method.base == "lrp" else method.family.group
        families.setdefault(family, []).append(name)
    return families
