"""The client layer of the Kubernetes target: one cluster, reached with the official client.

:func:`connect` loads a kubeconfig (``--kubeconfig`` > ``KUBECONFIG`` > ``~/.kube/config``,
with ``--context``) or, inside a pod, the in-cluster service account, and returns a
:class:`Cluster`. Every object is resolved to its API resource through discovery (the
dynamic client), so custom resources (CloudNativePG's ``Cluster``, Multus'
``NetworkAttachmentDefinition`` ...) work like built-in kinds, and a kind the cluster does
not serve is reported with the operator that provides it (:class:`MissingAPIError`).

Writes are server-side apply (``PATCH`` with ``application/apply-patch+yaml``, field
manager ``dataplat``); conflicts with another manager are an error unless the caller
asks to force them. Objects are plain dicts in and out; credentials stay in the client's
configuration and never appear in messages.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplat.errors import ConfigError, DataplatError

__all__ = [
    "FIELD_MANAGER",
    "OPERATORS",
    "ApplyConflictError",
    "Cluster",
    "ClusterError",
    "ClusterUnreachableError",
    "MissingAPIError",
    "ObjectNotFoundError",
    "connect",
    "kind_label",
]

FIELD_MANAGER = "dataplat"
"""The field manager of every server-side apply dataplat makes."""

OPERATORS: dict[str, str] = {
    "postgresql.cnpg.io": "the CloudNativePG operator (https://cloudnative-pg.io, e.g. "
    "kubectl apply --server-side -f cnpg-1.25.yaml)",
    "k8s.cni.cncf.io": "Multus CNI (https://github.com/k8snetworkplumbingwg/multus-cni) and an RDMA "
    "device plugin",
    "monitoring.coreos.com": "the Prometheus Operator (e.g. the kube-prometheus-stack chart)",
    "keda.sh": "KEDA (https://keda.sh)",
}
"""API group of a custom resource -> what provides its CRD."""


class ClusterError(DataplatError):
    """The Kubernetes API refused a request or the cluster is not in the state needed."""


class ClusterUnreachableError(ClusterError):
    """No Kubernetes API server answers at the configured address."""

    exit_code = 2


class MissingAPIError(ClusterError):
    """The cluster does not serve some kinds the platform needs (CRDs of an operator not installed).

    ``missing`` lists ``(apiVersion, kind)``; the message names the operator to install.
    """

    def __init__(self, missing: Iterable[tuple[str, str]]) -> None:
        self.missing = sorted(set(missing))
        lines = []
        for api_version, kind in self.missing:
            group = api_version.rpartition("/")[0]
            provider = OPERATORS.get(group, f"the operator that installs the CRDs of {group or 'core'}")
            lines.append(f"  {kind} ({api_version}): install {provider}")
        super().__init__("the cluster does not serve these kinds; nothing was applied:\n" + "\n".join(lines))


class ApplyConflictError(ClusterError):
    """Server-side apply found fields owned by another field manager (HTTP 409)."""


class ObjectNotFoundError(ClusterError):
    """The object asked for does not exist (HTTP 404)."""


def kind_label(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` of an object (with ``-n namespace`` when it has one)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}" + (f" -n {ns}" if ns else "")


def _api_message(exc: Any) -> str:
    """The API server's own message of a failed request (Status.message), else the HTTP status."""
    try:
        return str(exc.summary()).strip()
    except Exception:  # noqa: BLE001 - a body that is not a Status
        return f"HTTP {getattr(exc, 'status', '?')} {getattr(exc, 'reason', '')}".strip()


