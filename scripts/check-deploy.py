#!/usr/bin/env python3
"""Checks what deploys the platform, without a cluster or a Docker daemon (run by .ci/run).

* deploy/: rendered as `kubectl kustomize` renders it (namespace, resources, images; when
  kubectl is installed its own rendering must agree), then every object validated against the
  Kubernetes schemas of `--k8s` (kubernetes-validate, strict: unknown fields are errors), and
  cross-checked: every ConfigMap, Secret, Service account and PVC a workload names exists or is
  documented as made by hand, every container runs a binary the image holds, every SMS_
  variable is one the services read.
* docker-compose.yml: parsed; each service has an image or a build, depends on services that
  exist, runs a binary the image holds, and sets only variables the services read.
* Dockerfile: copies exactly the workspace's binaries, built with --release --locked.
* deploy/prometheus.yml scrapes compose services; deploy/grafana/sms-dashboard.json queries
  only metrics the services export.

Usage: scripts/check-deploy.py [--k8s 1.32]
"""

import argparse
import json
import pathlib
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Made by hand before `kubectl apply -k` (deploy/README.md, secret.example.yaml).
MADE_BY_HAND = {("Secret", "sms-secrets"), ("Secret", "sms-nats-users")}
problems = []


def problem(text):
    problems.append(text)


def workspace_binaries():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    return {
        t["name"]
        for p in meta["packages"]
        for t in p["targets"]
        if "bin" in t["kind"]
    }


def variables_read():
    """Every SMS_ and OTEL_ variable named in the services' source (what they can read; the
    OTEL_ ones are sms-runtime's KNOWN_OTEL_VARIABLES)."""
    names = set()
    for path in (ROOT / "crates").rglob("*.rs"):
        names.update(re.findall(r'"((?:SMS|OTEL)_[A-Z0-9_]+)"', path.read_text()))
    return names


def dockerfile_build():
    """The Dockerfile's build step: the `cargo build` arguments it runs."""
    build = re.search(r"cargo build ([^\\\n&]*)", (ROOT / "Dockerfile").read_text())
    return build.group(1).split() if build else []


def run_dockerfile_build(copied):
    """Runs the Dockerfile's build step as it stands (offline query cache, as in the image) and
    checks that every binary it copies was built."""
    command = ["cargo", "build", *dockerfile_build()]
    print(f"check-deploy: running the Dockerfile's build step: {' '.join(command)}", flush=True)
    env = dict(os.environ, SQLX_OFFLINE="true")
    if subprocess.run(command, cwd=ROOT, env=env).returncode != 0:
        problem("the Dockerfile's build step fails")
        return
    for name in sorted(copied):
        path = ROOT / "target" / "release" / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            problem(f"the Dockerfile copies {name}, which its build step did not make")


def dockerfile_binaries():
    text = (ROOT / "Dockerfile").read_text()
    build = re.search(r"cargo build ([^\\\n&]*)", text)
    if not build or "--release" not in build.group(1) or "--locked" not in build.group(1):
        problem("Dockerfile: the build step is not `cargo build --release --locked`")
    copied = re.search(r"cp ([^\n]*) /out/", text)
    return set(copied.group(1).split()) if copied else set()


def render_kustomization():
    base = ROOT / "deploy"
    k = yaml.safe_load((base / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "resources", "images"}
    for key in set(k) - known:
        problem(f"deploy/kustomization.yaml: {key} is not rendered by this check; extend it")
    images = {i["name"]: i for i in k.get("images", [])}
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass",
                      "PersistentVolume", "CustomResourceDefinition"}
    out = []
    for resource in k["resources"]:
        for doc in yaml.safe_load_all((base / resource).read_text()):
            if not doc:
                continue
            if doc["kind"] not in cluster_scoped and "namespace" in k:
                doc.setdefault("metadata", {})["namespace"] = k["namespace"]
            for c in containers(doc):
                name, _, tag = c.get("image", "").partition(":")
                if name in images:
                    i = images[name]
                    c["image"] = f"{i.get('newName', name)}:{i.get('newTag', tag or 'latest')}"
            out.append(doc)
    return out


def containers(doc):
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else spec
    if doc.get("kind") == "Pod":
        pod = spec
    return (pod.get("containers") or []) + (pod.get("initContainers") or [])


def pod_spec(doc):
    spec = doc.get("spec", {})
    return spec.get("template", {}).get("spec") if "template" in spec else None


def check_references(objects, binaries, variables):
    present = {(o["kind"], o["metadata"]["name"]) for o in objects} | MADE_BY_HAND
    for o in objects:
        where = f"{o['kind']}/{o['metadata']['name']}"
        pod = pod_spec(o)
        if not pod:
            continue
        for v in pod.get("volumes", []):
            if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in present:
                problem(f"{where}: volume {v['name']} names ConfigMap {v['configMap']['name']}, which is not deployed")
            if "secret" in v and ("Secret", v["secret"]["secretName"]) not in present:
                problem(f"{where}: volume {v['name']} names Secret {v['secret']['secretName']}, which is not deployed")
        for c in containers(o):
            for source in c.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source and (kind, source[key]["name"]) not in present:
                        problem(f"{where}: {c['name']} takes env from {kind} {source[key]['name']}, which is not deployed")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ("Secret", ref["name"]) not in present:
                    problem(f"{where}: {c['name']} reads {e['name']} from Secret {ref['name']}, which is not deployed")
                if e["name"].startswith(("SMS_", "OTEL_")) and e["name"] not in variables:
                    problem(f"{where}: {c['name']} sets {e['name']}, which no service reads")
            command = c.get("command") or c.get("args") or []
            image = c.get("image", "")
            if "sms-platform" in image and command and command[0] not in binaries:
                problem(f"{where}: {c['name']} runs {command[0]}, which the image does not hold")
    for o in objects:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "sms-config":
            for name in o.get("data", {}):
                if name.startswith(("SMS_", "OTEL_")) and name not in variables:
                    problem(f"ConfigMap/sms-config sets {name}, which no service reads")


