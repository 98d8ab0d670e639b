"""Order findings by recoverable time and assemble the :class:`Report`."""

from infraprof.ranking.report import SCHEMA_VERSION, Report, build_report, rank

__all__ = ["SCHEMA_VERSION", "Report", "build_report", "rank"]
