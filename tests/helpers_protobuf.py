"""An independent reader of Perfetto traces for the tests: a generic protobuf wire-format
walker (tags, varints, fixed64, length-delimited fields; no schema) and, on top of it, just
the field numbers of the documented messages the export uses (``docs/perfetto.md``)."""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

Field = tuple[int, int, Any]  # (number, wire type, int or bytes)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos
        assert shift < 70, "varint longer than 10 bytes"


def walk(buf: bytes) -> list[Field]:
    """Every top-level field of one message, in order."""
    out: list[Field] = []
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        assert number > 0, "field number 0"
        if wire_type == 0:
            value, pos = read_varint(buf, pos)
        elif wire_type == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire_type == 2:
            size, pos = read_varint(buf, pos)
            value, pos = bytes(buf[pos:pos + size]), pos + size
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
        assert pos <= len(buf), "field runs past the end of its message"
        out.append((number, wire_type, value))
    return out


def one(fields: list[Field], number: int, wire_type: int | None = None) -> Any:
    values = [v for n, w, v in fields if n == number and wire_type in (None, w)]
    assert len(values) <= 1, f"field {number} repeated"
    return values[0] if values else None


def many(fields: list[Field], number: int, wire_type: int | None = None) -> list[Any]:
    return [v for n, w, v in fields if n == number and wire_type in (None, w)]


@dataclass
class Event:
    ts: int
    kind: int  # 1 begin, 2 end, 3 instant
    track: int
    name: str | None
    category: str | None
    args: dict[str, Any]
    flows: list[int]
    terminating: list[int]
    value: float | int | None = None  # a counter's counter_value or double_counter_value


@dataclass
class Decoded:
    """Track descriptors by uuid, events per track in file order, packet count."""

    tracks: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: dict[int, list[Event]] = field(default_factory=lambda: defaultdict(list))
    packets: int = 0


def _interned(fields: list[Field], number: int) -> dict[int, str]:
    out = {}
    for entry in many(fields, number, 2):
        sub = walk(entry)
        out[one(sub, 1, 0)] = one(sub, 2, 2).decode("utf-8")
    return out


def _track(desc: bytes) -> dict[str, Any]:
    fields = walk(desc)
    out: dict[str, Any] = {"uuid": one(fields, 1, 0), "parent": one(fields, 5, 0)}
    if (name := one(fields, 2, 2)) is not None:
        out["name"] = name.decode("utf-8")
    if (process := one(fields, 3, 2)) is not None:
        sub = walk(process)
        out["pid"], out["process_name"] = one(sub, 1, 0), one(sub, 6, 2).decode("utf-8")
    if (counter := one(fields, 8, 2)) is not None:
        sub = walk(counter)
        out["counter"] = {"unit": one(sub, 3, 0), "unit_name": (
            one(sub, 6, 2) or b"").decode("utf-8")}
    if (thread := one(fields, 4, 2)) is not None:
        sub = walk(thread)
        out["pid"], out["tid"] = one(sub, 1, 0), one(sub, 2, 0)
        out["thread_name"] = one(sub, 5, 2).decode("utf-8")
    return out


def _annotation(raw: bytes, names: dict[int, str], strings: dict[int, str]
                ) -> tuple[str, Any]:
    sub = walk(raw)
    name = names[one(sub, 1, 0)]
    if (text := one(sub, 6, 2)) is not None:
        return name, text.decode("utf-8")
    if (iid := one(sub, 17, 0)) is not None:
        return name, strings[iid]
    value = one(sub, 4, 0)
    return name, value - (1 << 64) if value >= 1 << 63 else value


def _counter_value(event: list[Field]) -> float | int | None:
    """``counter_value`` (int64, field 30) or ``double_counter_value`` (fixed64, 44)."""
    if (value := one(event, 30, 0)) is not None:
        return int(value - (1 << 64) if value >= 1 << 63 else value)
    if (bits := one(event, 44, 1)) is not None:
        return float(struct.unpack("<d", bits.to_bytes(8, "little"))[0])
    return None


def decode(data: bytes) -> Decoded:
    """Checks the sequence rules on the way: interned ids are defined (on the packet's own
    sequence, after a state-cleared packet) before use; tracks are described before use."""
    out = Decoded()
    state: dict[int, dict[str, dict[int, str]]] = {}
    for number, wire_type, packet in walk(data):
        assert (number, wire_type) == (1, 2), "a Trace holds only packets (field 1)"
        out.packets += 1
        fields = walk(packet)
        sequence = one(fields, 10, 0)
        flags = one(fields, 13, 0) or 0
        if flags & 1:
            state[sequence] = {"names": {}, "categories": {}, "args": {}, "strings": {}}
        if (interned := one(fields, 12, 2)) is not None:
            sub = walk(interned)
            seq = state[sequence]  # KeyError: interned data before the state was cleared
            seq["categories"].update(_interned(sub, 1))
            seq["names"].update(_interned(sub, 2))
            seq["args"].update(_interned(sub, 3))
            seq["strings"].update(_interned(sub, 29))
        if (desc := one(fields, 60, 2)) is not None:
            track = _track(desc)
            out.tracks[track["uuid"]] = track
        if (raw := one(fields, 11, 2)) is not None:
            ev = walk(raw)
            seq = state[sequence]
            if one(ev, 10, 0) is not None or many(ev, 4, 2):
                assert flags & 2, "an event with interned ids must say it needs the state"
            uuid = one(ev, 11, 0)
            assert uuid in out.tracks, "event on a track not described yet"
            name_iid = one(ev, 10, 0)
            name = one(ev, 23, 2)
            cats = many(ev, 3, 0)
            out.events[uuid].append(Event(
                one(fields, 8, 0), one(ev, 9, 0), uuid,
                seq["names"][name_iid] if name_iid is not None else
                (name.decode("utf-8") if name is not None else None),
                seq["categories"][cats[0]] if cats else None,
                dict(_annotation(a, seq["args"], seq["strings"]) for a in many(ev, 4, 2)),
                many(ev, 47, 1), many(ev, 48, 1), _counter_value(ev)))
            assert not many(ev, 47, 0) and not many(ev, 48, 0), "flow ids must be fixed64"
    return out


def slices(events: list[Event]) -> list[tuple[int, int, Event]]:
    """``(start, end, begin event)`` of a track's slices (instants: end = start); asserts
    that begins and ends pair up as a stack in time order."""
    out: list[tuple[int, int, Event]] = []
    stack: list[Event] = []
    last = -1
    for ev in events:
        assert ev.ts >= last, "events of a sequence out of time order"
        last = ev.ts
        assert ev.kind != 4, "a counter sample on a slice track"
        if ev.kind == 1:
            stack.append(ev)
        elif ev.kind == 2:
            begin = stack.pop()
            out.append((begin.ts, ev.ts, begin))
        else:
            assert ev.kind == 3
            out.append((ev.ts, ev.ts, ev))
    assert not stack, "slices left open"
    return out
