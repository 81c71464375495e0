"""What every StyleFinder process tells its operators: Prometheus metrics, defined once (names and units as the
ecosystem writes them: snake case, base units, counters ending in _total), and log lines as JSON carrying the id
of the request being served. The gateway and the embedding service serve the metrics at /metrics; a worker
process serves them on its own port (`stylefinder worker --metrics-port`)."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

# The request a line of work belongs to: set by the gateway for each request, carried into the indexing tasks it
# queues, set again by the worker that runs them.
REQUEST_ID: ContextVar[str | None] = ContextVar("stylefinder_request_id", default=None)

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "stylefinder_http_requests_total",
    "HTTP requests answered, by route template and status",
    ["route", "method", "status"],
)
SEARCH_SECONDS = Histogram(
    "stylefinder_search_duration_seconds",
    "Time of a search by query kind (photo, sketch, text, like, joined by +) and stage (read, decode, embed, store, "
    "total)",
    ["kind", "stage"],
    buckets=SECONDS,
)
RATE_LIMITED = Counter("stylefinder_rate_limited_total", "Requests refused (429) over a key's or an address's rate")
INDEXED_POINTS = Gauge("stylefinder_indexed_points", "Points in a variant's collection", ["variant"])
UNINDEXED_POINTS = Gauge(
    "stylefinder_unindexed_points", "Points of a variant no search graph covers yet (searched exactly)", ["variant"]
)
QUEUE_DEPTH = Gauge("stylefinder_queue_depth", "Items of unfinished jobs not indexed yet")
JOBS = Counter("stylefinder_jobs_total", "Jobs finished, by outcome (succeeded, partly_failed, failed)", ["outcome"])
BATCHES = Counter("stylefinder_index_batches_total", "Index batches handled by this process")
RETRIES = Counter("stylefinder_index_retries_total", "Items sent back to be tried again after a transient failure")
ITEM_FAILURES = Counter(
    "stylefinder_item_failures_total",
    "Items that failed for good, by cause (fetch, decode, model, service, invalid, refused, bug)",
    ["cause"],
)
EMBED_BATCH = Histogram(
    "stylefinder_embed_batch_size", "Items per forward pass, by lane", ["lane"], buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
EMBED_SECONDS = Histogram(
    "stylefinder_embed_forward_seconds", "Time of a forward pass, by lane", ["lane"], buckets=SECONDS
)
LANE_WAIT = Histogram(
    "stylefinder_embed_lane_wait_seconds",
    "Time from queueing items to having their embeddings (the wait for a pass, and the pass), by lane",
    ["lane"],
    buckets=SECONDS,
)


def exposition() -> tuple[bytes, str]:
    """This process's metrics in Prometheus's text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id where one is being served, and an
    exception's traceback. Only what the code put in the message: never a header, a key or a photo."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(json_lines: bool, level: int) -> None:
    """The process's one log handler, on stderr: JSON lines, or text for a person at a terminal."""
    handler = logging.StreamHandler()
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(JsonLines() if json_lines else text)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warning is a log line like any other
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every URL fetched, signed CDN links included
