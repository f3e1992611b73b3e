"""Checks a Helm chart with real Helm; run by `cargo xtask check-chart`.

usage: check_chart.py CHART_DIR RBAC_LIST KUBE_VERSION...

- Helm's own lint (strict) on the chart, for the default values and for
  every `ci/*-values.yaml` file;
- values.schema.json: every values file passes, and a value of the wrong
  type, an unknown key and a missing credential are refused;
- each values file is rendered by Helm (helm-python-sdk wraps the Go SDK) and
  every rendered object is validated strictly (unknown fields are errors)
  against the Kubernetes schemas of each KUBE_VERSION (kubernetes-validate);
- the rendered ClusterRole and Role grant exactly the rules of RBAC_LIST
  (the list kept next to the control plane's code), nothing more or less,
  and are bound to the ServiceAccount the Deployment runs as;
- every kind the control plane's code calls the API on is in RBAC_LIST,
  and every verb its typed calls need on it (get, list, watch, create,
  patch, update, delete, read from the kube-rs calls) is granted.
"""

import glob
import os
import re
import sys

import helm_python as helm
import kubernetes_validate
import yaml

RELEASE = "ambient-control-plane"
NAMESPACE = "ambient-code"
# Custom resources have no Kubernetes schema; they are checked for shape only.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

failures = []


def fail(message):
    failures.append(message)
    print(f"check-chart: FAIL {message}", file=sys.stderr)


def lint(chart_dir, label, values):
    report = helm.lint(chart_dir, values, strict=True, namespace=NAMESPACE, quiet=True)
    for m in report.get("messages", []):
        if m.get("severity", 0) >= 2:
            fail(f"helm lint ({label}): {m.get('path')}: {m.get('error')}")
    for e in report.get("errors", []) or []:
        fail(f"helm lint ({label}): {e}")


