"""Stream processors: plain operator classes (decode, normalise, drift, evals, alerts) driven by
either the faust-streaming worker (Kafka) or the embedded runner (in-process queues).

See :mod:`orbitwatch.processors.base` for the contract both runners rely on.
"""
