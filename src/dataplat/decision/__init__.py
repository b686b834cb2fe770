"""The real-time decision service: event -> features -> strategy rules -> model score -> offer.

Modules, one concern each:

* :mod:`~dataplat.decision.events` - the event a decision answers, and its validation;
* :mod:`~dataplat.decision.strategy` - strategy YAML files (what marketing edits), validated
  with file, line and field for every problem at once;
* :mod:`~dataplat.decision.rules` - applying a strategy: segment x event x timing x product x
  channel, frequency caps, do-not-disturb hours, channel choice (pure functions);
* :mod:`~dataplat.decision.warehouse` - a bounded async connection pool, the customer's
  features in one prepared query, the ``bank.decisions`` row and its insert;
* :mod:`~dataplat.decision.features` - the per-worker cache of customers' features;
* :mod:`~dataplat.decision.ledger` - recent decisions of every worker (replays, caps);
* :mod:`~dataplat.decision.record` - recording on the DECISIONS stream, idempotent by event
  id, and the sink that writes the stream into the warehouse;
* :mod:`~dataplat.decision.engine` - one decision from end to end, shared by the HTTP API
  and the stream consumer;
* :mod:`~dataplat.decision.consumer` - the JetStream consumer of ``bank.events.>``;
* :mod:`~dataplat.decision.metrics` - Prometheus metrics;
* :mod:`~dataplat.decision.service` - the ASGI application and ``python -m dataplat.decision.service``.
"""
