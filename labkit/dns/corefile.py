"""The Corefile, read the way CoreDNS reads it (coredns/caddy v1.1.1 `caddyfile`: lexer, parser, dispenser).

- Lexing: tokens are separated by white space; `"..."` is one token (only `\\"` is an escape); an unquoted `#`
  starts a comment to the end of the line.
- A server block is its keys (`.:53`, `example.org`, `dns://10.0.0.0/24:1053`, ...) and its directives, each
  taking the rest of its line plus any `{ ... }` sub-block. All occurrences of one directive in a block are
  appended to one token list (`ServerBlock.tokens[name]`); the plugin's setup reads them with a `Dispenser`.
- `{$NAME}` / `{%NAME%}` are replaced by environment variables; `import FILE|GLOB|SNIPPET` splices tokens in;
  `(name) { ... }` defines a snippet.
- Errors read exactly as CoreDNS prints them: `<file>:<line> - Error during parsing: <message>`.

`config_hash` is the reload plugin's SHA512 over `json.Marshal` of the parsed blocks (the value it logs as
"Running configuration SHA512 = ...").
"""

from __future__ import annotations

import glob as globmod
import hashlib
import os
from collections.abc import Collection
from dataclasses import dataclass, field


class CorefileError(Exception):
    """A Corefile that cannot be read or set up; str() is CoreDNS's message."""


@dataclass(slots=True)
class Token:
    file: str  # "" for the Corefile itself, the absolute path for imported files
    line: int
    text: str


@dataclass(slots=True)
class ServerBlock:
    keys: list[str]
    tokens: dict[str, list[Token]] = field(default_factory=dict)  # directive → its tokens, in file order


def lex(text: str) -> list[Token]:
    """Split a Corefile into tokens (caddyfile lexer.next)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    tokens: list[Token] = []
    val: list[str] = []
    line = 1
    start_line = 1
    comment = quoted = escaped = False
    for ch in text:
        if quoted:
            if not escaped:
                if ch == "\\":
                    escaped = True
                    continue
                if ch == '"':
                    quoted = False
                    tokens.append(Token("", start_line, "".join(val)))
                    val = []
                    continue
            if ch == "\n":
                line += 1
            if escaped and ch != '"':
                val.append("\\")
            val.append(ch)
            escaped = False
            continue
        if ch.isspace():
            if ch == "\r":
                continue
            if ch == "\n":
                line += 1
                comment = False
            if val:
                tokens.append(Token("", start_line, "".join(val)))
                val = []
            continue
        if ch == "#":
            comment = True
        if comment:
            continue
        if not val:
            start_line = line
            if ch == '"':
                quoted = True
                continue
        val.append(ch)
    if val:
        tokens.append(Token("", start_line, "".join(val)))
    return tokens


def replace_env(text: str) -> str:
    """`{%NAME%}` then `{$NAME}` → the environment variable's value (empty when unset)."""
    for start, end in (("{%", "%}"), ("{$", "}")):
        i = text.find(start)
        while i != -1:
            j = text.find(end, i)
            if j == -1 or j <= i + len(start):
                break
            ref = text[i : j + len(end)]
            text = text.replace(ref, os.environ.get(ref[len(start) : -len(end)], ""))
            i = text.find(start)
    return text


