"""Elastic scaling: the Kubernetes HPA rule (:mod:`.hpa`) and a local pool supervisor (:mod:`.supervisor`)."""
