"""Go's way of printing values, and the functions a hook template may call: pure.

Stash renders hook templates with Go's ``text/template`` plus the sprig function library; its
documented Slack example builds a message with ``dict``, ``printf`` and ``toJson``. The functions here
are the template builtins that compute (``and``, ``or``, ``not``, ``eq``, ``ne``, ``lt``, ``le``,
``gt``, ``ge``, ``len``, ``index``, ``print``, ``printf``, ``println``) and a few of sprig's string and
data helpers (``dict``, ``list``, ``toJson``, ``quote``, ``squote``, ``upper``, ``lower``, ``trim``,
``default``, ``empty``, ``contains``, ``hasPrefix``, ``hasSuffix``, ``replace``). Every one is a pure
function of its arguments: nothing here reads a file, the environment or the network, and nothing calls
code a template names (Go's ``call`` is absent on purpose).

Values are Python ``str``, ``int``, ``float``, ``bool``, ``None`` (Go's nil), ``dict`` (a Go map),
``list`` (a slice) and :class:`GoStruct` (a Go struct, whose missing fields are errors).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from stashlet.agent.errors import RefuseInput


class TemplateError(RefuseInput):
    """A template cannot be parsed or executed; the message says where, never quoting the text."""

    reason = "InvalidHookTemplate"


@dataclass(frozen=True)
class GoStruct:
    """A Go struct value: fields by their Go names (in order), the JSON name of each (a field with
    ``omitempty`` is left out of JSON when empty), and ``extras``: more names a template may read,
    neither printed with the struct nor written to JSON."""

    type_name: str
    fields: Mapping[str, Any]
    json_names: Mapping[str, str] = field(default_factory=dict)
    omit_empty: frozenset[str] = frozenset()
    extras: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        """The field ``name``; TemplateError when the struct has none."""
        if name in self.fields:
            return self.fields[name]
        if name in self.extras:
            return self.extras[name]
        raise TemplateError(
            f"can't evaluate field {name} in type {self.type_name} (fields: {', '.join(self.fields)})"
        )

    def to_json(self) -> dict[str, Any]:
        """The struct as ``encoding/json`` writes it."""
        out: dict[str, Any] = {}
        for name, value in self.fields.items():
            if name in self.omit_empty and not truth(value):
                continue
            out[self.json_names.get(name, name)] = value
        return out


MISSING: Final = object()
"""The value of a map key that is not there: Go prints it as ``<no value>``."""


def truth(value: Any) -> bool:
    """Go's template truth: false, 0, nil, and empty strings, maps and slices are false."""
    if value is MISSING or value is None:
        return False
    if isinstance(value, GoStruct):
        return True
    return bool(value)


def action_text(value: Any) -> str:
    """``value`` as a template action prints it: nil and a missing value as ``<no value>``."""
    return "<no value>" if value is None or value is MISSING else go_string(value)


def go_string(value: Any) -> str:
    """``value`` as ``fmt``'s ``%v`` prints it (nil, or a missing map value: ``<nil>``)."""
    if value is MISSING or value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, dict):
        inner = " ".join(f"{go_string(k)}:{go_string(v)}" for k, v in sorted(value.items(), key=_key))
        return f"map[{inner}]"
    if isinstance(value, list):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    if isinstance(value, GoStruct):
        return "{" + " ".join(go_string(v) for v in value.fields.values()) + "}"
    return str(value)


def _key(item: tuple[Any, Any]) -> str:
    return str(item[0])


def _go_float(value: float) -> str:
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').rjust(2, '0')}"
    return text