class Dispenser:
    """A cursor over tokens, with caddy's helpers and error messages (caddyfile/dispenser.go)."""

    def __init__(self, filename: str, tokens: list[Token]) -> None:
        self.filename = filename
        self.tokens = tokens
        self.cursor = -1
        self.nesting = 0

    def _breaks(self, i: int) -> int:
        return self.tokens[i].text.count("\n") if 0 <= i < len(self.tokens) else 0

    def next(self) -> bool:
        if self.cursor < len(self.tokens) - 1:
            self.cursor += 1
            return True
        return False

    def next_arg(self) -> bool:
        """The next token if it is on the same line."""
        if self.cursor < 0:
            self.cursor += 1
            return True
        if self.cursor >= len(self.tokens):
            return False
        if self.cursor < len(self.tokens) - 1:
            cur, nxt = self.tokens[self.cursor], self.tokens[self.cursor + 1]
            if cur.file == nxt.file and cur.line + self._breaks(self.cursor) == nxt.line:
                self.cursor += 1
                return True
        return False

    def next_block(self) -> bool:
        """Enter (or continue) a `{ ... }` block opened on the current line; False at its end."""
        if self.nesting > 0:
            self.next()
            if self.val() == "}":
                self.nesting -= 1
                return False
            return True
        if not self.next_arg():
            return False
        if self.val() != "{":
            self.cursor -= 1
            return False
        self.next()
        if self.val() == "}":
            return False
        self.nesting += 1
        return True

    def val(self) -> str:
        return self.tokens[self.cursor].text if 0 <= self.cursor < len(self.tokens) else ""

    def line(self) -> int:
        return self.tokens[self.cursor].line if 0 <= self.cursor < len(self.tokens) else 0

    def file(self) -> str:
        if 0 <= self.cursor < len(self.tokens) and self.tokens[self.cursor].file:
            return self.tokens[self.cursor].file
        return self.filename

    def remaining_args(self) -> list[str]:
        args = []
        while self.next_arg():
            if self.val() == "{":
                self.cursor -= 1
                break
            args.append(self.val())
        return args

    def is_new_line(self) -> bool:
        if self.cursor < 1:
            return True
        if self.cursor > len(self.tokens) - 1:
            return False
        prev, cur = self.tokens[self.cursor - 1], self.tokens[self.cursor]
        return prev.file != cur.file or prev.line + self._breaks(self.cursor - 1) < cur.line

    # -- errors, worded as caddy words them --

    def err(self, msg: str) -> CorefileError:
        return CorefileError(f"{self.file()}:{self.line()} - Error during parsing: {msg}")

    def arg_err(self) -> CorefileError:
        if self.val() == "{":
            return self.err("Unexpected token '{', expecting argument")
        return self.err(f"Wrong argument count or unexpected line ending after '{self.val()}'")

    def syntax_err(self, expected: str) -> CorefileError:
        return CorefileError(
            f"{self.file()}:{self.line()} - Syntax error: Unexpected token '{self.val()}', expecting '{expected}'")

    def eof_err(self) -> CorefileError:
        return self.err("Unexpected EOF")


