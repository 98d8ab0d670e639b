"""``infraprof.outputs`` and ``infraprof.text_safety`` on their own (the CLI-level cases are in
``tests/test_hostile.py``)."""

from __future__ import annotations

import json
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers_devices import full_device, null_device
from hypothesis import given
from hypothesis import strategies as st

from infraprof.errors import OutputError, UsageError
from infraprof.outputs import is_stream, refuse_inputs, write_output
from infraprof.text_safety import printable, safe_json, safe_text, xml_text


def test_atomic_write_replaces_content_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o600)
    inode = target.stat().st_ino
    write_output(target, "new\n")
    assert target.read_text(encoding="utf-8") == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_ino != inode  # replaced, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_new_file_gets_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_output(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="disk full"):
        write_output(full_device(tmp_path / "devices"), "x" * 10000)
    with pytest.raises(OutputError, match="no such directory"):
        write_output(tmp_path / "missing" / "out.txt", "x")
    with pytest.raises(OutputError):
        write_output(Path("/proc/infraprof-test.txt"), "x")
    assert [p.name for p in tmp_path.iterdir()] == ["devices"]


def test_inputs_are_refused_through_links(tmp_path: Path) -> None:
    source = tmp_path / "in.sqlite"
    source.write_bytes(b"data")
    (tmp_path / "soft").symlink_to(source)
    os.link(source, tmp_path / "hard")
    for alias in ("in.sqlite", "soft", "hard"):
        with pytest.raises(UsageError, match="would overwrite the input"):
            write_output(tmp_path / alias, "x", inputs=[source])
    assert source.read_bytes() == b"data"
    refuse_inputs(tmp_path / "other.json", [source])  # absent: fine


def test_streams_are_recognised(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    assert is_stream(tmp_path / "fifo") and is_stream(null_device(tmp_path))
    assert is_stream(Path("/dev/stdout")) and is_stream(Path("/proc/self/fd/1"))
    assert not is_stream(tmp_path) and not is_stream(tmp_path / "absent")


def test_printable_escapes_every_control() -> None:
    assert printable("a\x1b[31mb\x00c\nd\re\tf\x7fg\x9bh\u202ei") == (
        "a\\x1b[31mb\\x00c\\nd\\re\\tf\\x7fg\\x9bh\\u202ei")
    assert printable("plain name<T>") == "plain name<T>"
    assert printable("a\nb", keep="\n") == "a\nb"


def test_safe_text_keeps_layout_and_neutralises_commands() -> None:
    doc = "row 1\tx\n  ::error::pwned\n##[group]x\nok \x1b[0m\n"
    assert safe_text(doc) == "row 1\tx\n  \\::error::pwned\n\\##[group]x\nok \\x1b[0m\n"
    assert safe_text("\x1b[1mbold\x1b[0m\n", ansi=True) == "\x1b[1mbold\x1b[0m\n"
    assert safe_text("::error ::x\n", workflow_commands=True) == "::error ::x\n"


@given(st.text())
def test_safe_json_keeps_the_value(text: str) -> None:
    document = json.dumps({"name": text}, ensure_ascii=False)
    safe = safe_json(document)
    assert json.loads(safe) == {"name": text}
    assert not any(0x7F <= ord(c) <= 0x9F for c in safe)


@given(st.text())
def test_xml_text_is_always_well_formed(text: str) -> None:
    element = ET.Element("t", {"name": xml_text(text)})
    element.text = xml_text(text)
    ET.fromstring(ET.tostring(element, encoding="unicode"))
