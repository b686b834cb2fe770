"""Offline validation of rendered Kubernetes objects.

Built-in kinds are checked against the Kubernetes OpenAPI schemas that ship with
``kubernetes-validate`` (strict: unknown fields are errors) for a chosen Kubernetes
version; custom resources against the trimmed schemas in ``charts/_crds/``
(``<kind>.<group>_<version>.schema.json``). On top of the schemas, dataplat's own
rules: no Secret carries data (Secrets are referenced by name), no image is untagged
or tagged ``latest``.

A problem in an object is reported at the inventory value it came from when that can
be told (a scalar of the object equal to exactly one value the inventory set for its
chart), else at the template and the object's field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from dataplat.config import PROJECT_ROOT
from dataplat.errors import ConfigError
from dataplat.inventory.model import Problem, dotted

if TYPE_CHECKING:
    from dataplat.k8s.render import Manifest
    from dataplat.k8s.values import Values

__all__ = ["DEFAULT_K8S_VERSION", "CRD_DIR", "crd_schema_path", "validate_object", "validate_objects"]

DEFAULT_K8S_VERSION = "1.30"
"""Kubernetes version whose schemas built-in kinds are checked against (``--k8s-version``)."""

CRD_DIR = PROJECT_ROOT / "charts" / "_crds"


def crd_schema_path(api_version: str, kind: str, crd_dir: Path = CRD_DIR) -> Path:
    """``charts/_crds/<kind>.<group>_<version>.schema.json`` for a custom resource."""
    group, _, version = api_version.rpartition("/")
    return Path(crd_dir) / f"{kind.lower()}.{group}_{version}.schema.json"


def _is_builtin(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return group == "" or "." not in group or group.endswith(".k8s.io")


@cache
def _crd_validator(path: str) -> jsonschema.Draft202012Validator:
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: custom resource schema cannot be read: {exc}") from exc
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _images(obj: Mapping[str, Any]) -> Iterable[tuple[tuple[Any, ...], str]]:
    """(path, image) of every container of a workload object."""
    spec = obj.get("spec") or {}
    pod = spec.get("template", {}).get("spec") if isinstance(spec.get("template"), Mapping) else None
    if obj.get("kind") == "Pod":
        pod = spec
    if obj.get("kind") == "CronJob":
        pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    if not isinstance(pod, Mapping):
        return
    base = ("spec",) if obj.get("kind") == "Pod" else ("spec", "template", "spec")
    for key in ("initContainers", "containers"):
        for i, c in enumerate(pod.get(key) or []):
            if isinstance(c, Mapping) and "image" in c:
                yield (*base, key, i, "image"), str(c["image"])
    if obj.get("kind") == "Cluster" and "imageName" in spec:
        yield ("spec", "imageName"), str(spec["imageName"])


def _tag(image: str) -> str | None:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return last.split("@", 1)[1]
    return last.split(":", 1)[1] if ":" in last else None


def validate_object(
    obj: Mapping[str, Any], k8s_version: str = DEFAULT_K8S_VERSION, crd_dir: Path = CRD_DIR
) -> list[tuple[tuple[Any, ...], str]]:
    """Every (path inside the object, message) wrong with one object."""
    out: list[tuple[tuple[Any, ...], str]] = []
    api, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    if not api or not kind:
        return [((), "an object needs apiVersion and kind")]
    if _is_builtin(api):
        import kubernetes_validate  # heavy schemas: imported on first use

        try:
            kubernetes_validate.validate(dict(obj), k8s_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            out.append((tuple(exc.path), f"{exc.message} (Kubernetes {exc.version} schema)"))
        except kubernetes_validate.SchemaNotFoundError:
            out.append(((), f"Kubernetes {k8s_version} has no {kind} in {api}"))
        except kubernetes_validate.utils.VersionNotSupportedError as exc:
            raise ConfigError(
                f"Kubernetes version {k8s_version} is not known to kubernetes-validate "
                f"(supported: {kubernetes_validate.utils.all_versions()[0]} - {exc.version})"
            ) from exc
    else:
        path = crd_schema_path(api, kind, crd_dir)
        if not path.exists():
            out.append(
                ((), f"no schema for the custom resource {kind} ({api}): add {path.name} to {crd_dir}")
            )
        else:
            for err in _crd_validator(str(path)).iter_errors(dict(obj)):
                out.append((tuple(err.absolute_path), f"{err.message} ({path.name})"))
    if kind == "Secret" and (obj.get("data") or obj.get("stringData")):
        out.append(
            (
                ("data",),
                "a Secret with inline data: dataplat references Secrets by name and never renders "
                "their content",
            )
        )
    for ipath, image in _images(obj):
        tag = _tag(image)
        if tag is None or tag == "latest":
            out.append(
                (
                    ipath,
                    f"image {image!r} has {'no tag' if tag is None else 'the tag latest'}: not reproducible",
                )
            )
    return out


def _value_at(obj: Any, path: Sequence[Any]) -> Any:
    for elem in path:
        try:
            obj = obj[elem]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _inventory_origin(values: Values | None, value: Any, inventory_file: str) -> Any:
    """The origin of the one value of ``values`` equal to ``value`` set by the inventory, if unique."""
    if values is None or value is None or isinstance(value, (dict, list)):
        return None
    hits = []
    for path, origin in values.origins.items():
        if origin.file != inventory_file or origin.line <= 0:
            continue
        if values.get(*path) == value and not isinstance(values.get(*path), (dict, list)):
            hits.append(origin)
    unique = {(o.file, o.line, o.field) for o in hits}
    return hits[0] if len(unique) == 1 else None


def validate_objects(
    manifests: Sequence[Manifest],
    values: Mapping[str, Values] | None = None,
    *,
    k8s_version: str = DEFAULT_K8S_VERSION,
    crd_dir: Path = CRD_DIR,
    inventory_file: str | None = None,
) -> list[Problem]:
    """Validate every manifest; problems point at the inventory when the value came from it."""
    problems: list[Problem] = []
    seen: set[tuple[str, str, str, str]] = set()
    for m in manifests:
        label = f"{m.kind}/{m.name}"
        if m.key in seen:
            problems.append(Problem("error", m.template, 0, 0, label, f"{label} is rendered twice"))
        seen.add(m.key)
        for path, message in validate_object(m.obj, k8s_version, crd_dir):
            field = f"{label}.{dotted(path)}" if path else label
            chart_values = (values or {}).get(m.component)
            value = _value_at(m.obj, path)
            origin = _inventory_origin(chart_values, value, inventory_file) if inventory_file else None
            if origin is not None:
                problems.append(
                    origin.problem(
                        "error",
                        f"{field}: {message}",
                        "fix this inventory value; it ends up in the manifest above",
                    )
                )
            else:
                problems.append(
                    Problem(
                        "error",
                        m.template,
                        0,
                        0,
                        field,
                        message,
                        "fix the chart template or value that sets this field",
                    )
                )
    return problems
