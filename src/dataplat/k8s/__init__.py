"""The Kubernetes target: manifests rendered from ``charts/`` and an inventory, validated
offline (:mod:`~dataplat.k8s.render`, :mod:`~dataplat.k8s.validate`), the diff an apply
would make (:mod:`~dataplat.k8s.apply`), and the cluster side: the client layer on the
official ``kubernetes`` client (:mod:`~dataplat.k8s.cluster`), ``up`` / ``status`` / ``down``
(:mod:`~dataplat.k8s.applier`, :mod:`~dataplat.k8s.readiness`, CLI in
:mod:`~dataplat.k8s.targetcli`) and drill faults injected through the API
(:mod:`~dataplat.k8s.faults`)."""
