"""Names from traces may hold ANSI/OSC escapes, NUL, newlines or bidi overrides: make them inert.

* :func:`printable` — one name for any text output: every C0 control (newline, CR and tab
  included), DEL, C1 control, bidi override and line/paragraph separator is shown escaped
  (``\\n``, ``\\x1b``, ``\\u202e``), so a name can neither colour nor move the terminal
  cursor, nor start a new line (``::error::`` in a CI log).
* :func:`safe_text` — the last pass over a rendered text document: the same escapes for every
  control character except the document's own newlines and tabs (and ESC when infraprof
  coloured the output itself), and lines that a CI runner would execute as a workflow
  command (``::cmd::``, ``##[cmd]``, leading blanks ignored as the GitHub runner does) get a
  backslash before the command.
* :func:`safe_json` — JSON text with DEL and C1 controls (which ``json.dumps`` with
  ``ensure_ascii=False`` leaves raw) written as ``\\u`` escapes; the parsed value is unchanged.
* :func:`xml_text` — text allowed in XML 1.0 (which forbids most C0 controls even as
  character references): forbidden characters are shown escaped as in :func:`printable`.
"""

from __future__ import annotations

import re

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE_RE = re.compile(f"[{_UNSAFE}]")
_UNSAFE_IN_DOC_RE = re.compile(f"[{_UNSAFE.replace(chr(0) + '-' + chr(0x1f), '')}"
                               "\x00-\x08\x0b-\x1f]")
_UNSAFE_IN_ANSI_DOC_RE = re.compile(f"[{_UNSAFE.replace(chr(0) + '-' + chr(0x1f), '')}"
                                    "\x00-\x08\x0b-\x1a\x1c-\x1f]")
_JSON_RAW_RE = re.compile("[\x7f-\x9f]")
_XML_FORBIDDEN_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_WORKFLOW_COMMAND_RE = re.compile(r"^(\s*)(::|##\[)", re.MULTILINE)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, keep: str = "") -> str:
    """``text`` as one inert line: control and bidi characters shown escaped (except those in
    ``keep``, for a caller that escapes them its own way)."""
    if keep:
        return _UNSAFE_RE.sub(lambda m: m.group(0) if m.group(0) in keep else _escape(m),
                              str(text))
    return _UNSAFE_RE.sub(_escape, str(text))


def safe_text(document: str, ansi: bool = False, workflow_commands: bool = False) -> str:
    """A rendered document made inert: controls other than ``\\n``/``\\t`` (and ESC when
    ``ansi``) escaped; lines that look like CI workflow commands get a backslash unless
    ``workflow_commands`` (``--format github``, whose annotations are escaped already)."""
    pattern = _UNSAFE_IN_ANSI_DOC_RE if ansi else _UNSAFE_IN_DOC_RE
    out = pattern.sub(_escape, document)
    if not workflow_commands:
        out = _WORKFLOW_COMMAND_RE.sub(r"\1\\\2", out)
    return out


def safe_json(document: str) -> str:
    """JSON text with raw DEL/C1 controls written as ``\\u00XX`` (same parsed value)."""
    return _JSON_RAW_RE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", document)


def xml_text(text: object) -> str:
    """``text`` with the characters XML 1.0 forbids shown escaped (``\\x1b``)."""
    return _XML_FORBIDDEN_RE.sub(_escape, str(text))
