"""A safe renderer of the Go templates in hook commands and bodies: pure.

Stash renders an ``exec`` command's items and an ``httpPost`` body that contain ``{{`` with Go's
``text/template`` over its session summary (option ``missingkey=default``, sprig's functions), and trims
the result's leading and trailing white space. This module renders the same language, minus everything
that could run code or reach outside the template:

- text, and actions ``{{ pipeline }}`` with trim markers (``{{-`` and ``-}}``) and comments
  (``{{/* ... */}}``);
- pipelines of commands joined by ``|``: a field chain on the data (``.Status.Phase``, ``.``), a
  variable (``$``, ``$msg``, ``$msg.text``), a string (``"..."`` or `` `...` ``), number, ``true``,
  ``false`` or ``nil``, a parenthesised pipeline, or a call of a function of :mod:`.gofuncs`;
- variables declared (``$x := ...``) and assigned (``$x = ...``), scoped as Go scopes them;
- ``{{ if }}``, ``{{ else if }}``, ``{{ else }}``, ``{{ with }}`` and ``{{ end }}``.

``range``, ``define``, ``template`` and ``block`` are refused with an error naming them, as is any
function not in :mod:`.gofuncs`; nothing a template says can call Python code, read files or the
environment. Errors say the line and what failed, and never quote the template's text (a body may hold
a token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from stashlet.agent.hooks.gofuncs import FUNCTIONS, MISSING, GoStruct, TemplateError, action_text, truth
from stashlet.agent.hooks.lexer import Token, lex

_KEYWORDS: Final = frozenset({"if", "else", "end", "with", "range", "define", "template", "block"})
_CONTROL: Final = frozenset({"break", "continue"})


def render(text: str, data: Any) -> str:
    """``text`` rendered over ``data`` and trimmed, as Stash renders a hook's template; text without
    ``{{`` is returned as it is."""
    if "{{" not in text:
        return text
    nodes = _Parser(lex(text)).parse()
    out: list[str] = []
    _State(root=data).run(nodes, data, out)
    return "".join(out).strip()


# ----------------------------------------------------------------------------------------------- parser


@dataclass
class _Pipe:
    commands: list[list[Any]]
    declare: str | None = None
    assign: bool = False
    line: int = 1


@dataclass
class _Block:
    kind: str  # "if" or "with"
    pipe: _Pipe
    then: list[Any] = field(default_factory=list)
    otherwise: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class _Field:
    base: Any  # None: the dot
    names: tuple[str, ...]


@dataclass(frozen=True)
class _Var:
    name: str
    line: int


@dataclass(frozen=True)
class _Func:
    name: str


@dataclass(frozen=True)
class _Literal:
    value: Any


class _Parser:
    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> list[Any]:
        nodes, closer = self._list()
        if closer is not None:
            raise TemplateError(f"line {closer.line}: unexpected {{{{{closer.value}}}}}")
        return nodes

    def _list(self) -> tuple[list[Any], Token | None]:
        """Nodes up to the end of input, or up to (and returning) an ``else``/``end`` keyword."""
        nodes: list[Any] = []
        while self.i < len(self.tokens):
            token = self.take()
            if token.kind == "text":
                nodes.append(token.value)
                continue
            if token.kind == "ident" and token.value in ("else", "end"):
                return nodes, token
            nodes.append(self._action(token))
        return nodes, None

    def _action(self, first: Token) -> Any:
        if first.kind == "ident" and first.value in ("if", "with"):
            return self._block(first.value, first.line)
        if first.kind == "ident" and (first.value in _KEYWORDS or first.value in _CONTROL):
            raise TemplateError(
                f"line {first.line}: {{{{{first.value}}}}} is not supported in hook templates"
            )
        self.i -= 1
        return self._pipe(first.line, end="end")

    def _block(self, kind: str, line: int) -> _Block:
        block = _Block(kind, self._pipe(line, end="end"))
        block.then, closer = self._list()
        if closer is None:
            raise TemplateError(f"line {line}: unexpected EOF: {{{{{kind}}}}} without {{{{end}}}}")
        if closer.value == "end":
            self._expect_end(closer.line)
            return block
        nested = self.peek()
        if nested.kind == "ident" and nested.value == kind:
            self.take()
            block.otherwise = [self._block(kind, nested.line)]
            return block
        self._expect_end(closer.line)
        block.otherwise, closer = self._list()
        if closer is None or closer.value != "end":
            raise TemplateError(f"line {line}: {{{{{kind}}}}} ... {{{{else}}}} without {{{{end}}}}")
        self._expect_end(closer.line)
        return block

    def _expect_end(self, line: int) -> None:
        if self.take().kind != "end":
            raise TemplateError(f"line {line}: unexpected word after else or end")

    def _pipe(self, line: int, end: str) -> _Pipe:
        pipe = _Pipe([], line=line)
        if self.peek().kind == "var" and self.tokens[self.i + 1].kind in (":=", "="):
            pipe.declare, pipe.assign = self.take().value, self.take().kind == "="
        while True:
            pipe.commands.append(self._command(line))
            closer = self.take()
            if closer.kind == "|":
                continue
            if closer.kind != end:
                raise TemplateError(f"line {line}: unexpected {closer.kind} in pipeline")
            return pipe

    def _command(self, line: int) -> list[Any]:
        operands: list[Any] = []
        while self.peek().kind not in ("|", ")", "end"):
            operands.append(self._operand())
        if not operands:
            raise TemplateError(f"line {line}: missing value for command")
        return operands

    def _operand(self) -> Any:
        token = self.take()
        term = self._term(token)
        names: list[str] = []
        while self.peek().kind == "field" and not self.peek().spaced:
            names.append(self.take().value)
        if not names:
            return term
        if isinstance(term, _Func | _Literal):
            raise TemplateError(f"line {token.line}: a field cannot follow a {token.kind}")
        if isinstance(term, _Field) and term.base is None:
            return _Field(None, term.names + tuple(names))
        return _Field(term, tuple(names))

    def _term(self, token: Token) -> Any:
        kind = token.kind
        if kind == "dot":
            return _Field(None, ())
        if kind == "field":
            return _Field(None, (token.value,))
        if kind == "var":
            return _Var(token.value, token.line)
        if kind in ("string", "number", "bool", "nil"):
            return _Literal(token.value)
        if kind == "ident":
            if token.value not in FUNCTIONS and token.value not in ("and", "or"):
                raise TemplateError(f'line {token.line}: function "{token.value}" not defined')
            return _Func(token.value)
        if kind == "(":
            inner = self._pipe(token.line, end=")")
            if inner.declare:
                raise TemplateError(f"line {token.line}: a declaration cannot be parenthesised")
            return inner
        raise TemplateError(f"line {token.line}: unexpected {kind} in operand")


# --------------------------------------------------------------------------------------------- executor


@dataclass
class _State:
    root: Any
    scopes: list[dict[str, Any]] = field(default_factory=list)

    def run(self, nodes: list[Any], dot: Any, out: list[str]) -> None:
        self.scopes.append({"$": self.root} if not self.scopes else {})
        try:
            for node in nodes:
                if isinstance(node, str):
                    out.append(node)
                elif isinstance(node, _Block):
                    self._block(node, dot, out)
                else:
                    value = self.pipe(node, dot)
                    if node.declare is None:
                        out.append(action_text(value))
        finally:
            self.scopes.pop()

    def _block(self, block: _Block, dot: Any, out: list[str]) -> None:
        self.scopes.append({})  # what the block's pipeline declares lives until its end
        try:
            value = self.pipe(block.pipe, dot)
            if truth(value):
                self.run(block.then, value if block.kind == "with" else dot, out)
            else:
                self.run(block.otherwise, dot, out)
        finally:
            self.scopes.pop()

    def pipe(self, pipe: _Pipe, dot: Any) -> Any:
        value: Any = None
        for i, command in enumerate(pipe.commands):
            value = self._command(command, dot, value, i > 0, pipe.line)
        if pipe.declare is not None:
            self._bind(pipe.declare, value, assign=pipe.assign, line=pipe.line)
        return value

    def _bind(self, name: str, value: Any, *, assign: bool, line: int) -> None:
        if not assign:
            self.scopes[-1][name] = value
            return
        for scope in reversed(self.scopes):
            if name in scope:
                scope[name] = value
                return
        raise TemplateError(f"line {line}: undefined variable: {name}")

    def _command(self, operands: list[Any], dot: Any, piped: Any, has_input: bool, line: int) -> Any:
        head = operands[0]
        if isinstance(head, _Func):
            args = operands[1:]
            if head.name in ("and", "or"):
                return self._logic(head.name, args, dot, piped, has_input, line)
            values = [self.value(a, dot, line) for a in args] + ([piped] if has_input else [])
            try:
                return FUNCTIONS[head.name](*values)
            except TypeError:
                raise TemplateError(f"line {line}: wrong number of arguments for {head.name}") from None
            except TemplateError as exc:
                raise TemplateError(f"line {line}: error calling {head.name}: {exc}") from None
        if len(operands) > 1 or has_input:
            raise TemplateError(f"line {line}: can't give argument to non-function")
        if isinstance(head, _Literal) and head.value is None:
            raise TemplateError(f"line {line}: nil is not a command")
        return self.value(head, dot, line)

    def _logic(self, name: str, args: list[Any], dot: Any, piped: Any, has_input: bool, line: int) -> Any:
        thunks = [lambda a=a: self.value(a, dot, line) for a in args] + ([lambda: piped] if has_input else [])
        if not thunks:
            raise TemplateError(f"line {line}: wrong number of arguments for {name}")
        value: Any = None
        for thunk in thunks:
            value = thunk()
            if truth(value) == (name == "or"):
                return value
        return value

    def value(self, node: Any, dot: Any, line: int) -> Any:
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Var):
            return self._lookup(node)
        if isinstance(node, _Pipe):
            self.scopes.append({})
            try:
                return self.pipe(node, dot)
            finally:
                self.scopes.pop()
        if isinstance(node, _Field):
            base = dot if node.base is None else self.value(node.base, dot, line)
            return _fields(base, node.names, line)
        raise TemplateError(f"line {line}: {node.name} is a function: call it with arguments")

    def _lookup(self, var: _Var) -> Any:
        for scope in reversed(self.scopes):
            if var.name in scope:
                return scope[var.name]
        raise TemplateError(f"line {var.line}: undefined variable: {var.name}")


def _fields(value: Any, names: tuple[str, ...], line: int) -> Any:
    for name in names:
        if isinstance(value, GoStruct):
            try:
                value = value.get(name)
            except TemplateError as exc:
                raise TemplateError(f"line {line}: {exc}") from None
        elif isinstance(value, dict):
            value = value.get(name, MISSING)
        elif value is None or value is MISSING:
            raise TemplateError(f"line {line}: nil pointer evaluating .{name}")
        else:
            raise TemplateError(f"line {line}: can't evaluate field {name} in a {type(value).__name__}")
    return value
