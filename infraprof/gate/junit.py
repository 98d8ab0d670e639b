"""JUnit XML (Jenkins/Ant flavour, as read by Jenkins, GitLab, Azure, CircleCI).

One ``<testsuite name="infraprof.gate">`` holding one ``<testcase>`` per metric:
``classname`` is the metric family, ``time`` is the candidate value in seconds for ``*_ns``
metrics (0 otherwise), ``<failure>`` carries the numbers of a failing metric, ``<skipped>``
marks inconclusive/missing metrics that do not fail, the suite's ``<properties>`` hold each
metric's base and cand values (``<metric>:base``), and each testcase's ``<system-out>`` lists
``key=value`` lines (base, cand, change, CI, p-value, sample counts).
Validates against ``tests/data/junit.xsd``; characters XML 1.0 forbids (ESC, BEL, NUL in a
name) are shown escaped (``\\x1b``) so the document stays well-formed.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from infraprof.gate.verdict import GateResult, MetricResult, Verdict
from infraprof.text_safety import xml_text


def _props(r: MetricResult) -> dict[str, str]:
    out = {"verdict": r.verdict.value, "unit": r.unit, "direction": r.policy.direction,
           "gated": str(r.gated).lower(), "n_base": str(r.n_base), "n_cand": str(r.n_cand),
           "runs_base": str(r.runs_base), "runs_cand": str(r.runs_cand)}
    for key, value in (("base", r.base), ("cand", r.cand), ("change", r.change),
                       ("p_value", r.p_value), ("threshold", r.threshold)):
        if value is not None:
            out[key] = repr(float(value))
    if r.ci is not None:
        out["ci_low"], out["ci_high"] = repr(r.ci[0]), repr(r.ci[1])
    return out


def _make_well_formed(root: ET.Element) -> None:
    """XML 1.0 forbids most control characters even as references: show them escaped."""
    for element in root.iter():
        element.attrib = {key: xml_text(value) for key, value in element.attrib.items()}
        if element.text:
            element.text = xml_text(element.text)


def render_junit(result: GateResult) -> str:
    """The XML document as text (UTF-8 declaration included)."""
    failures = sum(r.failed for r in result.results)
    skipped = sum((not r.failed) and r.verdict in (Verdict.INCONCLUSIVE, Verdict.MISSING)
                  for r in result.results)
    suite = ET.Element("testsuite", {
        "name": "infraprof.gate", "tests": str(len(result.results)),
        "failures": str(failures), "errors": "0", "skipped": str(skipped), "time": "0",
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": socket.gethostname() or "localhost",
    })
    props = ET.SubElement(suite, "properties")
    for key, value in (("alpha", repr(result.policy.alpha)), ("policy", result.policy.source),
                       ("base", ";".join(result.base_sources)),
                       ("cand", ";".join(result.cand_sources))):
        ET.SubElement(props, "property", {"name": key, "value": value})
    for r in result.results:
        for key in ("base", "cand"):
            value = getattr(r, key)
            if value is not None:
                ET.SubElement(props, "property", {"name": f"{r.metric}:{key}",
                                                  "value": repr(float(value))})
    for r in result.results:
        seconds = (r.cand or 0.0) / 1e9 if r.unit == "ns" and r.cand and r.cand > 0 else 0.0
        case = ET.SubElement(suite, "testcase", {
            "name": r.metric, "classname": f"infraprof.gate.{r.metric.split(':', 1)[0]}",
            "time": f"{seconds:.9f}"})
        if r.failed:
            failure = ET.SubElement(case, "failure", {"message": r.describe(),
                                                      "type": r.verdict.value})
            failure.text = r.describe()
        elif r.verdict in (Verdict.INCONCLUSIVE, Verdict.MISSING):
            ET.SubElement(case, "skipped", {"message": r.describe()})
        ET.SubElement(case, "system-out").text = "\n".join(
            f"{key}={value}" for key, value in _props(r).items())
    _make_well_formed(suite)
    ET.indent(suite)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + ET.tostring(suite, encoding="unicode") + "\n")
