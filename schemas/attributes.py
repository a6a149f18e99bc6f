"""The attribute vocabulary that travels on OTLP spans: what the SDK writes, what the sink reads.

The carrier is OpenTelemetry spans (so the gateway, Kafka and any OTLP tooling need nothing
special), mapped as follows. The sink turns them into the tables named on the right.

=====================================  =======================================================
span (``orbitwatch.kind`` attribute)   becomes
=====================================  =======================================================
``experiment`` (root span, one trace   one ``experiments`` row; attributes ``orbitwatch.experiment.*``.
per experiment; re-sent on every       The final one (``orbitwatch.experiment.status`` =
status change: running/finished/failed) finished|failed) carries ``ended_at``.
``experiment.batch`` (child span,      its span *events*: event name ``metric`` → one
flushed every ~1 s while points         ``experiment_metrics`` row each (attributes ``name``, ``value``,
are pending)                           ``step``, ``epoch``, ``seq``; event time = point time);
                                       event ``param`` → ``experiment_params`` (``name``, ``value``);
                                       event ``other``/``tag``/``asset`` likewise.
``prediction.batch`` (one span per     production monitoring records: events ``prediction`` /
batch; ``orbitwatch.model.name`` /     ``label`` / ``reference``, each with the record's JSON in
``.version``)                          ``orbitwatch.payload`` (:mod:`orbitwatch.schemas.records`).
``llm``/``tool``/… from ``@track``     ``spans`` rows with LLM columns filled from ``gen_ai.*`` and
                                       ``orbitwatch.*`` attributes below.
``feedback``                           ``eval_scores`` rows (source ``sdk``).
=====================================  =======================================================

Metric points ride as span events rather than one span each because a span costs ~1 µs and
~200 bytes more than an event, and events keep the exact client timestamp of every point.
"""
from __future__ import annotations

# What kind of orbitwatch record a span carries (absent: an ordinary application span).
KIND = "orbitwatch.kind"
PROJECT = "orbitwatch.project"
WORKSPACE = "orbitwatch.workspace"
TENANT_HEADER = "orbitwatch-tenant"  # Kafka header stamped by the gateway, never from attributes
SCHEMA_HEADER = "orbitwatch-schema"  # Kafka header: payload schema version
PROJECT_HEADER = "orbitwatch-project"  # Kafka header: project bound to the API key (absent: from attributes)
SCHEMA_VERSION = "1"

# Experiments
EXPERIMENT_ID = "orbitwatch.experiment.id"
EXPERIMENT_NAME = "orbitwatch.experiment.name"
EXPERIMENT_STATUS = "orbitwatch.experiment.status"  # running | finished | failed
EXPERIMENT_STARTED_AT = "orbitwatch.experiment.started_at"  # epoch ns as string
EXPERIMENT_ENDED_AT = "orbitwatch.experiment.ended_at"
EXPERIMENT_TAGS = "orbitwatch.experiment.tags"  # JSON list
EXPERIMENT_SYSTEM = "orbitwatch.experiment.system"  # JSON object: git, python, host, packages, cmd
EVENT_METRIC = "metric"
EVENT_PARAM = "param"
EVENT_OTHER = "other"
EVENT_TAG = "tag"
EVENT_ASSET = "asset"

# LLM spans (what OTel GenAI semconv lacks)
SPAN_TYPE = "orbitwatch.span.type"  # llm | tool | retriever | agent | chain | guardrail | general
INPUT = "orbitwatch.input"  # JSON
OUTPUT = "orbitwatch.output"  # JSON
METADATA = "orbitwatch.metadata"  # JSON object
TAGS = "orbitwatch.tags"  # JSON list
COST = "orbitwatch.cost"  # total cost in USD, when the caller knows it
SESSION_ID = "orbitwatch.session.id"  # a.k.a. thread id
USER_ID = "orbitwatch.user.id"
CONTEXT = "orbitwatch.context"  # JSON list of context strings given to an LLM span explicitly
EXPECTED_OUTPUT = "orbitwatch.expected_output"
FEEDBACK_SCORES = "orbitwatch.feedback_scores"  # JSON list of {name, value, reason, category}
TRUNCATED = "orbitwatch.truncated"  # comma list of the fields that were truncated

# Production monitoring
PAYLOAD = "orbitwatch.payload"  # JSON
MODEL_NAME = "orbitwatch.model.name"
MODEL_VERSION = "orbitwatch.model.version"
# Int attributes of a ``reference`` event next to PAYLOAD: a feature's values split over several
# events (same created_at) carry their 0-based index and the total, so the sink can reassemble them.
REFERENCE_CHUNK = "chunk"
REFERENCE_CHUNKS = "chunks"

SPAN_TYPES = ("llm", "tool", "retriever", "agent", "chain", "guardrail", "general")