def check_schemas(objects, version):
    try:
        import kubernetes_validate
    except ImportError:
        problem("kubernetes-validate is not installed (pip install kubernetes-validate)")
        return
    for o in objects:
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problem(f"{o['kind']}/{o['metadata']['name']}: {e.message}")
        except Exception as e:  # an unknown kind or version
            problem(f"{o['kind']}/{o['metadata']['name']}: {e}")


def check_compose(binaries, variables):
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc.get("services", {})
    if not services:
        problem("docker-compose.yml: no services")
    for name, s in services.items():
        if "image" not in s and "build" not in s:
            problem(f"compose {name}: neither image nor build")
        deps = s.get("depends_on", {})
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                problem(f"compose {name}: depends on {dep}, which is not a service")
        command = s.get("command")
        if isinstance(command, str):
            command = command.split()
        if s.get("image", "").startswith("sms-platform") and command and command[0] not in binaries:
            problem(f"compose {name}: runs {command[0]}, which the image does not hold")
        env = s.get("environment", {})
        names = env.keys() if isinstance(env, dict) else [e.split("=")[0] for e in env]
        for var in names:
            if var.startswith(("SMS_", "OTEL_")) and var not in variables:
                problem(f"compose {name}: sets {var}, which no service reads")
    return len(services)


def metrics_exported():
    names = set()
    for path in (ROOT / "crates").rglob("metrics.rs"):
        names.update(re.findall(r'"(sms_[a-z0-9_]+)"', path.read_text()))
    return names


def check_observability(services):
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = [t for job in prom.get("scrape_configs", [])
               for c in job.get("static_configs", []) for t in c.get("targets", [])]
    if not targets:
        problem("deploy/prometheus.yml: nothing scraped")
    for t in targets:
        host = t.split(":")[0]
        if host not in services:
            problem(f"deploy/prometheus.yml: {t} is not a compose service")
    # Every platform service exports its spans to a collector of the compose file that takes
    # OTLP/gRPC (Jaeger with its OTLP receiver on).
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, svc in compose.items():
        if "sms-platform" not in svc.get("image", "") or name == "carrier-sim":
            continue
        env = svc.get("environment", {})
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("SMS_OTLP_ENDPOINT")
        if not endpoint:
            problem(f"compose {name}: exports no traces (no OTEL_EXPORTER_OTLP_ENDPOINT)")
            continue
        host, _, port = endpoint.split("://")[-1].partition(":")
        collector = compose.get(host, {})
        if str(collector.get("environment", {}).get("COLLECTOR_OTLP_ENABLED")).lower() != "true":
            problem(f"compose {name}: exports traces to {endpoint}, which is no OTLP collector of the compose file")
        if not any(str(p).endswith(f":{port}") for p in collector.get("ports", [])) and port != "4317":
            problem(f"compose {name}: {endpoint}'s port is not the collector's")
        if not any(t.split(":")[0] == name for t in targets):
            problem(f"deploy/prometheus.yml: compose service {name} is not scraped")
    exported = metrics_exported()
    dash = json.loads((ROOT / "deploy" / "grafana" / "sms-dashboard.json").read_text())
    panels = dash.get("panels", [])
    for p in panels:
        for target in p.get("targets", []):
            for name in re.findall(r"\b(sms_[a-z0-9_]+)", target.get("expr", "")):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if base not in exported:
                    problem(f"dashboard panel {p.get('title')!r}: {name} is not a metric the services export")
    return len(panels)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--k8s", default="1.32")
    parser.add_argument("--build", action="store_true",
                        help="also run the Dockerfile's build step (a release build)")
    args = parser.parse_args()
    binaries = workspace_binaries()
    copied = dockerfile_binaries()
    if copied != binaries:
        problem(f"Dockerfile copies {sorted(copied)}; the workspace builds {sorted(binaries)}")
    if args.build:
        run_dockerfile_build(copied)
    variables = variables_read()
    objects = render_kustomization()
    if shutil.which("kubectl"):
        theirs = list(yaml.safe_load_all(subprocess.run(
            ["kubectl", "kustomize", str(ROOT / "deploy")],
            check=True, capture_output=True, text=True).stdout))
        key = lambda o: (o["kind"], o["metadata"]["name"])
        if sorted(map(json.dumps, sorted(theirs, key=key))) != sorted(map(json.dumps, sorted(objects, key=key))):
            mine = {key(o): o for o in objects}
            for o in theirs:
                if mine.get(key(o)) != o:
                    problem(f"{o['kind']}/{o['metadata']['name']}: rendered differently than kubectl kustomize does")
    check_schemas(objects, args.k8s)
    check_references(objects, copied, variables)
    services = check_compose(copied, variables)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    panels = check_observability(set(compose))
    for p in problems:
        print(f"check-deploy: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check-deploy: {len(objects)} Kubernetes objects valid for {args.k8s} (strict), "
          f"{services} compose services, the Dockerfile's {len(copied)} binaries, "
          f"{panels} dashboard panels on exported metrics"
          + (", the Dockerfile's build step run" if args.build else ""))


main()
