"""What every bench shares: one percentile, one result writer, one block of machine information.

Benches run as modules from the repository root (``.venv/bin/python -m bench.next_steps.latency``),
so they import this package as ``bench.lib`` and the service as ``service``, with no path set up.

- :mod:`bench.lib.stats`: :func:`percentile` (nearest rank) and :func:`summary_ms`;
- :mod:`bench.lib.machine`: :func:`environment` (CPU, cores, memory, load, Python, library
  versions, the checkout's HEAD) and the process's memory;
- :mod:`bench.lib.results`: :func:`command_line`, :func:`write_result` (JSON, and Markdown with
  the command), :func:`table`, :func:`size_label`, :func:`duration_text`.
"""

from bench.lib.machine import dir_bytes, environment, machine_line, peak_rss_mb, rss_mb
from bench.lib.results import command_line, duration_text, files_digest, size_label, table, write_result
from bench.lib.stats import percentile, summary_ms

__all__ = [
    "command_line",
    "dir_bytes",
    "duration_text",
    "environment",
    "files_digest",
    "machine_line",
    "peak_rss_mb",
    "percentile",
    "rss_mb",
    "size_label",
    "summary_ms",
    "table",
    "write_result",
]