def _kubeconfig_path(kubeconfig: str | os.PathLike[str] | None) -> str:
    """``--kubeconfig`` > ``KUBECONFIG`` (read now, not at import) > ``~/.kube/config``."""
    if kubeconfig:
        return str(Path(kubeconfig).expanduser())
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def connect(
    context: str | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    discovery_cache: str | os.PathLike[str] | None = None,
) -> Cluster:
    """A :class:`Cluster` for ``context`` of the kubeconfig, or the in-cluster service account.

    The in-cluster configuration is used when no kubeconfig file exists and the process runs
    in a pod (``KUBERNETES_SERVICE_HOST`` set) and no context was asked for. ConfigError names
    the file and the contexts it has; :class:`ClusterUnreachableError` when the API server
    does not answer discovery.
    """
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    path = _kubeconfig_path(kubeconfig)
    files = [p for p in path.split(os.pathsep) if p]
    have_file = any(Path(p).is_file() for p in files)
    try:
        if not have_file and not context and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = k8s_client.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            api = k8s_client.ApiClient(configuration=configuration)
            where = "in-cluster service account"
        else:
            if not have_file:
                raise ConfigError(
                    f"no kubeconfig at {path}: set KUBECONFIG or --kubeconfig to the file of the "
                    "cluster (or run inside a pod for the in-cluster service account)"
                )
            api = k8s_config.new_client_from_config(config_file=path, context=context, persist_config=False)
            where = f"context {context}" if context else "the current context"
    except ConfigException as exc:
        hint = ""
        try:
            contexts, current = k8s_config.list_kube_config_contexts(path)
            names = ", ".join(c["name"] for c in contexts) or "none"
            hint = f" (contexts in {path}: {names}; current: {(current or {}).get('name', 'none')})"
        except Exception:  # noqa: BLE001 - the hint is best effort, the first error is the one to show
            pass
        raise ConfigError(f"cannot load the Kubernetes configuration ({path}): {exc}{hint}") from None
    return Cluster(api, context=context, source=where, discovery_cache=discovery_cache)