class _Parser(Dispenser):
    """caddyfile/parse.go: server blocks, directives, imports and snippets."""

    def __init__(self, filename: str, text: str, valid: Collection[str] | None) -> None:
        super().__init__(filename, lex(text))
        self.valid = valid
        self.block = ServerBlock([])
        self.eof = False
        self.snippets: dict[str, list[Token]] = {}

    def parse_all(self) -> list[ServerBlock]:
        blocks = []
        while self.next():
            self.block = ServerBlock([])
            self._begin()
            if self.block.keys:
                blocks.append(self.block)
        return blocks

    def _begin(self) -> None:
        if not self.tokens:
            return
        self._addresses()
        if self.eof:
            return
        keys = self.block.keys
        if len(keys) == 1 and keys[0].startswith("(") and keys[0].endswith(")"):
            name = keys[0][1:-1]
            if name in self.snippets:
                raise self.err(f"redeclaration of previously declared snippet {name}")
            self.snippets[name] = self._snippet_tokens()
            self.block.keys = []
            return
        self._block_contents()

    def _addresses(self) -> None:
        expecting_another = False
        while True:
            tkn = replace_env(self.val())
            if tkn == "import" and self.is_new_line():
                self._do_import()
                continue
            if tkn == "{":
                if expecting_another:
                    raise self.err(f"Expected another address but had '{tkn}' - check for extra comma")
                break
            if tkn:
                expecting_another = tkn.endswith(",")
                self.block.keys.append(tkn[:-1] if expecting_another else tkn)
            has_next = self.next()
            if expecting_another and not has_next:
                raise self.eof_err()
            if not has_next:
                self.eof = True
                break
            if not expecting_another and self.is_new_line():
                break

    def _block_contents(self) -> None:
        braced = self.val() == "{"
        if not braced:
            self.cursor -= 1
        self._directives()
        if braced and self.val() != "}":
            raise self.syntax_err("}")

    def _directives(self) -> None:
        while self.next():
            if self.val() == "}":
                break
            if self.val() == "import":
                self._do_import()
                self.cursor -= 1
                continue
            self._directive()

    def _do_import(self) -> None:
        if not self.next_arg():
            raise self.arg_err()
        pattern = replace_env(self.val())
        if not pattern:
            raise self.err("Import requires a non-empty filepath")
        if self.next_arg():
            raise self.err("Import takes only one argument (glob pattern or file)")
        before, after = self.tokens[: self.cursor - 1], self.tokens[self.cursor + 1 :]
        imported = list(self.snippets[pattern]) if pattern in self.snippets else self._import_files(pattern)
        self.tokens = before + imported + after
        self.cursor -= 1

    def _import_files(self, pattern: str) -> list[Token]:
        base = os.path.dirname(os.path.abspath(self.file()))
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        if full.count("*") > 1 or full.count("?") > 1 or ("[" in full and "]" in full):
            raise self.err(f"Glob pattern may only contain one wildcard (*), but has others: {full}")
        matches = sorted(globmod.glob(full))
        if not matches:
            if any(c in full for c in "*?[]"):
                print(f"[WARNING] No files matching import glob pattern: {pattern}", flush=True)
            else:
                raise self.err(f"File to import not found: {pattern}")
        out: list[Token] = []
        for path in matches:
            if os.path.isdir(path):
                raise self.err(f"Could not import {path}: is a directory")
            try:
                with open(path) as f:
                    text = f.read()
            except OSError as exc:
                raise self.err(f"Could not import {path}: {exc.strerror}") from None
            out += [Token(os.path.abspath(path), t.line, t.text) for t in lex(text)]
        return out

    def _directive(self) -> None:
        name = replace_env(self.val())
        if self.valid is not None and name not in self.valid:
            raise self.err(f"Unknown directive '{name}'")
        toks = self.block.tokens.setdefault(name, [])
        toks.append(self.tokens[self.cursor])
        nesting = 0
        while self.next():
            v = self.val()
            if v == "{":
                nesting += 1
            elif self.is_new_line() and nesting == 0:
                self.cursor -= 1
                break
            elif v == "}" and nesting > 0:
                nesting -= 1
            elif v == "}" and nesting == 0:
                raise self.err("Unexpected '}' because no matching opening brace")
            elif v == "import" and self.is_new_line():
                self._do_import()
                self.cursor -= 1
                continue
            tok = self.tokens[self.cursor]
            tok = self.tokens[self.cursor] = Token(tok.file, tok.line, replace_env(tok.text))
            toks.append(tok)
        if nesting > 0:
            raise self.eof_err()

    def _snippet_tokens(self) -> list[Token]:
        if self.val() != "{":
            raise self.syntax_err("{")
        count = 1
        out: list[Token] = []
        while self.next():
            if self.val() == "}":
                count -= 1
                if count == 0:
                    break
            if self.val() == "{":
                count += 1
            out.append(self.tokens[self.cursor])
        if count != 0:
            raise self.syntax_err("}")
        return out


def parse(filename: str, text: str, valid_directives: Collection[str] | None = None) -> list[ServerBlock]:
    """Server blocks of a Corefile. With `valid_directives`, an unknown directive is an error (as at start-up);
    without, any name is accepted (as the reload plugin parses)."""
    return _Parser(filename, text, valid_directives).parse_all()


# ------------------------------------------------------------------------------------------- reload's hash


def _go_json_string(s: str) -> str:
    """A string as Go's encoding/json writes it (HTML-safe escaping, as go1.21)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or ch in "<>&" or o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def config_json(blocks: list[ServerBlock]) -> str:
    """json.Marshal([]ServerBlock): struct fields in declaration order, map keys sorted."""
    parts = []
    for b in blocks:
        keys = "[" + ",".join(_go_json_string(k) for k in b.keys) + "]"
        dirs = []
        for name in sorted(b.tokens):
            toks = ",".join(
                f'{{"File":{_go_json_string(t.file)},"Line":{t.line},"Text":{_go_json_string(t.text)}}}'
                for t in b.tokens[name])
            dirs.append(f"{_go_json_string(name)}:[{toks}]")
        parts.append(f'{{"Keys":{keys},"Tokens":{{{",".join(dirs)}}}}}')
    return "[" + ",".join(parts) + "]"


def config_hash(filename: str, text: str) -> str:
    """The reload plugin's SHA512 of a Corefile (raises CorefileError if it does not parse)."""
    return hashlib.sha512(config_json(parse(filename, text)).encode()).hexdigest()


__all__ = ["CorefileError", "Dispenser", "ServerBlock", "Token", "config_hash", "config_json", "lex", "parse"]
