"""A subset of the CloudWatch Logs Insights query language, compiled to DuckDB SQL over invocation-log records.

Supported (docs/sandbox.md, "Logs Insights"): commands ``fields`` (with ``as``), ``display``, ``filter``,
``parse <field> /regex with (?<name>...)/`` and ``parse <field> "glob * text" as a, b``, ``stats`` (``sum``,
``count``, ``count_distinct``, ``avg``, ``min``, ``max`` ``by`` fields or ``bin(<period>)``, with ``as``), ``sort``,
``limit``; expressions with ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in [...]``, ``not in``, ``like "text"``,
``like /regex/``, ``=~ /regex/``, ``not``, ``and``, ``or``, arithmetic, and the functions ``ispresent``,
``isempty``, ``isblank``, ``coalesce``, ``strlen``, ``tolower``, ``toupper``, ``concat``, ``bin``, ``abs``,
``floor``, ``ceil``. Anything else is refused with :class:`QueryError` (MalformedQueryException).

As in Logs Insights, ``fields`` adds fields without hiding the others from later commands, a field a record
does not have is null, and values are loosely typed: a text field compared with a number is read as a number.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.sandbox.invocation_logs import LOG_STREAM, duckdb_cursor, message_sql

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 100_000
MAX_QUERY_LENGTH = 10_000

_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_AGGREGATES = ("sum", "count", "count_distinct", "avg", "min", "max")
_KEYWORDS = ("and", "or", "not", "in", "like", "as", "by", "asc", "desc")


class QueryError(ValueError):
    """A query the sandbox cannot parse or does not support (Logs Insights answers MalformedQueryException)."""


# ---- lexer --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # str, regex, num, dur, ident, qident, op
    value: Any
    start: int
    end: int


_NUMBER_RE = re.compile(r"\d+(\.\d+)?")
_IDENT_RE = re.compile(r"[A-Za-z_@$][A-Za-z0-9_.@$]*")
_OPERATORS = ("!=", "<=", ">=", "=~", "=", "<", ">", "+", "-", "*", "/", "%", ",", "(", ")", "[", "]", "|")


def _regex_allowed(tokens: list[_Token]) -> bool:
    if not tokens:
        return True
    last = tokens[-1]
    if last.kind == "op":
        return last.value not in (")", "]")
    if last.kind == "ident" and last.value.lower() in ("like", "and", "or", "not", "in"):
        return True
    # parse <field> /regex/
    return len(tokens) >= 2 and tokens[-2].kind == "ident" and tokens[-2].value.lower() == "parse"


def tokenize(text: str) -> list[_Token]:
    """The query's tokens; string and regex literals are single tokens, so a ``|`` inside them is no pipe."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "\"'":
            j, chars = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    chars.append(text[j + 1] if text[j + 1] in (c, "\\") else text[j : j + 2])
                    j += 2
                    continue
                chars.append(text[j])
                j += 1
            if j >= n:
                raise QueryError(f"unterminated string starting at character {i + 1}")
            tokens.append(_Token("str", "".join(chars), i, j + 1))
            i = j + 1
        elif c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise QueryError(f"unterminated backtick name starting at character {i + 1}")
            tokens.append(_Token("qident", text[i + 1 : j], i, j + 1))
            i = j + 1
        elif c == "/" and _regex_allowed(tokens):
            j = i + 1
            while j < n and text[j] != "/":
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise QueryError(f"unterminated regular expression starting at character {i + 1}")
            k = j + 1
            while k < n and text[k].isalpha():
                k += 1
            tokens.append(_Token("regex", (text[i + 1 : j], text[j + 1 : k]), i, k))
            i = k
        elif c.isdigit():
            match = _NUMBER_RE.match(text, i)
            assert match is not None
            j = match.end()
            unit = re.match(r"(ms|min|s|m|h|d|w)\b", text[j:])
            if unit:
                value = float(match.group()) * _DURATION_MS[unit.group(1)]
                tokens.append(_Token("dur", int(value), i, j + unit.end()))
                i = j + unit.end()
            else:
                tokens.append(_Token("num", float(match.group()), i, j))
                i = j
        else:
            match = _IDENT_RE.match(text, i)
            if match:
                tokens.append(_Token("ident", match.group(), i, match.end()))
                i = match.end()
                continue
            for op in _OPERATORS:
                if text.startswith(op, i):
                    tokens.append(_Token("op", op, i, i + len(op)))
                    i += len(op)
                    break
            else:
                raise QueryError(f"unexpected character {c!r} at character {i + 1}")
    return tokens


