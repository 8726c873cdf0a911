"""A JSON list read element by element in bounded memory (the stdlib's C decoder on a sliding buffer).

About twice as fast as ijson's C backend on Label Studio exports and without a dependency:
each element is decoded by `json.JSONDecoder.raw_decode`; text is read in chunks, and an
element cut by a chunk boundary is decoded again once the next chunk is in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, TextIO, cast

CHUNK_CHARS = 1 << 23  # 8 Mi characters per read
MAX_ELEMENT_CHARS = 1 << 26  # one element above 64 Mi characters is refused, not buffered
_CUT_TOKEN_CHARS = 16
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class JSONStreamError(ValueError):
    """The text is not a JSON list (where: 'byte 0', 'task #i' or 'after task #i')."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")
        self.where, self.problem = where, problem


class JSONListStream:
    def __init__(self, text: TextIO, element: str = "task"):
        self.text, self.element = text, element
        self.buf, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def __iter__(self) -> Iterator[Any]:
        self._skip_whitespace()
        first = self.buf[self.pos : self.pos + 1]
        if first != "[":
            what = "a JSON object" if first == "{" else "not JSON"
            raise JSONStreamError("byte 0", f"{what}; expected a JSON list of {self.element}s")
        self.pos += 1
        self._skip_whitespace()
        if self.buf[self.pos : self.pos + 1] == "]":
            self.pos += 1
            return self._expect_end(0)
        index = 0
        while True:
            yield self._element(index)
            index += 1
            self._skip_whitespace()
            sep = self.buf[self.pos : self.pos + 1]
            self.pos += 1
            if sep == "]":
                return self._expect_end(index)
            if sep != ",":
                where = f"after {self.element} #{index - 1}"
                raise JSONStreamError(
                    where,
                    "truncated JSON (the list is not closed)"
                    if not sep
                    else f"invalid JSON (expected ',' or ']', found {sep!r})",
                )
            self._skip_whitespace()

    def _element(self, index: int) -> Any:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self._may_continue(exc) and self._fill():
                    continue
                problem = "truncated JSON" if self.eof and self._may_continue(exc) else "invalid JSON"
                raise JSONStreamError(f"{self.element} #{index}", f"{problem} ({exc.msg})") from None
            if len(self.buf) - end < _CUT_TOKEN_CHARS and self._fill():
                continue  # a number may go on in the next chunk (`0` of `0.5`): decode again
            self.pos = end
            return value

    def _may_continue(self, exc: json.JSONDecodeError) -> bool:
        """Whether the error may only mean 'the element goes on past the buffer'."""
        if len(self.buf) - self.pos > MAX_ELEMENT_CHARS:
            return False
        # a cut literal (`nu`), number, escape (`\u00`) or key fails within its last few characters;
        # a cut string fails at its opening quote
        return len(self.buf) - exc.pos <= _CUT_TOKEN_CHARS or exc.msg.startswith("Unterminated string")

    def _expect_end(self, count: int) -> None:
        self._skip_whitespace()
        if self.pos < len(self.buf):
            raise JSONStreamError(f"after {self.element} #{count - 1}", "invalid JSON (data after the list)")

    def _skip_whitespace(self) -> None:
        while True:
            # the pattern matches the empty string, so it always matches
            self.pos = cast(re.Match[str], _WHITESPACE.match(self.buf, self.pos)).end()
            if self.pos < len(self.buf) or not self._fill():
                return

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.text.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True
