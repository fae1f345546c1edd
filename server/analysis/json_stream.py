"""The prose of a tool call, decoded while its JSON is still arriving.

A forced tool call streams its input as pieces of JSON text (``input_json_delta``),
split anywhere: inside a key, inside an escape, between the two halves of a surrogate
pair. ``FieldText`` follows that text character by character and gives back, piece by
piece, the decoded value of one top-level string field (the ``rationale``), so the user
reads the prose as the model writes it instead of when the whole call is complete.

It is a small lexer, not a parser: it tracks nesting, strings, escapes and whether a
string at the top level is a key or a value. Malformed JSON is not its business (the
complete input is validated at the end); it never raises on odd input, it only stops
finding text. Joined, its pieces equal ``json.loads(whole)[field]`` for any split of a
valid document (a property test checks it).
"""

from __future__ import annotations

_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


class FieldText:
    __slots__ = (
        "_depth",
        "_escape",
        "_expect_key",
        "_field",
        "_in_string",
        "_key",
        "_last_key",
        "_pending_high",
        "_string_is_key",
        "_string_is_target",
        "_unicode",
        "done",
    )

    def __init__(self, field: str) -> None:
        self._field = field
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._unicode: str | None = None  # hex digits of a \\u escape being read
        self._pending_high: int | None = None  # a high surrogate awaiting its low half
        self._expect_key = False
        self._string_is_key = False
        self._string_is_target = False
        self._key: list[str] = []
        self._last_key: str | None = None
        #: The field's value has been read completely.
        self.done = False

    def feed(self, chunk: str) -> str:
        """Take the next piece of JSON text; return the field's text it completes."""
        out: list[str] = []
        for ch in chunk:
            if self._in_string:
                self._string_char(ch, out)
            elif ch == '"':
                self._open_string()
            elif ch in "{[":
                self._depth += 1
                self._expect_key = self._depth == 1 and ch == "{"
            elif ch in "}]":
                self._depth -= 1
            elif self._depth == 1 and ch == ",":
                self._expect_key = True
            elif self._depth == 1 and ch == ":":
                self._expect_key = False
        return "".join(out)

    def _open_string(self) -> None:
        self._in_string = True
        top = self._depth == 1
        self._string_is_key = top and self._expect_key
        self._string_is_target = (
            top and not self._expect_key and not self.done and self._last_key == self._field
        )
        self._key.clear()

    def _emit(self, text: str, out: list[str]) -> None:
        if self._string_is_target:
            out.append(text)
        elif self._string_is_key:
            self._key.append(text)

    def _string_char(self, ch: str, out: list[str]) -> None:
        if self._unicode is not None:
            self._unicode += ch
            if len(self._unicode) == 4:
                try:
                    code = int(self._unicode, 16)
                except ValueError:
                    code = 0xFFFD
                self._unicode = None
                self._code_point(code, out)
            return
        if self._escape:
            self._escape = False
            if ch == "u":
                self._unicode = ""
                return
            self._flush_high(out)
            self._emit(_SIMPLE_ESCAPES.get(ch, ch), out)
            return
        if ch == "\\":
            self._escape = True
            return
        self._flush_high(out)
        if ch == '"':
            self._close_string()
            return
        self._emit(ch, out)

    def _code_point(self, code: int, out: list[str]) -> None:
        if 0xD800 <= code <= 0xDBFF:
            self._flush_high(out)
            self._pending_high = code
            return
        if 0xDC00 <= code <= 0xDFFF and self._pending_high is not None:
            high, self._pending_high = self._pending_high, None
            self._emit(chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)), out)
            return
        self._flush_high(out)
        self._emit(chr(code) if not 0xD800 <= code <= 0xDFFF else "\ufffd", out)

    def _flush_high(self, out: list[str]) -> None:
        """A high surrogate not followed by its low half: the replacement character."""
        if self._pending_high is not None:
            self._pending_high = None
            self._emit("\ufffd", out)

    def _close_string(self) -> None:
        self._in_string = False
        if self._string_is_key:
            self._last_key = "".join(self._key)
        elif self._string_is_target:
            self.done = True
        if not self._string_is_key:
            self._last_key = None
        self._string_is_key = False
        self._string_is_target = False