def go_type(value: Any) -> str:
    """The Go type name ``fmt`` would give ``value`` (for its error strings)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, GoStruct):
        return value.type_name
    return "<nil>"


def go_quote(text: str) -> str:
    """``strconv.Quote``: double quotes, Go escapes, printable non-ASCII kept."""
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}" if ord(char) > 0x7F else f"\\x{ord(char):02x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


_ESCAPES: Final = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def to_json(value: Any) -> str:
    """``encoding/json``'s ``Marshal``: a struct's fields in order, a map's keys sorted, ``<``, ``>``,
    ``&``, U+2028 and U+2029 escaped."""
    if value is MISSING or value is None:
        return "null"
    if isinstance(value, GoStruct):
        return _object(value.to_json().items())
    if isinstance(value, dict):
        return _object(sorted((str(k), v) for k, v in value.items()))
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    text = json.dumps(value, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _object(items: Iterable[tuple[str, Any]]) -> str:
    return "{" + ",".join(f"{to_json(k)}:{to_json(v)}" for k, v in items) + "}"


# --------------------------------------------------------------------------------------------- printf


def sprintf(fmt: str, *args: Any) -> str:
    """``fmt.Sprintf`` for the verbs a message needs: ``%v %s %d %q %t %f %x %%``, with flags ``-``
    and ``0``, width and precision; a wrong or missing argument prints as Go prints it (``%!d(string=x)``,
    ``%!s(MISSING)``)."""
    out: list[str] = []
    used = 0
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char != "%":
            out.append(char)
            i += 1
            continue
        spec, i = _verb_spec(fmt, i + 1)
        if spec.verb == "%":
            out.append("%")
            continue
        if spec.verb == "":
            out.append("%!(NOVERB)")
            continue
        if used >= len(args):
            out.append(f"%!{spec.verb}(MISSING)")
            continue
        out.append(spec.pad(_format_one(spec, args[used])))
        used += 1
    if used < len(args):
        extra = ", ".join(f"{go_type(a)}={go_string(a)}" for a in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


@dataclass(frozen=True)
class _Spec:
    verb: str
    left: bool = False
    zero: bool = False
    width: int | None = None
    precision: int | None = None

    def pad(self, text: str) -> str:
        if self.width is None or len(text) >= self.width:
            return text
        if self.left:
            return text.ljust(self.width)
        if self.zero and self.verb in "dfx":
            sign = text[0] if text[:1] in "+-" else ""
            return sign + text[len(sign) :].rjust(self.width - len(sign), "0")
        return text.rjust(self.width)


def _verb_spec(fmt: str, i: int) -> tuple[_Spec, int]:
    left = zero = False
    while i < len(fmt) and fmt[i] in "-0+# ":
        left, zero = left or fmt[i] == "-", zero or fmt[i] == "0"
        i += 1
    width, i = _digits(fmt, i)
    precision = None
    if i < len(fmt) and fmt[i] == ".":
        precision, i = _digits(fmt, i + 1)
        precision = precision or 0
    verb = fmt[i] if i < len(fmt) else ""
    return _Spec(verb, left, zero, width, precision), i + 1


def _digits(fmt: str, i: int) -> tuple[int | None, int]:
    start = i
    while i < len(fmt) and fmt[i].isdigit():
        i += 1
    return (int(fmt[start:i]) if i > start else None), i


def _format_one(spec: _Spec, arg: Any) -> str:
    verb = spec.verb
    if verb in "vs":
        text = go_string(arg)
        return text[: spec.precision] if spec.precision is not None and verb == "s" else text
    if verb == "q" and isinstance(arg, str):
        return go_quote(arg)
    if verb == "t" and isinstance(arg, bool):
        return go_string(arg)
    if verb in "dx" and isinstance(arg, int) and not isinstance(arg, bool):
        return str(arg) if verb == "d" else format(arg, "x")
    if verb == "x" and isinstance(arg, str):
        return arg.encode().hex()
    if verb == "f" and isinstance(arg, int | float) and not isinstance(arg, bool):
        return f"{float(arg):.{6 if spec.precision is None else spec.precision}f}"
    return f"%!{verb}({go_type(arg)}={go_string(arg)})"


# ------------------------------------------------------------------------------------------ functions


def _print(*args: Any) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_string(arg)
    return out


def _println(*args: Any) -> str:
    return " ".join(go_string(a) for a in args) + "\n"


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    numbers = (int, float)
    if isinstance(a, bool) != isinstance(b, bool) or (
        not (isinstance(a, numbers) and isinstance(b, numbers)) and type(a) is not type(b)
    ):
        if a is None or b is None or a is MISSING or b is MISSING:
            return a, b
        raise TemplateError(f"incompatible types for comparison: {go_type(a)} and {go_type(b)}")
    return a, b


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("eq: missing argument for comparison")
    return any(x == y for x, y in (_comparable(first, other) for other in others))


def _ordered(op: Callable[[Any, Any], bool], name: str) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        a, b = _comparable(a, b)
        if not isinstance(a, str | int | float) or a is None:
            raise TemplateError(f"{name}: invalid type for comparison: {go_type(a)}")
        return op(a, b)

    return compare


def _len(value: Any) -> int:
    if isinstance(value, str | dict | list):
        return len(value)
    raise TemplateError(f"len of type {go_type(value)}")


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, MISSING)
        elif isinstance(value, list | str) and isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(value):
                raise TemplateError(f"index out of range: {key}")
            value = value[key]
        else:
            raise TemplateError(f"can't index item of type {go_type(value)}")
    return value


def _dict(*pairs: Any) -> dict[str, Any]:
    """sprig's ``dict``: keys and values in turn; a last key without a value maps to ""."""
    items = list(pairs) + ([""] if len(pairs) % 2 else [])
    return {go_string(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def _default(fallback: Any, *given: Any) -> Any:
    """sprig's ``default``: the given value, or ``fallback`` when it is empty or missing."""
    return given[0] if given and truth(given[0]) else fallback


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if truth(v)), None)


def _quote(*values: Any, mark: str = '"') -> str:
    texts = [go_string(v) for v in values if v is not None and v is not MISSING]
    if mark == '"':
        return " ".join(go_quote(t) for t in texts)
    return " ".join(f"'{t}'" for t in texts)


def _not(value: Any) -> bool:
    return not truth(value)


FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    # text/template's builtins (and / or are evaluated lazily by the template itself)
    "not": _not,
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _ordered(lambda a, b: a < b, "lt"),
    "le": _ordered(lambda a, b: a <= b, "le"),
    "gt": _ordered(lambda a, b: a > b, "gt"),
    "ge": _ordered(lambda a, b: a >= b, "ge"),
    "len": _len,
    "index": _index,
    "print": _print,
    "printf": lambda fmt, *args: sprintf(go_string(fmt), *args),
    "println": _println,
    # sprig's
    "dict": _dict,
    "list": lambda *values: list(values),
    "toJson": to_json,
    "quote": _quote,
    "squote": lambda *values: _quote(*values, mark="'"),
    "upper": lambda s: go_string(s).upper(),
    "lower": lambda s: go_string(s).lower(),
    "trim": lambda s: go_string(s).strip(),
    "default": _default,
    "empty": _not,
    "coalesce": _coalesce,
    "contains": lambda sub, s: go_string(sub) in go_string(s),
    "hasPrefix": lambda prefix, s: go_string(s).startswith(go_string(prefix)),
    "hasSuffix": lambda suffix, s: go_string(s).endswith(go_string(suffix)),
    "replace": lambda old, new, s: go_string(s).replace(go_string(old), go_string(new)),
}