def render(chart, values):
    objects = []
    for path, text in sorted(chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append((path, doc))
    return objects


def validate_objects(label, objects, kube_versions):
    for path, obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        where = f"{label}: {path}: {obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        if key in CUSTOM_KINDS:
            if not obj.get("spec", {}).get("endpoints"):
                fail(f"{where}: no endpoints")
            continue
        for version in kube_versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(f"{where} (Kubernetes {version}): {e.message} at {list(e.path)}")
            except kubernetes_validate.SchemaNotFoundError as e:
                fail(f"{where} (Kubernetes {version}): no schema: {e}")


def expand(rules, scope):
    """RBAC rules as a set of (scope, apiGroup, resource, resourceName, verb)."""
    out = set()
    for r in rules or []:
        names = r.get("resourceNames") or [""]
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for n in names:
                    for v in r.get("verbs", []):
                        out.add((scope, g, res, n, v))
    return out


def check_rbac(objects, rbac_list):
    with open(rbac_list) as f:
        wanted = yaml.safe_load(f)
    want = expand(wanted.get("cluster"), "cluster") | expand(wanted.get("namespace"), "namespace")
    by_kind = {}
    for _, obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    got = set()
    for role in by_kind.get("ClusterRole", []):
        got |= expand(role.get("rules"), "cluster")
    for role in by_kind.get("Role", []):
        got |= expand(role.get("rules"), "namespace")
    for extra in sorted(got - want):
        fail(f"RBAC: the chart grants {extra}, which {rbac_list} does not list")
    for missing in sorted(want - got):
        fail(f"RBAC: the chart lacks {missing}, which {rbac_list} lists")
    sa = {
        d["spec"]["template"]["spec"].get("serviceAccountName")
        for d in by_kind.get("Deployment", [])
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "control-plane"
    }
    for binding in by_kind.get("ClusterRoleBinding", []) + by_kind.get("RoleBinding", []):
        subjects = {(s["kind"], s["name"]) for s in binding.get("subjects", [])}
        if {("ServiceAccount", n) for n in sa} != subjects:
            fail(f"RBAC: {binding['kind']} {binding['metadata']['name']} binds {subjects}, not the Deployment's {sa}")
    print(f"check-chart: RBAC grants exactly the {len(want)} (resource, verb) pairs of {rbac_list}")


def check_code_kinds(rbac_list):
    """Every typed `Api<Kind>` in the control plane's code is in the list."""
    with open(rbac_list) as f:
        wanted = yaml.safe_load(f)
    listed = {res for scope in wanted.values() for r in scope for res in r.get("resources", [])}
    src = os.path.join(os.path.dirname(rbac_list), "src")
    for path in sorted(glob.glob(os.path.join(src, "**", "*.rs"), recursive=True)):
        with open(path) as f:
            code = f.read()
        for kind in sorted(set(re.findall(r"\bApi(?:::)?<([A-Z][A-Za-z]+)>", code))):
            if kind == "DynamicObject":
                # Named by its ApiResource (e.g. tenantnamespaces), listed by plural.
                continue
            plural = kind.lower()
            plural = plural[:-1] + "ies" if plural.endswith("y") else plural + "s"
            if plural not in listed:
                fail(f"{path} calls the API on {kind}, which {rbac_list} does not list")


# What a kube-rs call on an `Api<Kind>` needs from RBAC.
METHOD_VERBS = {
    "get": {"get"},
    "get_opt": {"get"},
    "list": {"list"},
    "create": {"create"},
    "patch": {"patch"},
    "replace": {"update"},
    "delete": {"delete"},
    "watch": {"watch"},
}


def plural_of(kind):
    plural = kind.lower()
    return plural[:-1] + "ies" if plural.endswith("y") else plural + "s"


def code_verbs(code):
    """(resource, verb) pairs a source file's typed calls need: each
    `let x: Api<Kind>` / `let x = Api::<Kind>::...` binding (the latest one
    above a call), then `x.get(..)`, `x.list(..)`, ..., `self.apply(&x, ..)`
    (server-side apply: patch and create), `delete_if_present(&x, ..)`,
    `watcher(x, ..)` (list and watch), and `self.apply(&Api::<Kind>::..)`.
    Generic `Api<K>` bindings are skipped (their callers are not typed here)."""
    needs = set()
    bindings = []  # (offset, name, kind)
    for m in re.finditer(r"let\s+(?:mut\s+)?(\w+)\s*(?::\s*Api<(\w+)>\s*=|=\s*Api::<(\w+)>)", code):
        bindings.append((m.start(), m.group(1), m.group(2) or m.group(3)))

    def kind_at(name, offset):
        kind = None
        for start, n, k in bindings:
            if n == name and start < offset:
                kind = k
        return kind

    def need(kind, verbs):
        if kind and kind not in ("K", "DynamicObject"):
            for v in verbs:
                needs.add((plural_of(kind), v))

    for m in re.finditer(r"\b(\w+)\s*\.\s*(get_opt|get|list|create|patch|replace|delete|watch)\s*\(", code):
        need(kind_at(m.group(1), m.start()), METHOD_VERBS[m.group(2)])
    for m in re.finditer(r"(?:self\.apply|delete_if_present|watcher)\(\s*&?\s*(\w+)\b", code):
        call = code[m.start():m.start() + 20]
        verbs = {"patch", "create"} if "apply" in call else ({"delete"} if "delete" in call else {"list", "watch"})
        need(kind_at(m.group(1), m.start()), verbs)
    for m in re.finditer(r"self\.apply\(\s*&Api::<(\w+)>", code):
        need(m.group(1), {"patch", "create"})
    return needs


def check_code_verbs(rbac_list):
    """Every verb the control plane's typed calls need on a resource is
    granted for it (in either scope; resourceNames aside)."""
    with open(rbac_list) as f:
        wanted = yaml.safe_load(f)
    granted = {
        (res, verb)
        for scope in wanted.values()
        for r in scope
        for res in r.get("resources", [])
        for verb in r.get("verbs", [])
    }
    src = os.path.join(os.path.dirname(rbac_list), "src")
    checked = 0
    for path in sorted(glob.glob(os.path.join(src, "**", "*.rs"), recursive=True)):
        with open(path) as f:
            code = f.read()
        for resource, verb in sorted(code_verbs(code)):
            checked += 1
            if (resource, verb) not in granted:
                fail(f"{path} needs {verb} on {resource}, which {rbac_list} does not grant")
    print(f"check-chart: {checked} (resource, verb) needs of the control plane's typed calls are granted")


def expect_refused(chart, label, values, call):
    try:
        call(chart, values)
    except helm.HelmError:
        return
    fail(f"{label} was accepted")


def main():
    chart_dir, rbac_list, *kube_versions = sys.argv[1:]
    chart = helm.Chart.load(chart_dir)
    value_sets = [("default values", {})]
    for path in sorted(glob.glob(os.path.join(chart_dir, "ci", "*-values.yaml"))):
        with open(path) as f:
            value_sets.append((os.path.relpath(path, chart_dir), yaml.safe_load(f)))
    for label, values in value_sets:
        lint(chart_dir, label, values)
        try:
            chart.validate_schema(values)
        except helm.HelmError as e:
            fail(f"values.schema.json refuses {label}: {e}")
            continue
        try:
            objects = render(chart, values)
        except helm.HelmError as e:
            fail(f"helm render ({label}): {e}")
            continue
        validate_objects(label, objects, kube_versions)
        print(f"check-chart: {label}: {len(objects)} objects rendered and valid for Kubernetes {', '.join(kube_versions)}")
        if label == "default values":
            check_rbac(objects, rbac_list)

    check_code_kinds(rbac_list)
    check_code_verbs(rbac_list)
    schema = lambda c, v: c.validate_schema(v)  # noqa: E731
    expect_refused(chart, "a string replicaCount", {"replicaCount": "two"}, schema)
    expect_refused(chart, "an unknown top-level key", {"replicas": 2}, schema)
    expect_refused(chart, "an unknown nested key", {"api": {"tokenSecret": {"nmae": "x"}}}, schema)
    expect_refused(chart, "an inlined secret value", {"api": {"tokenSecret": {"value": "s3cret"}}}, schema)
    no_credential = {"api": {"tokenSecret": {"name": ""}}}
    expect_refused(chart, "a release without API credentials", no_credential, lambda c, v: c.render(v, name=RELEASE, namespace=NAMESPACE))
    if failures:
        print(f"check-chart: {len(failures)} problem(s)", file=sys.stderr)
        sys.exit(1)
    print("check-chart: ok")


if __name__ == "__main__":
    main()
