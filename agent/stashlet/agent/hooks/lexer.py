"""The lexer of hook templates: text and the tokens of each action, as Go's text/template splits them.

``{{`` opens an action and ``}}`` closes it; ``{{- `` and `` -}}`` also trim the white space before and
after; ``{{/* ... */}}`` is a comment. Inside an action: fields (``.Name``), the dot, variables (``$x``),
strings (``"..."`` with Go's escapes, `` `raw` ``), numbers, ``true``/``false``/``nil``, identifiers,
``(``, ``)``, ``|``, ``:=`` and ``=``. A token records whether white space came right before it (a
field right after an operand continues its chain; after a space it starts a new operand).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from stashlet.agent.hooks.gofuncs import TemplateError

_SPACE: Final = " \t\r\n"
_NUMBER: Final = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)")


@dataclass(frozen=True)
class Token:
    """One piece of a template: a text, or a token of an action (``end`` closes the action; its value
    ``trim`` when it was `` -}}``)."""

    kind: str  # text, field, dot, var, string, number, bool, nil, ident, (, ), |, :=, =, end
    value: Any = None
    line: int = 1
    spaced: bool = False  # white space right before it (a field then starts a new operand)


def lex(src: str) -> list[Token]:
    """``src`` as texts and action tokens; TemplateError for a malformed action."""
    return list(_Lexer(src).tokens())


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.pos = 0

    @property
    def line(self) -> int:
        return self.src.count("\n", 0, self.pos) + 1

    def tokens(self) -> Iterator[Token]:
        trim_next = False
        while self.pos < len(self.src):
            start = self.src.find("{{", self.pos)
            end = len(self.src) if start < 0 else start
            text = self.src[self.pos : end]
            trim_before = start >= 0 and self.src.startswith("{{-", start) and self._space_at(start + 3)
            if trim_next:
                text = text.lstrip(_SPACE)
            if trim_before:
                text = text.rstrip(_SPACE)
            if text:
                yield Token("text", text, self.line)
            if start < 0:
                return
            self.pos = start + (4 if trim_before else 2)
            if self.src.startswith("/*", self.pos):
                trim_next = self._skip_comment()
                continue
            action = list(self._action())
            trim_next = action[-1].value == "trim"
            yield from action

    def _space_at(self, i: int) -> bool:
        return i < len(self.src) and self.src[i] in _SPACE

    def _skip_comment(self) -> bool:
        line = self.line
        close = self.src.find("*/", self.pos + 2)
        if close < 0:
            raise TemplateError(f"line {line}: unclosed comment")
        self.pos = close + 2
        for marker, trim in (("}}", False), (" -}}", True)):
            if self.src.startswith(marker, self.pos):
                self.pos += len(marker)
                return trim
        raise TemplateError(f"line {line}: comment ends before closing delimiter")

    def _action(self) -> Iterator[Token]:
        spaced = True
        while True:
            if self.pos >= len(self.src):
                raise TemplateError(f"line {self.line}: unclosed action")
            char = self.src[self.pos]
            if char in _SPACE:
                spaced = True
                rest = self.src[self.pos :].lstrip(_SPACE)
                if rest.startswith("-}}"):
                    self.pos = len(self.src) - len(rest) + 3
                    yield Token("end", "trim", self.line)
                    return
                self.pos += 1
                continue
            if self.src.startswith("}}", self.pos):
                self.pos += 2
                yield Token("end", "", self.line)
                return
            yield self._token(spaced)
            spaced = False

    def _token(self, spaced: bool) -> Token:
        src, pos, line = self.src, self.pos, self.line
        char = src[pos]
        if src.startswith(":=", pos):
            self.pos += 2
            return Token(":=", None, line, spaced)
        if char in "()|=":
            self.pos += 1
            return Token(char, None, line, spaced)
        if char == '"':
            return Token("string", self._quoted(), line, spaced)
        if char == "`":
            close = src.find("`", pos + 1)
            if close < 0:
                raise TemplateError(f"line {line}: unterminated raw string")
            self.pos = close + 1
            return Token("string", src[pos + 1 : close], line, spaced)
        if char == "." and not (pos + 1 < len(src) and src[pos + 1].isdigit()):
            name = self._word(pos + 1)
            return Token("field" if name else "dot", name, line, spaced)
        if char == "$":
            return Token("var", "$" + self._word(pos + 1), line, spaced)
        if char.isdigit() or (char in "+-." and pos + 1 < len(src) and src[pos + 1].isdigit()):
            return Token("number", self._number(), line, spaced)
        word = self._word(pos)
        if not word:
            raise TemplateError(f"line {line}: unexpected character {char!r} in action")
        if word in ("true", "false"):
            return Token("bool", word == "true", line, spaced)
        if word == "nil":
            return Token("nil", None, line, spaced)
        return Token("ident", word, line, spaced)

    def _word(self, start: int) -> str:
        end = start
        while end < len(self.src) and (self.src[end].isalnum() or self.src[end] == "_"):
            end += 1
        self.pos = end
        return self.src[start:end]

    def _number(self) -> int | float:
        match = _NUMBER.match(self.src, self.pos)
        if match is None or (match.end() < len(self.src) and self.src[match.end()].isalnum()):
            raise TemplateError(f"line {self.line}: bad number syntax")
        self.pos = match.end()
        text = match.group().replace("_", "")
        try:
            return int(text, 0)
        except ValueError:
            return float(text)

    def _quoted(self) -> str:
        out: list[str] = []
        i = self.pos + 1
        while i < len(self.src):
            char = self.src[i]
            if char == '"':
                self.pos = i + 1
                return "".join(out)
            if char == "\n":
                break
            if char == "\\":
                text, i = _escape(self.src, i, self.line)
                out.append(text)
                continue
            out.append(char)
            i += 1
        raise TemplateError(f"line {self.line}: unterminated quoted string")


_SIMPLE_ESCAPES: Final = dict(zip("ntr\\\"'abfv", "\n\t\r\\\"'\a\b\f\v", strict=True))


def _escape(src: str, i: int, line: int) -> tuple[str, int]:
    """The escape sequence at ``src[i]`` (a backslash) and the index after it."""
    code = src[i + 1 : i + 2]
    if code in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[code], i + 2
    digits = {"x": 2, "u": 4, "U": 8}.get(code)
    if digits is not None:
        try:
            return chr(int(src[i + 2 : i + 2 + digits], 16)), i + 2 + digits
        except ValueError:
            pass
    raise TemplateError(f"line {line}: bad escape sequence in string")