# ---- parser -------------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0

    def peek(self, offset: int = 0) -> _Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "ident" and token.value.lower() in words

    def at_op(self, *ops: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "op" and token.value in ops

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise QueryError("the query ends too early")
        self.i += 1
        return token

    def expect_op(self, op: str) -> None:
        token = self.take()
        if token.kind != "op" or token.value != op:
            raise QueryError(f"expected {op!r} at character {token.start + 1}")

    def done(self) -> bool:
        return self.peek() is None

    # expressions

    def expression(self) -> tuple:
        left = self.conjunction()
        while self.at_word("or"):
            self.take()
            left = ("or", left, self.conjunction())
        return left

    def conjunction(self) -> tuple:
        left = self.negation()
        while self.at_word("and"):
            self.take()
            left = ("and", left, self.negation())
        return left

    def negation(self) -> tuple:
        following = self.peek(1)
        if self.at_word("not") and not (following is not None and str(following.value).lower() in ("in", "like")):
            self.take()
            return ("not", self.negation())
        return self.comparison()

    def comparison(self) -> tuple:
        left = self.additive()
        negate = False
        if self.at_word("not") and self.peek(1) is not None and self.peek(1).value in ("in", "like"):
            self.take()
            negate = True
        if self.at_word("in"):
            self.take()
            node = ("in", left, self.primary())
            return ("not", node) if negate else node
        if self.at_word("like"):
            self.take()
            node = ("like", left, self.primary())
            return ("not", node) if negate else node
        if negate:
            raise QueryError("'not' must be followed by 'in' or 'like' here")
        if self.at_op("=~"):
            self.take()
            return ("like", left, self.primary())
        if self.at_op("=", "!=", "<", "<=", ">", ">="):
            op = self.take().value
            return ("cmp", op, left, self.additive())
        return left

    def additive(self) -> tuple:
        left = self.multiplicative()
        while self.at_op("+", "-"):
            op = self.take().value
            left = ("arith", op, left, self.multiplicative())
        return left

    def multiplicative(self) -> tuple:
        left = self.unary()
        while self.at_op("*", "/", "%"):
            op = self.take().value
            left = ("arith", op, left, self.unary())
        return left

    def unary(self) -> tuple:
        if self.at_op("-"):
            self.take()
            return ("arith", "-", ("num", 0.0), self.unary())
        return self.primary()

    def primary(self) -> tuple:
        token = self.take()
        if token.kind == "num":
            return ("num", token.value)
        if token.kind == "dur":
            return ("dur", token.value)
        if token.kind == "str":
            return ("str", token.value)
        if token.kind == "regex":
            return ("regex", *token.value)
        if token.kind == "qident":
            return ("field", token.value)
        if token.kind == "op" and token.value == "(":
            inner = self.expression()
            self.expect_op(")")
            return inner
        if token.kind == "op" and token.value == "[":
            items = []
            if not self.at_op("]"):
                items.append(self.expression())
                while self.at_op(","):
                    self.take()
                    items.append(self.expression())
            self.expect_op("]")
            return ("list", items)
        if token.kind == "ident":
            if self.at_op("("):
                self.take()
                args: list[tuple] = []
                if self.at_op("*"):
                    self.take()
                    args.append(("star",))
                elif not self.at_op(")"):
                    args.append(self.expression())
                    while self.at_op(","):
                        self.take()
                        args.append(self.expression())
                self.expect_op(")")
                return ("call", token.value.lower(), args)
            return ("field", token.value)
        raise QueryError(f"unexpected {token.value!r} at character {token.start + 1}")

    def item(self) -> tuple[tuple, str, str | None]:
        """An expression with its source text and an optional ``as`` alias."""
        first = self.peek()
        expr = self.expression()
        last = self.tokens[self.i - 1]
        assert first is not None
        source = self.text[first.start : last.end]
        alias = None
        if self.at_word("as"):
            self.take()
            name = self.take()
            if name.kind not in ("ident", "qident"):
                raise QueryError(f"expected a field name after 'as' at character {name.start + 1}")
            alias = name.value
        return expr, source, alias

    def items(self) -> list[tuple[tuple, str, str | None]]:
        out = [self.item()]
        while self.at_op(","):
            self.take()
            out.append(self.item())
        return out


@dataclass
class _Command:
    name: str
    items: list = field(default_factory=list)
    by: list = field(default_factory=list)
    expr: tuple | None = None
    source: tuple | None = None
    pattern: str = ""
    groups: list[str] = field(default_factory=list)
    limit: int = 0


def parse_query(text: str) -> list[_Command]:
    """The commands of a query, or :class:`QueryError` naming what is not understood."""
    if not text.strip():
        raise QueryError("the query is empty")
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    tokens = tokenize(text)
    commands: list[list[_Token]] = [[]]
    for token in tokens:
        if token.kind == "op" and token.value == "|":
            commands.append([])
        else:
            commands[-1].append(token)
    out = []
    for command_tokens in commands:
        if not command_tokens:
            if out or len(commands) == 1:
                raise QueryError("empty command between pipes")
            continue  # a query may start with '|'
        out.append(_parse_command(text, command_tokens))
    return out


def _parse_command(text: str, tokens: list[_Token]) -> _Command:
    head = tokens[0]
    if head.kind != "ident":
        raise QueryError(f"expected a command at character {head.start + 1}")
    name = head.value.lower()
    p = _Parser(text, tokens[1:])
    if name in ("fields", "display"):
        command = _Command(name, items=p.items())
    elif name == "filter":
        command = _Command(name, expr=p.expression())
    elif name == "stats":
        command = _Command(name, items=p.items())
        if p.at_word("by"):
            p.take()
            command.by = p.items()
    elif name == "sort":
        keys = []
        while True:
            expr = p.expression()
            descending = False
            if p.at_word("asc", "desc"):
                descending = p.take().value.lower() == "desc"
            keys.append((expr, descending))
            if not p.at_op(","):
                break
            p.take()
        command = _Command(name, items=keys)
    elif name == "limit":
        token = p.take()
        if token.kind != "num" or token.value != int(token.value) or token.value < 1:
            raise QueryError("limit takes a positive whole number")
        command = _Command(name, limit=int(token.value))
    elif name == "parse":
        source = p.primary()
        pattern_token = p.take()
        if pattern_token.kind == "regex":
            pattern, flags = pattern_token.value
            command = _Command(name, source=source, pattern=_to_re2(pattern, flags), groups=_named_groups(pattern))
            if not command.groups:
                raise QueryError("a parse regular expression needs named groups, like (?<name>...)")
        elif pattern_token.kind == "str":
            if not p.at_word("as"):
                raise QueryError("a parse glob pattern needs 'as' and field names")
            p.take()
            names = [p.take().value]
            while p.at_op(","):
                p.take()
                names.append(p.take().value)
            pieces = pattern_token.value.split("*")
            if len(pieces) - 1 != len(names):
                raise QueryError("a parse glob pattern needs one field name per '*'")
            regex = ""
            for k, piece in enumerate(pieces):
                regex += re.escape(piece)
                if k < len(names):
                    # The last '*' of a pattern that ends in '*' takes the rest of the text.
                    lazy = "" if k == len(names) - 1 and pieces[-1] == "" else "?"
                    regex += f"(?P<{names[k]}>.*{lazy})"
            command = _Command(name, source=source, pattern=regex, groups=names)
        else:
            raise QueryError('parse needs a /regular expression/ or a "glob * pattern"')
    else:
        raise QueryError(f"the sandbox does not support the Logs Insights command {head.value!r}")
    if not p.done():
        extra = p.peek()
        assert extra is not None
        raise QueryError(f"unexpected {extra.value!r} at character {extra.start + 1}")
    return command


def _named_groups(pattern: str) -> list[str]:
    return re.findall(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>", pattern)


def _to_re2(pattern: str, flags: str) -> str:
    """Logs Insights regexes use Java's ``(?<name>...)``; DuckDB's RE2 wants ``(?P<name>...)``."""
    converted = re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", pattern)
    if "i" in flags:
        converted = "(?i)" + converted
    return converted


# ---- compiler -----------------------------------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _as_text(sql: str) -> str:
    return f"cast({sql} as varchar)"


def _as_number(sql: str, kind: str) -> str:
    return sql if kind in ("num", "time") else f"try_cast({sql} as double)"


@dataclass
class CompiledQuery:
    """SQL for the results, for counting matched records, and how to render the output fields."""

    sql: str
    matched_sql: str
    outputs: list[tuple[str, str]]  # (field name, kind)
    aggregate: bool


class _Compiler:
    def __init__(self, columns: list[str], kinds: dict[str, str], account_id: str, region: str, log_group: str):
        self.fields: dict[str, tuple[str, str]] = {}
        for name in columns:
            self.fields[name] = (_ident(name), kinds.get(name, "str"))
        constants = {
            "schemaType": "ModelInvocationLog",
            "schemaVersion": "1.0",
            "accountId": account_id,
            "region": region,
            "@logStream": LOG_STREAM,
            "@log": f"{account_id}:{log_group}",
            "input.inputContentType": "application/json",
        }
        for name, value in constants.items():
            self.fields[name] = (_literal(value), "str")
        self.fields["output.outputContentType"] = (
            "case when \"errorCode\" is null then 'application/json' end",
            "str",
        )
        self.fields["timestamp"] = ("strftime(make_timestamp(\"@timestamp\" * 1000), '%Y-%m-%dT%H:%M:%SZ')", "str")
        self.fields["@message"] = (message_sql(columns, account_id, region), "str")
        self.fields["@ingestionTime"] = ('("@timestamp" + 2000)', "time")

    def expr(self, node: tuple, aggregate: bool = False) -> tuple[str, str]:
        kind = node[0]
        if kind == "num":
            value = node[1]
            return (str(int(value)) if value == int(value) else repr(value)), "num"
        if kind == "dur":
            return str(node[1]), "num"
        if kind == "str":
            return _literal(node[1]), "strlit"
        if kind == "field":
            return self.fields.get(node[1], ("null", "any"))
        if kind in ("and", "or"):
            left, _ = self.expr(node[1], aggregate)
            right, _ = self.expr(node[2], aggregate)
            return f"({left} {kind} {right})", "bool"
        if kind == "not":
            inner, _ = self.expr(node[1], aggregate)
            return f"(not coalesce({inner}, false))", "bool"
        if kind == "cmp":
            return self.compare(node[1], node[2], node[3], aggregate)
        if kind == "arith":
            left, lk = self.expr(node[2], aggregate)
            right, rk = self.expr(node[3], aggregate)
            op = node[1]
            return f"({_as_number(left, lk)} {op} {_as_number(right, rk)})", "num"
        if kind == "in":
            target, target_kind = self.expr(node[1], aggregate)
            if node[2][0] != "list":
                raise QueryError('\'in\' needs a list in brackets, like in ["a", "b"]')
            values = [self.expr(item) for item in node[2][1]]
            if not values:
                return "false", "bool"
            if all(k == "num" for _, k in values):
                return f"({_as_number(target, target_kind)} in ({', '.join(v for v, _ in values)}))", "bool"
            return f"({_as_text(target)} in ({', '.join(_as_text(v) for v, _ in values)}))", "bool"
        if kind == "like":
            target, _ = self.expr(node[1], aggregate)
            pattern = node[2]
            if pattern[0] == "regex":
                return f"regexp_matches({_as_text(target)}, {_literal(_to_re2(pattern[1], pattern[2]))})", "bool"
            if pattern[0] == "str":
                return f"contains({_as_text(target)}, {_literal(pattern[1])})", "bool"
            raise QueryError("'like' needs a \"string\" or a /regular expression/")
        if kind == "regex":
            raise QueryError("a regular expression can only follow 'like', '=~' or 'parse <field>'")
        if kind == "list":
            raise QueryError("a list in brackets can only follow 'in'")
        if kind == "call":
            return self.call(node[1], node[2], aggregate)
        raise QueryError(f"unsupported expression {kind}")

    def compare(self, op: str, left_node: tuple, right_node: tuple, aggregate: bool) -> tuple[str, str]:
        left, lk = self.expr(left_node, aggregate)
        right, rk = self.expr(right_node, aggregate)
        sql_op = "<>" if op == "!=" else op
        if "num" in (lk, rk) or ("time" in (lk, rk) and "strlit" not in (lk, rk)):
            return f"({_as_number(left, lk)} {sql_op} {_as_number(right, rk)})", "bool"
        return f"({_as_text(left)} {sql_op} {_as_text(right)})", "bool"

    def call(self, name: str, args: list[tuple], aggregate: bool) -> tuple[str, str]:
        if name in _AGGREGATES:
            if not aggregate:
                raise QueryError(f"{name}() can only be used in stats")
            if name == "count":
                if not args or args[0] == ("star",):
                    return "count(*)", "num"
                value, _ = self.expr(args[0])
                return f"count({value})", "num"
            if len(args) != 1 or args[0] == ("star",):
                raise QueryError(f"{name}() takes one field")
            value, kind = self.expr(args[0])
            if name == "count_distinct":
                return f"count(distinct {value})", "num"
            if name in ("min", "max") and kind not in ("num", "time"):
                return f"{name}({value})", kind
            return f"{name}({_as_number(value, kind)})", "num" if kind != "time" else "time"
        values = [self.expr(a, aggregate) for a in args if a != ("star",)]
        if name == "ispresent":
            self.arity(name, values, 1)
            return f"({values[0][0]} is not null)", "bool"
        if name in ("isempty", "isblank"):
            self.arity(name, values, 1)
            text = _as_text(values[0][0]) if name == "isempty" else f"trim({_as_text(values[0][0])})"
            return f"({values[0][0]} is null or {text} = '')", "bool"
        if name == "coalesce":
            if not values:
                raise QueryError("coalesce() needs at least one field")
            if all(k in ("num", "any") for _, k in values):
                return f"coalesce({', '.join(v for v, _ in values)})", "num"
            if all(k in ("time", "any") for _, k in values):
                return f"coalesce({', '.join(v for v, _ in values)})", "time"
            return f"coalesce({', '.join(_as_text(v) for v, _ in values)})", "str"
        if name == "strlen":
            self.arity(name, values, 1)
            return f"length({_as_text(values[0][0])})", "num"
        if name in ("tolower", "toupper"):
            self.arity(name, values, 1)
            return f"{'lower' if name == 'tolower' else 'upper'}({_as_text(values[0][0])})", "str"
        if name == "concat":
            return f"concat({', '.join(_as_text(v) for v, _ in values)})", "str"
        if name in ("abs", "floor", "ceil"):
            self.arity(name, values, 1)
            return f"{name}({_as_number(*values[0])})", "num"
        if name in ("bin", "datefloor"):
            period = values[-1][0] if values else ""
            if not values or not args[-1][0] == "dur":
                raise QueryError(f"{name}() takes a period such as 1m, 5m or 1h")
            stamp = '"@timestamp"' if name == "bin" else _as_number(*values[0])
            return f"(floor({stamp} / {period}) * {period})", "time"
        raise QueryError(f"the sandbox does not support the Logs Insights function {name}()")

    @staticmethod
    def arity(name: str, values: list, count: int) -> None:
        if len(values) != count:
            raise QueryError(f"{name}() takes {count} argument{'s' if count > 1 else ''}")


def compile_query(
    commands: list[_Command],
    table: pa.Table,
    *,
    account_id: str,
    region: str,
    log_group: str,
    limit: int | None,
) -> CompiledQuery:
    """DuckDB SQL for a parsed query over a registered ``records`` table."""
    columns = [c for c in table.column_names if not c.startswith("__")]
    kinds = {}
    for name in columns:
        kind = table.schema.field(name).type
        kinds[name] = "time" if name == "@timestamp" else "num" if pa.types.is_integer(kind) else "str"
    compiler = _Compiler(columns, kinds, account_id, region, log_group)
    stages = [f"select {', '.join(_ident(c) for c in columns)} from records"]
    display: list[str] = []
    explicit_display: list[str] | None = None
    order: list[tuple[str, bool]] = []
    aggregate = False
    group_names: list[str] = []
    query_limit: int | None = None
    matched_stage: int | None = None

    def add_stage(sql: str) -> None:
        stages.append(sql)

    def define(name: str, sql: str, kind: str) -> None:
        previous = f"s{len(stages) - 1}"
        if name in compiler.fields and compiler.fields[name][0] == _ident(name):
            add_stage(f"select * replace ({sql} as {_ident(name)}) from {previous}")
        else:
            add_stage(f"select *, {sql} as {_ident(name)} from {previous}")
        compiler.fields[name] = (_ident(name), kind)

    for command in commands:
        previous = f"s{len(stages) - 1}"
        if command.name == "fields":
            for expr, source, alias in command.items:
                if expr[0] == "field" and alias is None:
                    name = expr[1]
                    if name not in display:
                        display.append(name)
                    continue
                sql, kind = compiler.expr(expr)
                name = alias or source
                define(name, sql, "str" if kind == "strlit" else kind)
                if name not in display:
                    display.append(name)
        elif command.name == "display":
            explicit_display = []
            for expr, _source, alias in command.items:
                if expr[0] != "field" or alias is not None:
                    raise QueryError("display takes field names only")
                explicit_display.append(expr[1])
        elif command.name == "filter":
            sql, _ = compiler.expr(command.expr)
            add_stage(f"select * from {previous} where coalesce({sql}, false)")
        elif command.name == "parse":
            assert command.source is not None
            source_sql, _ = compiler.expr(command.source)
            try:
                python_pattern = re.compile(command.pattern)
            except re.error as exc:
                raise QueryError(f"parse: the regular expression is not valid: {exc}") from None
            text = _as_text(source_sql)
            pieces = []
            for group in command.groups:
                index = python_pattern.groupindex[group]
                pieces.append(
                    f"nullif(regexp_extract({text}, {_literal(command.pattern)}, {index}), '') as {_ident(group)}"
                )
            shadowed = [_ident(g) for g in command.groups if compiler.fields.get(g, ("",))[0] == _ident(g)]
            keep = f"* exclude ({', '.join(shadowed)})" if shadowed else "*"
            add_stage(f"select {keep}, {', '.join(pieces)} from {previous}")
            for group in command.groups:
                compiler.fields[group] = (_ident(group), "str")
                if group not in display:
                    display.append(group)
        elif command.name == "stats":
            if matched_stage is None:
                matched_stage = len(stages) - 1
            selects, names, kinds_out = [], [], []
            for expr, source, alias in command.by:
                sql, kind = compiler.expr(expr)
                name = alias or (expr[1] if expr[0] == "field" else source)
                selects.append(f"{sql} as {_ident(name)}")
                names.append(name)
                kinds_out.append("str" if kind == "strlit" else kind)
            groups = len(selects)
            for expr, source, alias in command.items:
                sql, kind = compiler.expr(expr, aggregate=True)
                name = alias or source
                selects.append(f"{sql} as {_ident(name)}")
                names.append(name)
                kinds_out.append(kind)
            group_clause = f" group by {', '.join(str(k + 1) for k in range(groups))}" if groups else ""
            add_stage(f"select {', '.join(selects)} from {previous}{group_clause}")
            compiler.fields = {name: (_ident(name), kind) for name, kind in zip(names, kinds_out, strict=True)}
            display = list(names)
            group_names = names[:groups]
            aggregate = True
            order = []
        elif command.name == "sort":
            order = []
            for expr, descending in command.items:
                sql, _ = compiler.expr(expr)
                order.append((sql, descending))
        elif command.name == "limit":
            query_limit = command.limit

    if explicit_display is not None:
        display = explicit_display
    if not display:
        display = ["@timestamp", "@message"]
    last = f"s{len(stages) - 1}"
    outputs = []
    selects = []
    for name in display:
        sql, kind = compiler.fields.get(name, ("null", "any"))
        selects.append(f"{sql} as {_ident(name)}")
        outputs.append((name, "str" if kind == "strlit" else kind))
    if not aggregate:
        selects.append(f'"requestId" as {_ident("@ptr")}')
        outputs.append(("@ptr", "ptr"))
    if not order:
        if aggregate:
            order = [(_ident(name), False) for name in group_names]
        else:
            order = [('"@timestamp"', True), ('"requestId"', False)]
    order_clause = ", ".join(f"{sql} {'desc' if desc else 'asc'} nulls last" for sql, desc in order)
    effective = min(x for x in (query_limit, limit, MAX_LIMIT) if x is not None)
    if query_limit is None and limit is None:
        effective = DEFAULT_LIMIT
    ctes = ", ".join(f"s{k} as ({sql})" for k, sql in enumerate(stages))
    sql = f"with {ctes} select {', '.join(selects)} from {last}"
    if order_clause:
        sql += f" order by {order_clause}"
    sql += f" limit {effective}"
    matched = f"s{matched_stage if matched_stage is not None else len(stages) - 1}"
    return CompiledQuery(sql, f"with {ctes} select count(*) from {matched}", outputs, aggregate)


@dataclass(frozen=True)
class QueryResult:
    """Rows as Logs Insights returns them (``[{field, value}]`` each, nulls left out) and the scan figures."""

    rows: list[list[dict[str, str]]]
    records_scanned: int
    records_matched: int
    bytes_scanned: int


def run_query(
    text: str,
    table: pa.Table,
    *,
    account_id: str,
    region: str,
    log_group: str,
    limit: int | None = None,
) -> QueryResult:
    """Parse, compile and run a query over a record table (already cut to the query's time range)."""
    commands = parse_query(text)
    compiled = compile_query(commands, table, account_id=account_id, region=region, log_group=log_group, limit=limit)
    con = duckdb_cursor()
    try:
        con.register("records", table)
        try:
            raw = con.execute(compiled.sql).fetchall()
            matched = con.execute(compiled.matched_sql).fetchone()[0] if table.num_rows else 0
        except duckdb.Error as exc:
            raise QueryError(f"the query cannot be run: {str(exc).splitlines()[0]}") from None
        scanned_bytes = int(pc.sum(table.column("__bytes")).as_py() or 0) if "__bytes" in table.column_names else 0
    finally:
        con.close()
    rows = []
    for values in raw:
        row = []
        for (name, kind), value in zip(compiled.outputs, values, strict=True):
            text_value = _render(value, kind, region)
            if text_value is not None:
                row.append({"field": name, "value": text_value})
        rows.append(row)
    return QueryResult(rows, table.num_rows, int(matched), scanned_bytes)


def _render(value: Any, kind: str, region: str) -> str | None:
    if value is None:
        return None
    if kind == "ptr":
        return base64.b64encode(f"{region}|{value}".encode()).decode("ascii")
    if kind == "time":
        moment = datetime.fromtimestamp(float(value) / 1000, UTC)
        return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)