@dataclass(frozen=True)
class ResourceRef:
    """Where the API serves one kind: its plural, scope and group/version."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool


class Cluster:
    """One Kubernetes cluster, through the dynamic client of the ``kubernetes`` package.

    Objects in and out are plain dicts (``ResourceInstance.to_dict()``); absent objects are
    ``None``; API errors become :class:`ClusterError` with the API server's message.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        context: str | None = None,
        source: str = "",
        discovery_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        from kubernetes.dynamic import DynamicClient
        from urllib3.exceptions import HTTPError

        self.api_client = api_client
        self.context = context
        self.source = source
        self.host = str(api_client.configuration.host)
        if discovery_cache is None:
            # a fresh discovery per run: a cache shared through /tmp could predate an operator's CRDs
            tmp = tempfile.mkdtemp(prefix="dataplat-k8s-")
            weakref.finalize(self, shutil.rmtree, tmp, True)
            discovery_cache = Path(tmp) / "discovery.json"
        try:
            self.dynamic = DynamicClient(api_client, cache_file=str(discovery_cache))
        except (HTTPError, OSError) as exc:
            raise ClusterUnreachableError(
                f"no Kubernetes API server answers at {self.host} ({source}): {type(exc).__name__}: {exc}"
            ) from None
        except Exception as exc:
            if hasattr(exc, "status"):
                raise ClusterError(
                    f"the Kubernetes API at {self.host} refused discovery: {_api_message(exc)}"
                ) from None
            raise
        self._resources: dict[tuple[str, str], Any] = {}

    # -- discovery --------------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Any:
        """The dynamic client's resource for ``kind`` of ``api_version``; MissingAPIError when not served."""
        key = (api_version, kind)
        if key not in self._resources:
            from kubernetes.dynamic.exceptions import ResourceNotFoundError

            try:
                self._resources[key] = self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise MissingAPIError([key]) from None
        return self._resources[key]

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves ``kind`` of ``api_version``."""
        try:
            self.resource(api_version, kind)
        except MissingAPIError:
            return False
        return True

    def ref(self, api_version: str, kind: str) -> ResourceRef:
        """Plural and scope of a kind (from discovery)."""
        r = self.resource(api_version, kind)
        return ResourceRef(api_version, kind, str(r.name), bool(r.namespaced))

    def require(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """Every kind of ``objects`` is served; else one MissingAPIError naming all missing kinds."""
        missing = {
            (str(o.get("apiVersion", "")), str(o.get("kind", "")))
            for o in objects
            if not self.serves(str(o.get("apiVersion", "")), str(o.get("kind", "")))
        }
        if missing:
            raise MissingAPIError(missing)

    # -- reads --------------------------------------------------------------------------------------

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        from urllib3.exceptions import HTTPError

        try:
            return func(*args, **kwargs)
        except HTTPError as exc:
            raise ClusterUnreachableError(
                f"{what}: the API server at {self.host} did not answer: {exc}"
            ) from None
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status is None:
                raise
            if status == 404:
                raise ObjectNotFoundError(f"{what}: {_api_message(exc)}") from None
            if status == 409:
                raise ApplyConflictError(f"{what}: {_api_message(exc)}") from None
            raise ClusterError(f"{what}: {_api_message(exc)} (HTTP {status})") from None

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        res = self.resource(api_version, kind)
        try:
            obj = self._call(
                f"get {kind}/{name}", res.get, name=name, namespace=namespace if res.namespaced else None
            )
        except ObjectNotFoundError:
            return None
        return dict(obj.to_dict())

    def get_object(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """The live counterpart of a rendered object, or None."""
        meta = obj.get("metadata") or {}
        return self.get(str(obj["apiVersion"]), str(obj["kind"]), str(meta["name"]), meta.get("namespace"))

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of ``kind`` (in ``namespace`` when namespaced), each with apiVersion and kind set."""
        res = self.resource(api_version, kind)
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        if res.namespaced and namespace:
            kwargs["namespace"] = namespace
        answer = self._call(f"list {kind}", res.get, **kwargs).to_dict()
        items = []
        for item in answer.get("items") or []:
            item = dict(item)
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            items.append(item)
        return items

    # -- writes -------------------------------------------------------------------------------------

    def apply(self, obj: Mapping[str, Any], *, force: bool = False) -> dict[str, Any]:
        """Server-side apply of ``obj`` with field manager ``dataplat``; the object as the server has it.

        ``force`` takes over fields another manager owns; without it such a conflict is an
        :class:`ApplyConflictError` naming the object and the conflicting fields.
        """
        meta = obj.get("metadata") or {}
        res = self.resource(str(obj["apiVersion"]), str(obj["kind"]))
        what = f"apply {kind_label(obj)}"
        try:
            live = self._call(
                what,
                res.server_side_apply,
                body=dict(obj),
                name=meta["name"],
                namespace=meta.get("namespace") if res.namespaced else None,
                field_manager=FIELD_MANAGER,
                force_conflicts=True if force else None,
            )
        except ApplyConflictError as exc:
            raise ApplyConflictError(
                f"{exc}\n  another field manager owns these fields; re-run with --force-conflicts to take "
                "them over for dataplat (the other manager may set them back)"
            ) from None
        return dict(live.to_dict())

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch (``application/merge-patch+json``) of an object or a subresource (``scale``)."""
        res = self.resource(api_version, kind)
        target = res.subresources[subresource] if subresource else res
        answer = self._call(
            f"patch {kind}/{name}" + (f"/{subresource}" if subresource else ""),
            target.patch,
            body=dict(patch),
            name=name,
            namespace=namespace if res.namespaced else None,
            content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER,
        )
        return dict(answer.to_dict())

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
        grace_period_s: int | None = None,
    ) -> bool:
        """Delete one object; False when it was already gone."""
        res = self.resource(api_version, kind)
        kwargs: dict[str, Any] = {"name": name, "propagation_policy": propagation}
        if res.namespaced:
            kwargs["namespace"] = namespace
        if grace_period_s is not None:
            kwargs["grace_period_seconds"] = grace_period_s
        try:
            self._call(f"delete {kind}/{name}", res.delete, **kwargs)
        except ObjectNotFoundError:
            return False
        return True

    def events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """Events about one object, oldest first (core/v1 Events)."""
        items = self.list_objects(
            "v1",
            "Event",
            namespace,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
        )
        return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
