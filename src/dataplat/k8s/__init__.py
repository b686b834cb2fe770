"""The Kubernetes target: manifests rendered from ``charts/`` and an inventory, validated
offline (:mod:`~dataplat.k8s.render`, :mod:`~dataplat.k8s.validate`), and the diff an
apply would make (:mod:`~dataplat.k8s.apply`)."""
