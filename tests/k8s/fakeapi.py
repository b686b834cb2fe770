"""A fake Kubernetes API server for the applier's tests.

No Kubernetes API server can run on the machines these tests run on (no Docker, no kind,
no kube-apiserver binaries), so the applier is tested against this stand-in: an
``http.server`` on 127.0.0.1 that answers what the official ``kubernetes`` client asks
for, with objects kept in memory:

* discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``
  (custom resource groups only when their "CRDs are installed": ``crd_groups``);
* GET (one object or a list, label and field selectors), PATCH (server-side apply with
  ``application/apply-patch+yaml`` and a ``fieldManager``; JSON merge patch; the ``scale``
  subresource), DELETE (a namespace takes its objects with it), POST;
* what the server and controllers add: ``uid``, ``resourceVersion``, ``generation``,
  ``managedFields``, defaulted fields, and a ``status`` that says "not ready" until the
  test marks objects ready (:meth:`FakeKubernetes.mark_ready`) or sets ``auto_ready``.

With ``controllers`` set (seconds), the fake also plays the controllers after a pod is
deleted, that long later: CloudNativePG promotes another ready instance when the primary's
pod goes (``status.currentPrimary``/``targetPrimary``, ``readyInstances``) and recreates
the lost instance, not ready at first, ready after the same delay again; a pod whose name
ends in ``-<ordinal>`` comes back under its name (a StatefulSet), any other is replaced by
a new pod (a Deployment), and the owning workload's status is not ready until then. A
``status.targetPrimary`` patched on a Cluster (a switchover) becomes ``currentPrimary``.
``on_delete`` callbacks get each deleted object (in a thread of their own).

Every request is recorded (:attr:`FakeKubernetes.requests`) so tests can assert on the
exact API calls. It is a test double, not an API server: lists in an apply replace the
live list, there is no validation, no garbage collection and no watch.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


@dataclass(frozen=True)
class Kind:
    """One resource the fake serves."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


BUILTIN = (
    Kind("", "v1", "Namespace", "namespaces", namespaced=False),
    Kind("", "v1", "Node", "nodes", namespaced=False),
    Kind("", "v1", "ConfigMap", "configmaps"),
    Kind("", "v1", "Secret", "secrets"),
    Kind("", "v1", "Service", "services"),
    Kind("", "v1", "ServiceAccount", "serviceaccounts"),
    Kind("", "v1", "Pod", "pods", subresources=("status",)),
    Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Kind("", "v1", "Event", "events"),
    Kind("apps", "v1", "Deployment", "deployments", subresources=("scale", "status")),
    Kind("apps", "v1", "StatefulSet", "statefulsets", subresources=("scale", "status")),
    Kind("apps", "v1", "DaemonSet", "daemonsets"),
    Kind("apps", "v1", "ReplicaSet", "replicasets"),
    Kind("batch", "v1", "Job", "jobs"),
    Kind("batch", "v1", "CronJob", "cronjobs"),
    Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
    Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
)

