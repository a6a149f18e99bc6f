"""Runners drive any :class:`orbitwatch.processors.base.Processor`.

* ``faust_app`` — over Kafka with faust-streaming (``orbitwatch worker``): one agent per
  processor, batches by size and time, offsets acknowledged only after ``handle`` returned and
  its emits were delivered, state snapshots in a changelog-backed faust table.
* ``embedded`` — over in-process queues (``orbitwatch up``), same processors, no Kafka.

Which processors exist is decided by :mod:`orbitwatch.processors.registry`.
"""