CUSTOM = (
    Kind("postgresql.cnpg.io", "v1", "Cluster", "clusters", subresources=("status",)),
    Kind("postgresql.cnpg.io", "v1", "ScheduledBackup", "scheduledbackups"),
    Kind("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"),
    Kind("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition", "network-attachment-definitions"),
    Kind("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
)

ALL_CRD_GROUPS = frozenset(k.group for k in CUSTOM)


@dataclass
class Request:
    """One request the fake answered."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any = None
    status: int = 0


@dataclass
class FakeKubernetes:
    """The in-memory API server; use as a context manager or call :meth:`start` / :meth:`stop`."""

    crd_groups: frozenset[str] = ALL_CRD_GROUPS
    auto_ready: bool = False
    """Objects written get a ready status at once (a cluster whose controllers are instant)."""
    conflicts: dict[Key, str] = field(default_factory=dict)
    """Objects whose fields another manager owns: apply without force answers 409."""
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    controllers: float | None = None
    """Seconds after which the fake plays the controllers on a deleted pod (None: it does not)."""
    on_delete: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    """Called with every deleted object, each in a thread of its own (e.g. to break real connections)."""

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._rv = 1000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FakeKubernetes:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = fake.handle(self.command, self.path, self.headers.get("Content-Type", ""), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, context: str = "fake") -> Path:
        """A kubeconfig whose ``context`` points at this server (no credentials: the fake needs none)."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "nobody", "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "nobody"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    # -- what tests look at and change ----------------------------------------------------------------

    def kinds(self) -> list[Kind]:
        return [*BUILTIN, *(k for k in CUSTOM if k.group in self.crd_groups)]

    def calls(self, method: str | None = None, path_contains: str = "") -> list[Request]:
        """Recorded requests (discovery included), filtered."""
        with self._lock:
            return [
                r for r in self.requests if (method is None or r.method == method) and path_contains in r.path
            ]

    def writes(self) -> list[Request]:
        """Recorded PATCH, POST, PUT and DELETE requests, in order."""
        return [r for r in self.calls() if r.method in ("PATCH", "POST", "PUT", "DELETE")]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def get(self, kind: str, name: str, namespace: str = "dataplat") -> dict[str, Any] | None:
        with self._lock:
            for key, obj in self.objects.items():
                if key[1] == kind and key[3] == name and key[2] in (namespace, ""):
                    return copy.deepcopy(obj)
        return None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for k, o in self.objects.items() if k[1] == kind]

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as a controller would create it (pods, PVCs, events, nodes)."""
        with self._lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta["resourceVersion"] = self._next_rv()
            kind = self._kind_of(obj["apiVersion"], obj["kind"])
            if not kind.namespaced:
                meta.pop("namespace", None)
            self.objects[self._key(obj)] = obj
            return copy.deepcopy(obj)

    def update(self, kind: str, name: str, namespace: str = "dataplat", **changes: Any) -> None:
        """Merge ``changes`` (top-level keys, e.g. ``status=...``) into a stored object."""
        with self._lock:
            for key, obj in self.objects.items():
                if key[1] == kind and key[3] == name and key[2] in (namespace, ""):
                    _merge(obj, copy.deepcopy(changes))
                    obj["metadata"]["resourceVersion"] = self._next_rv()
                    return
        raise KeyError(f"{kind}/{name}")

    def remove(self, kind: str, name: str, namespace: str = "dataplat") -> None:
        with self._lock:
            for key in list(self.objects):
                if key[1] == kind and key[3] == name and key[2] in (namespace, ""):
                    del self.objects[key]

    def mark_ready(self, kind: str | None = None, name: str | None = None) -> None:
        """Set the status of matching workloads to what their controllers report when ready."""
        with self._lock:
            for key, obj in self.objects.items():
                if (kind is None or key[1] == kind) and (name is None or key[3] == name):
                    _status(obj, ready=True)

    # -- the API ---------------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _kind_of(self, api_version: str, kind: str) -> Kind:
        for k in self.kinds():
            if k.api_version == api_version and k.kind == kind:
                return k
        raise KeyError(f"{api_version} {kind}")

    def _key(self, obj: dict[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])

    def handle(self, method: str, raw_path: str, content_type: str, raw: bytes) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body: Any = None
        if raw:
            body = yaml.safe_load(raw) if "yaml" in content_type else json.loads(raw)
        req = Request(method, url.path, query, content_type.split(";")[0].strip(), body)
        with self._lock:
            self.requests.append(req)
            try:
                status, answer = self._route(method, url.path.rstrip("/"), query, req.content_type, body)
            except _Fail as fail:
                status, answer = fail.code, _status_doc(fail.code, fail.reason, fail.message, fail.details)
            req.status = status
            return status, copy.deepcopy(answer)

    def _route(self, method: str, path: str, query: dict[str, str], ctype: str, body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake", "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            return 200, self._groups()
        if parts[:1] == ["api"] and len(parts) == 2:
            return 200, self._resources("", parts[1])
        if parts[:1] == ["apis"] and len(parts) == 2:
            group = next((g for g in self._groups()["groups"] if g["name"] == parts[1]), None)
            if group is None:
                raise _Fail(404, "NotFound", f"the server could not find the requested resource {path}")
            return 200, group
        if parts[:1] == ["apis"] and len(parts) == 3:
            return 200, self._resources(parts[1], parts[2])
        if parts[:1] == ["api"]:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"]:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _Fail(404, "NotFound", f"no route {path}")
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")
        kind = next(
            (k for k in self.kinds() if k.group == group and k.version == version and k.plural == plural),
            None,
        )
        if kind is None:
            raise _Fail(404, "NotFound", f"the server could not find the requested resource ({path})")
        if not name:
            if method == "GET":
                return 200, self._list(kind, namespace, query)
            if method == "POST":
                return 201, self._create(kind, namespace, body)
            raise _Fail(405, "MethodNotAllowed", f"{method} on a collection")
        key: Key = (kind.api_version, kind.kind, namespace if kind.namespaced else "", name)
        if method == "GET":
            obj = self._must(key)
            return 200, _scale_of(obj) if sub == "scale" else obj
        if method == "DELETE":
            obj = self._must(key)
            self._delete(key)
            self._after_delete(copy.deepcopy(obj))
            return 200, obj
        if method == "PATCH":
            if "apply-patch" in ctype:
                return self._apply(kind, key, query, body)
            obj = self._must(key)
            if sub == "scale":
                replicas = ((body or {}).get("spec") or {}).get("replicas")
                obj["spec"]["replicas"] = replicas
                obj["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
                obj["metadata"]["resourceVersion"] = self._next_rv()
                _status(obj, ready=self.auto_ready)
                return 200, _scale_of(obj)
            _merge(obj, copy.deepcopy(body or {}))
            obj["metadata"]["resourceVersion"] = self._next_rv()
            target = ((body or {}).get("status") or {}).get("targetPrimary")
            if kind.kind == "Cluster" and sub == "status" and target and self.controllers is not None:
                switched = {"currentPrimary": target}
                self._later(lambda: self.update("Cluster", name, namespace, status=switched))
            return 200, obj
        raise _Fail(405, "MethodNotAllowed", method)

    # -- the controllers, played with timers ---------------------------------------------------------

    def _later(self, action: Callable[[], None], delay: float | None = None) -> None:
        timer = threading.Timer(self.controllers if delay is None else delay, action)
        timer.daemon = True
        timer.start()

    def _after_delete(self, obj: dict[str, Any]) -> None:
        for callback in self.on_delete:
            threading.Thread(target=callback, args=(copy.deepcopy(obj),), daemon=True).start()
        if self.controllers is None or obj.get("kind") != "Pod":
            return
        meta = obj["metadata"]
        ns, name, labels = meta.get("namespace", "dataplat"), meta["name"], meta.get("labels") or {}
        instance = labels.get("cnpg.io/cluster")
        if instance:
            live = self.objects.get(("postgresql.cnpg.io/v1", "Cluster", ns, instance))
            if live is not None:
                st = live.setdefault("status", {})
                want = (live.get("spec") or {}).get("instances", 1)
                st["readyInstances"] = max(0, want - 1)
                if st.get("currentPrimary") == name:
                    st["phase"] = "Failing over"
                    others = sorted(
                        o["metadata"]["name"]
                        for k, o in self.objects.items()
                        if k[1] == "Pod" and k[2] == ns and k[3] != name
                        and (o["metadata"].get("labels") or {}).get("cnpg.io/cluster") == instance
                    )  # fmt: skip
                    new = others[0] if others else name
                    st["targetPrimary"] = new  # a switch in progress: not recovered yet

                    def promote() -> None:
                        promoted = {"currentPrimary": new, "targetPrimary": new}
                        self.update("Cluster", instance, ns, status=promoted)

                    self._later(promote)

                def back() -> None:
                    self.put(pod(name, labels, ready=False, namespace=ns, node=_node(obj)))
                    self._later(ready_again)

                def ready_again() -> None:
                    self.update("Pod", name, ns, status={"conditions": [{"type": "Ready", "status": "True"}]})
                    healthy = {"readyInstances": want, "phase": "Cluster in healthy state"}
                    self.update("Cluster", instance, ns, status=healthy)

                self._later(back)
                return
        owner = self._owner_of(ns, labels)
        if owner is not None:
            _status(owner, ready=False)
        stable = re.search(r"-\d+$", name) is not None  # a StatefulSet's pod keeps its name
        replacement = name if stable else f"{name.rsplit('-', 1)[0]}-{uuid.uuid4().hex[:5]}"

        def replace() -> None:
            self.put(pod(replacement, labels, namespace=ns, node=_node(obj)))
            with self._lock:
                live_owner = self._owner_of(ns, labels)
                if live_owner is not None:
                    _status(live_owner, ready=True)

        self._later(replace)

    def _owner_of(self, namespace: str, labels: dict[str, str]) -> dict[str, Any] | None:
        """The Deployment or StatefulSet whose selector matches a pod's labels."""
        for key, obj in self.objects.items():
            if key[1] in ("Deployment", "StatefulSet") and key[2] == namespace:
                match = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                if match and all(labels.get(k) == v for k, v in match.items()):
                    return obj
        return None

    def _groups(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for k in self.kinds():
            if k.group:
                groups.setdefault(k.group, [])
                if k.version not in groups[k.group]:
                    groups[k.group].append(k.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                }
                for g, vs in groups.items()
            ],
        }

    def _resources(self, group: str, version: str) -> dict[str, Any]:
        kinds = [k for k in self.kinds() if k.group == group and k.version == version]
        if not kinds:
            raise _Fail(404, "NotFound", f"{group}/{version} is not served")
        resources = []
        for k in kinds:
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources.append(
                {
                    "name": k.plural,
                    "singularName": k.kind.lower(),
                    "namespaced": k.namespaced,
                    "kind": k.kind,
                    "verbs": verbs,
                }
            )
            for sub in k.subresources:
                sub_kind = {"scale": "Scale"}.get(sub, k.kind)
                resources.append(
                    {
                        "name": f"{k.plural}/{sub}",
                        "singularName": "",
                        "namespaced": k.namespaced,
                        "kind": sub_kind,
                        "group": "autoscaling" if sub == "scale" else None,
                        "version": "v1" if sub == "scale" else None,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _must(self, key: Key) -> dict[str, Any]:
        obj = self.objects.get(key)
        if obj is None:
            raise _Fail(
                404,
                "NotFound",
                f'{key[1].lower()}s "{key[3]}" not found',
                {"name": key[3], "kind": key[1].lower() + "s"},
            )
        return obj

    def _list(self, kind: Kind, namespace: str, query: dict[str, str]) -> dict[str, Any]:
        items = [
            o
            for k, o in self.objects.items()
            if k[0] == kind.api_version and k[1] == kind.kind and (not namespace or k[2] == namespace)
        ]
        items = [o for o in items if _selected(o, query.get("labelSelector", ""), labels=True)]
        items = [o for o in items if _selected(o, query.get("fieldSelector", ""), labels=False)]
        items = sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return {
            "apiVersion": kind.api_version,
            "kind": f"{kind.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in items],
        }

    def _create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body.setdefault("apiVersion", kind.api_version)
        body.setdefault("kind", kind.kind)
        if kind.namespaced:
            body.setdefault("metadata", {})["namespace"] = namespace
        if self._key(body) in self.objects:
            raise _Fail(409, "AlreadyExists", f'{kind.plural} "{body["metadata"]["name"]}" already exists')
        return self.put(body)

    def _delete(self, key: Key) -> None:
        del self.objects[key]
        if key[1] == "Namespace":
            for other in [k for k in self.objects if k[2] == key[3]]:
                del self.objects[other]

    def _apply(self, kind: Kind, key: Key, query: dict[str, str], body: Any) -> tuple[int, Any]:
        manager = query.get("fieldManager")
        if not manager:
            raise _Fail(400, "BadRequest", "server-side apply requires a fieldManager")
        if (
            not isinstance(body, dict)
            or body.get("kind") != kind.kind
            or body.get("apiVersion") != kind.api_version
        ):
            raise _Fail(400, "BadRequest", "the body's apiVersion and kind must match the path")
        # the API server parses booleans with Go's strconv.ParseBool: "true", "True", "1" ...
        if key in self.conflicts and query.get("force", "").lower() not in ("true", "1", "t"):
            other = self.conflicts[key]
            raise _Fail(
                409,
                "Conflict",
                f'Apply failed with 1 conflict: conflict with "{other}" using {kind.api_version}: '
                ".spec.replicas",
                {
                    "causes": [
                        {
                            "reason": "FieldManagerConflict",
                            "message": f'conflict with "{other}"',
                            "field": ".spec.replicas",
                        }
                    ]
                },
            )
        body = copy.deepcopy(body)
        if kind.namespaced:
            body["metadata"]["namespace"] = key[2]
        live = self.objects.get(key)
        if live is None:
            obj = body
            meta = obj["metadata"]
            meta.update(
                uid=str(uuid.uuid4()),
                creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                generation=1,
            )
            _defaults(obj)
            status = 201
        else:
            obj = live
            before = json.dumps(obj.get("spec"), sort_keys=True)
            _merge(obj, body, replace_lists=True)
            if json.dumps(obj.get("spec"), sort_keys=True) != before:
                obj["metadata"]["generation"] = int(obj["metadata"].get("generation", 1)) + 1
            status = 200
        obj["metadata"]["resourceVersion"] = self._next_rv()
        obj["metadata"]["managedFields"] = [
            {
                "manager": manager,
                "operation": "Apply",
                "apiVersion": kind.api_version,
                "fieldsType": "FieldsV1",
            }
        ]
        if key in self.conflicts:
            del self.conflicts[key]  # forced: dataplat owns the fields now
        _status(obj, ready=self.auto_ready)
        self.objects[key] = obj
        return status, obj


class _Fail(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}


def _status_doc(code: int, reason: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def _merge(target: dict[str, Any], patch: dict[str, Any], replace_lists: bool = True) -> None:
    """RFC 7386 merge (None deletes), lists replaced."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v, replace_lists)
        else:
            target[k] = v


def _walk(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _selected(obj: dict[str, Any], selector: str, *, labels: bool) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        negate = "!=" in term
        k, _, v = term.replace("!=", "=").replace("==", "=").partition("=")
        actual = ((obj.get("metadata") or {}).get("labels") or {}).get(k) if labels else _walk(obj, k)
        if negate == (str(actual) == v if actual is not None else False):
            return False
    return True


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"].get("namespace")},
        "spec": {"replicas": obj["spec"].get("replicas", 1)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0)},
    }


def _defaults(obj: dict[str, Any]) -> None:
    """A few fields the API server defaults, so the diff has something to ignore."""
    spec = obj.get("spec")
    if obj["kind"] in ("Deployment", "StatefulSet") and isinstance(spec, dict):
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600) if obj["kind"] == "Deployment" else None
        pod = spec.get("template", {}).get("spec", {})
        pod.setdefault("dnsPolicy", "ClusterFirst")
        pod.setdefault("schedulerName", "default-scheduler")
        for c in pod.get("containers", []):
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("imagePullPolicy", "IfNotPresent")
    if obj["kind"] == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP") != "None":
            spec.setdefault("clusterIP", "10.96.0.10")
    if obj["kind"] == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})


def _status(obj: dict[str, Any], *, ready: bool) -> None:
    """The status a workload's controller reports, ready or still progressing."""
    kind, spec, gen = obj["kind"], obj.get("spec") or {}, obj["metadata"].get("generation", 1)
    if kind == "Deployment":
        n = spec.get("replicas", 1)
        avail = n if ready else 0
        obj["status"] = {
            "observedGeneration": gen,
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": avail,
            "availableReplicas": avail,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if ready else "False",
                    "reason": "MinimumReplicasAvailable" if ready else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if ready
                    else "Deployment does not have minimum availability.",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable" if ready else "ReplicaSetUpdated",
                    "message": "progressing",
                },
            ],
        }
    elif kind == "StatefulSet":
        n = spec.get("replicas", 1)
        obj["status"] = {
            "observedGeneration": gen,
            "replicas": n,
            "readyReplicas": n if ready else 0,
            "availableReplicas": n if ready else 0,
            "updatedReplicas": n if ready else 0,
            "currentRevision": f"{obj['metadata']['name']}-1",
            "updateRevision": f"{obj['metadata']['name']}-1",
        }
    elif kind == "Job":
        obj["status"] = (
            {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
            if ready
            else {"active": 1}
        )
    elif kind == "Cluster":
        n = spec.get("instances", 1)
        name = obj["metadata"]["name"]
        obj["status"] = {
            "instances": n,
            "readyInstances": n if ready else 0,
            "phase": "Cluster in healthy state" if ready else "Setting up primary",
            "currentPrimary": f"{name}-1",
            "targetPrimary": f"{name}-1",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "ClusterIsReady" if ready else "ClusterIsNotReady",
                    "message": "Cluster is Ready" if ready else "Cluster Is Not Ready",
                }
            ],
        }


def pod(
    name: str,
    labels: dict[str, str],
    *,
    ready: bool = True,
    namespace: str = "dataplat",
    node: str = "node-1",
    waiting: tuple[str, str] | None = None,
    unschedulable: str = "",
) -> dict[str, Any]:
    """A pod as the kubelet reports it (for readiness reasons and fault tests)."""
    status: dict[str, Any] = {"phase": "Running" if ready else "Pending", "conditions": []}
    status["conditions"].append({"type": "Ready", "status": "True" if ready else "False"})
    if unschedulable:
        status["conditions"].append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        )
    if waiting:
        status["containerStatuses"] = [
            {
                "name": "main",
                "ready": False,
                "state": {"waiting": {"reason": waiting[0], "message": waiting[1]}},
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node if not unschedulable else None, "containers": [{"name": "main"}]},
        "status": status,
    }


def _node(obj: dict[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("nodeName") or "node-1")


def iter_requests_of(fake: FakeKubernetes, method: str) -> Iterator[Request]:
    """Requests of one method, in order (for readable assertions)."""
    yield from fake.calls(method)
