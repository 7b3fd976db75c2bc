#!/usr/bin/python3
"""Static checks of the Kubernetes manifests in deploy/k8s/ (they cannot be applied here).

Usage: validate_k8s.py --daemon PATH/TO/ms-rendezvousd [--dir deploy/k8s] [--self-test]

Parses every YAML document of every *.yaml file (duplicate keys are an error, as in kubectl)
and checks what would otherwise only show up on a cluster:
  - apiVersion / kind / metadata.name of each document (known kinds only);
  - Deployment: 1 replica, strategy Recreate, selector == template labels, the Service's
    selector matches the pod labels, port 8118 named grpc, --listen on that port, --state-dir
    on a volume backed by the PVC of the same file, probes (gRPC or the ctl exec) on the
    Service's port, securityContext, resources, terminationGracePeriodSeconds above
    --shutdown-grace, and only flags that `ms-rendezvousd --help` lists;
  - Job: Indexed, completions == parallelism == MS_WORKER_NUM, MS_ROLE, MS_SCHED_HOST naming
    the Service's DNS name, MS_SCHED_PORT == its port, MS_JOB_ID == the Job's name, MS_NODE_ID
    from the completion index, MS_WORKER_IP from status.podIP, env values are strings;
  - one image for the daemon and the example workers.
Every problem is reported as `FILE: document N (Kind name): field.path: what is wrong`; all of
them are listed, then the exit status is 1.

--self-test additionally breaks copies of the manifests one field at a time and checks that
each break is reported with the expected file, document and field (so the checks cannot rot
into always passing).
"""

import argparse
import copy
import os
import re
import subprocess
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - message for a machine without python3-yaml
    sys.stderr.write("validate_k8s.py: PyYAML missing: run scripts/bootstrap.sh "
                     "(Debian package python3-yaml) and use /usr/bin/python3\n")
    sys.exit(2)

DAEMON_PORT = 8118
STATE_DIR = "/var/lib/ms-rendezvousd"
IMAGE_UID = 10001  # docker/Dockerfile: USER 10001:10001
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
CTL_HEALTH = ["ms-rendezvousctl", "--server", "127.0.0.1:%d" % DAEMON_PORT, "health"]
DEFAULT_SHUTDOWN_GRACE_S = 5.0  # ms-rendezvousd --shutdown-grace default

API_VERSIONS = {
    "Namespace": "v1",
    "Service": "v1",
    "PersistentVolumeClaim": "v1",
    "ConfigMap": "v1",
    "ServiceAccount": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "PodDisruptionBudget": "policy/v1",
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


# ---- loading -------------------------------------------------------------------------------

class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found duplicate key %r (first at line %d)" % (key, seen[key] + 1),
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                _construct_mapping)


class Doc:
    def __init__(self, file, index, body):
        self.file = file      # path as shown in messages (relative to the repository)
        self.index = index    # 1-based position in the file
        self.body = body

    @property
    def kind(self):
        return self.body.get("kind") if isinstance(self.body, dict) else None

    @property
    def name(self):
        if not isinstance(self.body, dict):
            return None
        meta = self.body.get("metadata")
        return meta.get("name") if isinstance(meta, dict) else None

    @property
    def namespace(self):
        meta = self.body.get("metadata") if isinstance(self.body, dict) else None
        return meta.get("namespace") if isinstance(meta, dict) else None

    def where(self):
        return "%s: document %d (%s %s)" % (self.file, self.index, self.kind or "?",
                                            self.name or "?")


def load_dir(directory, shown_prefix, errors):
    """Returns [Doc] of every non-empty document of every *.yaml / *.yml file, sorted by file."""
    docs = []
    files = sorted(f for f in os.listdir(directory) if f.endswith((".yaml", ".yml")))
    if not files:
        errors.append("%s: no *.yaml files" % shown_prefix)
    for f in files:
        shown = os.path.join(shown_prefix, f)
        try:
            with open(os.path.join(directory, f), encoding="utf-8") as fh:
                bodies = list(yaml.load_all(fh, Loader=UniqueKeyLoader))
        except yaml.YAMLError as e:
            errors.append("%s: not valid YAML: %s" % (shown, str(e).replace("\n", " ")))
            continue
        n = 0
        for i, body in enumerate(bodies, start=1):
            if body is None:  # an empty document (e.g. a trailing ---)
                continue
            n += 1
            docs.append(Doc(shown, i, body))
        if n == 0:
            errors.append("%s: no YAML documents" % shown)
    return docs


# ---- helpers -------------------------------------------------------------------------------

class Checker:
    def __init__(self):
        self.errors = []

    def err(self, doc, field, msg):
        self.errors.append("%s: %s: %s" % (doc.where(), field, msg))


def get(obj, path):
    """Follows a dotted path (list indices as [i]); returns None where it breaks off."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            i = int(part[1:-1])
            if not isinstance(obj, list) or i >= len(obj):
                return None
            obj = obj[i]
        else:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(part)
    return obj


def parse_duration_s(text):
    """absl-style duration (30s, 1500ms, 1h30m) -> seconds, or None."""
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    if not isinstance(text, str) or not re.fullmatch(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", text):
        return None
    return sum(float(v) * units[u] for v, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|ms|s|m|h)",
                                                            text))


def daemon_flags(binary):
    """The --flags that `ms-rendezvousd --help` lists."""
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise SystemExit("validate_k8s.py: cannot run %s --help: %s" % (binary, e))
    if out.returncode != 0:
        raise SystemExit("validate_k8s.py: %s --help exited %d: %s" %
                         (binary, out.returncode, out.stderr.strip()))
    flags = set(re.findall(r"^\s+(--[a-z][a-z0-9-]*)", out.stdout, flags=re.M))
    if "--listen" not in flags or "--state-dir" not in flags:
        raise SystemExit("validate_k8s.py: could not read the flag list of %s --help:\n%s" %
                         (binary, out.stdout))
    return flags


def parse_args_list(args):
    """['--a', 'v', '--b=w'] -> ([(flag, value, position)], [stray arguments])."""
    parsed, stray = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if not isinstance(a, str) or not a.startswith("--"):
            stray.append((i, a))
            i += 1
            continue
        if "=" in a:
            name, value = a.split("=", 1)
            parsed.append((name, value, i))
            i += 1
        else:
            value = args[i + 1] if i + 1 < len(args) else None
            parsed.append((a, value, i))
            i += 2
    return parsed, stray


def labels_match(selector, labels):
    return (isinstance(selector, dict) and selector and isinstance(labels, dict) and
            all(labels.get(k) == v for k, v in selector.items()))


# ---- per-document checks -------------------------------------------------------------------

def check_basics(c, doc):
    b = doc.body
    if not isinstance(b, dict):
        c.err(doc, "(document)", "expected a mapping, got %s" % type(b).__name__)
        return False
    kind = b.get("kind")
    if not isinstance(kind, str) or not kind:
        c.err(doc, "kind", "missing")
        return False
    if kind not in API_VERSIONS:
        c.err(doc, "kind", "unexpected kind %r (known: %s)" % (kind, ", ".join(sorted(API_VERSIONS))))
        return False
    if b.get("apiVersion") != API_VERSIONS[kind]:
        c.err(doc, "apiVersion", "expected %r for %s, got %r" %
              (API_VERSIONS[kind], kind, b.get("apiVersion")))
    meta = b.get("metadata")
    if not isinstance(meta, dict):
        c.err(doc, "metadata", "missing")
        return False
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        c.err(doc, "metadata.name", "missing")
    elif len(name) > 63 or not DNS_LABEL.match(name):
        c.err(doc, "metadata.name", "%r is not a DNS-1123 label (lowercase alphanumerics and "
              "'-', at most 63 characters)" % name)
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not DNS_LABEL.match(ns)):
        c.err(doc, "metadata.namespace", "%r is not a DNS-1123 label" % (ns,))
    if kind != "Namespace" and not isinstance(b.get("spec"), dict):
        c.err(doc, "spec", "missing")
        return False
    return True


def check_security(c, doc, pod_path, cont_path, pod, cont):
    """The hardening every container of the image gets (pod- or container-level)."""
    psc = pod.get("securityContext") or {}
    csc = cont.get("securityContext")
    if not isinstance(csc, dict):
        c.err(doc, cont_path + ".securityContext", "missing")
        return
    sp = cont_path + ".securityContext"
    # Container settings win over the pod's; either place satisfies runAsNonRoot/runAsUser.
    non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    if non_root is not True:
        c.err(doc, sp + ".runAsNonRoot", "expected true (also accepted in %s.securityContext), "
              "got %r" % (pod_path, non_root))
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    if uid != IMAGE_UID:
        c.err(doc, sp + ".runAsUser", "expected %d (the image's USER), got %r" % (IMAGE_UID, uid))
    if csc.get("readOnlyRootFilesystem") is not True:
        c.err(doc, sp + ".readOnlyRootFilesystem",
              "expected true, got %r" % (csc.get("readOnlyRootFilesystem"),))
    if csc.get("allowPrivilegeEscalation") is not False:
        c.err(doc, sp + ".allowPrivilegeEscalation",
              "expected false, got %r" % (csc.get("allowPrivilegeEscalation"),))
    if csc.get("privileged") not in (None, False):
        c.err(doc, sp + ".privileged", "expected false or unset, got %r" % (csc.get("privileged"),))
    drop = get(csc, "capabilities.drop")
    if not isinstance(drop, list) or "ALL" not in drop:
        c.err(doc, sp + ".capabilities.drop", "expected a list containing \"ALL\", got %r" % (drop,))
    add = get(csc, "capabilities.add")
    if add:
        c.err(doc, sp + ".capabilities.add", "expected none, got %r" % (add,))


def check_env_strings(c, doc, cont_path, cont):
    env = cont.get("env") or []
    if not isinstance(env, list):
        c.err(doc, cont_path + ".env", "expected a list")
        return {}
    out = {}
    for i, e in enumerate(env):
        p = "%s.env[%d]" % (cont_path, i)
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            c.err(doc, p + ".name", "missing")
            continue
        name = e["name"]
        if name in out:
            c.err(doc, p + ".name", "%s is set twice" % name)
        if "value" in e and not isinstance(e["value"], str):
            c.err(doc, p + ".value", "%s: env values must be strings (quote it): got %r (%s)" %
                  (name, e["value"], type(e["value"]).__name__))
        if "value" in e and "valueFrom" in e:
            c.err(doc, p, "%s has both value and valueFrom" % name)
        out[name] = (p, e)
    return out


def container_ports(c, doc, cont_path, cont):
    ports = cont.get("ports") or []
    by_name, by_number = {}, set()
    if not isinstance(ports, list):
        c.err(doc, cont_path + ".ports", "expected a list")
        return by_name, by_number
    for i, p in enumerate(ports):
        pp = "%s.ports[%d]" % (cont_path, i)
        num = p.get("containerPort") if isinstance(p, dict) else None
        if not isinstance(num, int) or not 1 <= num <= 65535:
            c.err(doc, pp + ".containerPort", "expected a port number, got %r" % (num,))
            continue
        by_number.add(num)
        if p.get("name"):
            by_name[p["name"]] = num
    return by_name, by_number


def resolve_port(ref, by_name, by_number):
    if isinstance(ref, int):
        return ref if ref in by_number else None
    return by_name.get(ref)


def check_probe(c, doc, path, probe, target_port):
    if not isinstance(probe, dict):
        c.err(doc, path, "missing (the daemon serves grpc.health.v1.Health on port %d)" %
              target_port)
        return
    grpc = probe.get("grpc")
    exe = probe.get("exec")
    if grpc is not None:
        if not isinstance(grpc, dict) or grpc.get("port") != target_port:
            c.err(doc, path + ".grpc.port", "expected %d (the gRPC port the Service targets), "
                  "got %r" % (target_port, get(grpc, "port")))
        if isinstance(grpc, dict) and grpc.get("service") not in (None, ""):
            c.err(doc, path + ".grpc.service", "the daemon reports only the server's overall "
                  "status (service \"\"), got %r" % (grpc.get("service"),))
    elif exe is not None:
        cmd = get(exe, "command")
        if cmd != CTL_HEALTH:
            c.err(doc, path + ".exec.command", "expected %r, got %r" % (CTL_HEALTH, cmd))
    else:
        c.err(doc, path, "expected a grpc: probe on port %d (or exec: %s)" %
              (target_port, " ".join(CTL_HEALTH)))
    for k in ("periodSeconds", "timeoutSeconds", "failureThreshold", "initialDelaySeconds"):
        v = probe.get(k)
        if v is not None and (not isinstance(v, int) or v < 0):
            c.err(doc, "%s.%s" % (path, k), "expected a non-negative integer, got %r" % (v,))


def check_deployment(c, doc, flags, pvcs, ctx):
    b = doc.body
    spec = b["spec"]
    if spec.get("replicas") != 1:
        c.err(doc, "spec.replicas", "expected 1 (one daemon per state dir), got %r" %
              (spec.get("replicas"),))
    if get(spec, "strategy.type") != "Recreate":
        c.err(doc, "spec.strategy.type", "expected Recreate (two daemons must not share a state "
              "dir during a rollout), got %r" % (get(spec, "strategy.type"),))
    tmpl_labels = get(spec, "template.metadata.labels")
    sel = get(spec, "selector.matchLabels")
    if not labels_match(sel, tmpl_labels):
        c.err(doc, "spec.selector.matchLabels", "%r does not match the pod labels "
              "spec.template.metadata.labels %r" % (sel, tmpl_labels))
    pod = get(spec, "template.spec")
    if not isinstance(pod, dict):
        c.err(doc, "spec.template.spec", "missing")
        return
    conts = pod.get("containers")
    if not isinstance(conts, list) or not conts:
        c.err(doc, "spec.template.spec.containers", "missing")
        return
    idx = next((i for i, x in enumerate(conts)
                if isinstance(x, dict) and x.get("name") == "ms-rendezvousd"), 0)
    cont = conts[idx]
    cp = "spec.template.spec.containers[%d]" % idx
    ctx["daemon"] = {"doc": doc, "labels": tmpl_labels, "cont_path": cp,
                     "image": cont.get("image"), "namespace": doc.namespace}
    ctx["images"].append((doc, cp + ".image", cont.get("image")))

    if not isinstance(cont.get("image"), str) or not cont.get("image"):
        c.err(doc, cp + ".image", "missing")
    cmd = cont.get("command")
    if cmd is not None and (not isinstance(cmd, list) or not cmd or
                            os.path.basename(str(cmd[0])) != "ms-rendezvousd"):
        c.err(doc, cp + ".command", "expected unset (the image's ENTRYPOINT is ms-rendezvousd) or "
              "[ms-rendezvousd], got %r" % (cmd,))

    by_name, by_number = container_ports(c, doc, cp, cont)
    ctx["daemon"]["ports_by_name"], ctx["daemon"]["ports_by_number"] = by_name, by_number
    if by_name.get("grpc") != DAEMON_PORT:
        c.err(doc, cp + ".ports", "expected containerPort %d named grpc, got %r" %
              (DAEMON_PORT, cont.get("ports")))

    # Arguments: only flags the daemon knows, and the ones the manifest depends on.
    args = cont.get("args")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        c.err(doc, cp + ".args", "expected a list of strings, got %r" % (args,))
        args = []
    parsed, stray = parse_args_list(args)
    for i, a in stray:
        c.err(doc, "%s.args[%d]" % (cp, i), "unexpected argument %r (the daemon takes only "
              "--flags)" % (a,))
    values = {}
    for name, value, i in parsed:
        ap = "%s.args[%d]" % (cp, i)
        if name not in flags or name == "--help":
            c.err(doc, ap, "%s is not a flag of ms-rendezvousd (its --help lists: %s)" %
                  (name, " ".join(sorted(flags))))
        elif value is None:
            c.err(doc, ap, "%s needs a value" % name)
        values[name] = (value, ap)
    listen = values.get("--listen", (None, cp + ".args"))
    m = re.fullmatch(r"(.+):(\d+)", listen[0] or "")
    if not m:
        c.err(doc, listen[1], "expected --listen 0.0.0.0:%d, got %r" % (DAEMON_PORT, listen[0]))
    else:
        if m.group(1) in ("127.0.0.1", "localhost", "[::1]"):
            c.err(doc, listen[1], "--listen %s is not reachable from other pods" % listen[0])
        if int(m.group(2)) not in by_number:
            c.err(doc, listen[1], "--listen port %s is not a containerPort of %s (%s)" %
                  (m.group(2), cp, sorted(by_number)))
    state_dir, sp = values.get("--state-dir", (None, cp + ".args"))
    if state_dir is None:
        c.err(doc, sp, "expected --state-dir %s (without it every job is lost when the pod "
              "restarts)" % STATE_DIR)
    else:
        mounts = {m.get("mountPath"): m for m in (cont.get("volumeMounts") or [])
                  if isinstance(m, dict)}
        mount = mounts.get(state_dir)
        if mount is None:
            c.err(doc, cp + ".volumeMounts", "nothing is mounted at --state-dir %s (the root "
                  "filesystem is read-only and the state must outlive the pod)" % state_dir)
        else:
            vols = {v.get("name"): v for v in (pod.get("volumes") or []) if isinstance(v, dict)}
            vol = vols.get(mount.get("name"))
            claim = get(vol, "persistentVolumeClaim.claimName")
            if claim is None:
                c.err(doc, "spec.template.spec.volumes", "volume %r mounted at %s is not a "
                      "persistentVolumeClaim" % (mount.get("name"), state_dir))
            elif claim not in pvcs.get(doc.file, {}):
                c.err(doc, "spec.template.spec.volumes", "claimName %r has no "
                      "PersistentVolumeClaim in %s (have: %s)" %
                      (claim, doc.file, sorted(pvcs.get(doc.file, {})) or "none"))
            elif pvcs[doc.file][claim].namespace != doc.namespace:
                c.err(doc, "metadata.namespace", "the PersistentVolumeClaim %r is in namespace "
                      "%r, the Deployment in %r" % (claim, pvcs[doc.file][claim].namespace,
                                                   doc.namespace))

    # Drain: the kubelet's SIGKILL must come after --shutdown-grace.
    grace_arg, gp = values.get("--shutdown-grace", (None, None))
    grace = DEFAULT_SHUTDOWN_GRACE_S if grace_arg is None else parse_duration_s(grace_arg)
    if grace is None:
        c.err(doc, gp, "--shutdown-grace %r is not a duration" % (grace_arg,))
        grace = DEFAULT_SHUTDOWN_GRACE_S
    tgp = pod.get("terminationGracePeriodSeconds")
    if not isinstance(tgp, int) or tgp <= grace:
        c.err(doc, "spec.template.spec.terminationGracePeriodSeconds", "expected an integer "
              "above --shutdown-grace (%gs) so the daemon can drain, got %r" % (grace, tgp))

    # Probes on the gRPC port (the port the Service targets is checked again in check_service).
    for probe in ("readinessProbe", "livenessProbe"):
        check_probe(c, doc, "%s.%s" % (cp, probe), cont.get(probe), DAEMON_PORT)
    if cont.get("startupProbe") is not None:
        check_probe(c, doc, cp + ".startupProbe", cont.get("startupProbe"), DAEMON_PORT)

    check_security(c, doc, "spec.template.spec", cp, pod, cont)
    for k in ("requests.cpu", "requests.memory", "limits.memory"):
        if get(cont, "resources." + k) is None:
            c.err(doc, "%s.resources.%s" % (cp, k), "missing")


def check_service(c, doc, ctx):
    spec = doc.body["spec"]
    stype = spec.get("type", "ClusterIP")
    if stype != "ClusterIP":
        c.err(doc, "spec.type", "expected ClusterIP, got %r" % (stype,))
    ports = spec.get("ports")
    grpc = None
    if isinstance(ports, list):
        grpc = next(((i, p) for i, p in enumerate(ports)
                     if isinstance(p, dict) and p.get("name") == "grpc"), None)
    if grpc is None:
        c.err(doc, "spec.ports", "expected a port named grpc, got %r" % (ports,))
    else:
        i, p = grpc
        if p.get("port") != DAEMON_PORT:
            c.err(doc, "spec.ports[%d].port" % i, "expected %d, got %r" %
                  (DAEMON_PORT, p.get("port")))
        ctx["services"].append({"doc": doc, "port": p.get("port"), "port_index": i,
                                "target": p.get("targetPort", p.get("port"))})
    ctx["service_docs"].append(doc)


def check_service_vs_deployment(c, ctx):
    d = ctx.get("daemon")
    for s in ctx["service_docs"]:
        if d is None:
            c.err(s, "spec.selector", "no Deployment of ms-rendezvousd to select")
            continue
        sel = s.body["spec"].get("selector")
        if not labels_match(sel, d["labels"]):
            c.err(s, "spec.selector", "%r does not match the pod labels of %s "
                  "spec.template.metadata.labels %r" % (sel, d["doc"].where(), d["labels"]))
        if s.namespace != d["namespace"]:
            c.err(s, "metadata.namespace", "%r, but the Deployment is in %r" %
                  (s.namespace, d["namespace"]))
    for svc in ctx["services"]:
        if d is None:
            continue
        target = resolve_port(svc["target"], d["ports_by_name"], d["ports_by_number"])
        if target is None:
            c.err(svc["doc"], "spec.ports[%d].targetPort" % svc["port_index"],
                  "%r is not a container port of %s %s (ports: %r)" %
                  (svc["target"], d["doc"].where(), d["cont_path"], d["ports_by_name"]))
        elif target != DAEMON_PORT:
            c.err(svc["doc"], "spec.ports[%d].targetPort" % svc["port_index"],
                  "resolves to container port %d; the daemon and its probes use %d" %
                  (target, DAEMON_PORT))


def service_dns_names(svc_doc):
    name, ns = svc_doc.name, svc_doc.namespace or "default"
    return {"%s.%s" % (name, ns), "%s.%s.svc" % (name, ns), "%s.%s.svc.cluster.local" % (name, ns)}


def check_job(c, doc, ctx):
    spec = doc.body["spec"]
    if spec.get("completionMode") != "Indexed":
        c.err(doc, "spec.completionMode", "expected Indexed (the completion index is the rank), "
              "got %r" % (spec.get("completionMode"),))
    comp, par = spec.get("completions"), spec.get("parallelism")
    if not isinstance(comp, int) or comp < 1:
        c.err(doc, "spec.completions", "expected a positive integer, got %r" % (comp,))
    if par != comp:
        c.err(doc, "spec.parallelism", "expected %r (== spec.completions: every worker must run "
              "at once for the job to form), got %r" % (comp, par))
    pod = get(spec, "template.spec")
    conts = get(pod, "containers")
    if not isinstance(conts, list) or not conts:
        c.err(doc, "spec.template.spec.containers", "missing")
        return
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        c.err(doc, "spec.template.spec.restartPolicy", "a Job needs Never or OnFailure, got %r" %
              (pod.get("restartPolicy"),))
    for ci, cont in enumerate(conts):
        cp = "spec.template.spec.containers[%d]" % ci
        ctx["images"].append((doc, cp + ".image", cont.get("image")))
        env = check_env_strings(c, doc, cp, cont)
        if "MS_ROLE" not in env:  # not a rendezvous member (e.g. a sidecar)
            continue
        check_security(c, doc, "spec.template.spec", cp, pod, cont)

        def val(name):
            return env[name][1].get("value") if name in env else None

        def path(name):
            return env[name][0] if name in env else cp + ".env"

        def need(name, expected, why):
            if name not in env:
                c.err(doc, cp + ".env", "%s is missing (%s)" % (name, why))
            elif isinstance(val(name), str) and val(name) != expected:  # else reported above
                c.err(doc, path(name) + ".value", "%s: expected %r (%s), got %r" %
                      (name, expected, why, val(name)))

        need("MS_ROLE", "MS_WORKER", "the workers' role")
        need("MS_WORKER_NUM", str(comp), "== spec.completions == spec.parallelism")
        need("MS_JOB_ID", doc.name, "the Job's name: jobs on the shared daemon differ by it")

        svcs = ctx["service_docs"]
        host = val("MS_SCHED_HOST")
        if "MS_SCHED_HOST" not in env:
            c.err(doc, cp + ".env", "MS_SCHED_HOST is missing (the daemon's Service DNS name)")
        elif not isinstance(host, str):
            pass  # reported by check_env_strings
        elif not svcs:
            c.err(doc, path("MS_SCHED_HOST") + ".value", "no Service in the manifests to name")
        else:
            names = set()
            for s in svcs:
                names |= service_dns_names(s)
                if (doc.namespace or "default") == (s.namespace or "default"):
                    names.add(s.name)
            if host not in names:
                c.err(doc, path("MS_SCHED_HOST") + ".value", "MS_SCHED_HOST=%r names no Service "
                      "of the manifests (expected one of %s)" % (host, ", ".join(sorted(names))))
        ports = {str(s["port"]) for s in ctx["services"]}
        if "MS_SCHED_PORT" not in env:
            c.err(doc, cp + ".env", "MS_SCHED_PORT is missing (the Service's port)")
        elif isinstance(val("MS_SCHED_PORT"), str) and val("MS_SCHED_PORT") not in ports:
            c.err(doc, path("MS_SCHED_PORT") + ".value", "MS_SCHED_PORT=%r is not the port of "
                  "the Service (%s)" % (val("MS_SCHED_PORT"), ", ".join(sorted(ports)) or "none"))

        node = get(env.get("MS_NODE_ID", (None, {}))[1], "valueFrom.fieldRef.fieldPath")
        if node != COMPLETION_INDEX:
            c.err(doc, path("MS_NODE_ID") + ".valueFrom.fieldRef.fieldPath",
                  "MS_NODE_ID: expected %s (numeric node id = rank), got %r" %
                  (COMPLETION_INDEX, node))
        ip = get(env.get("MS_WORKER_IP", (None, {}))[1], "valueFrom.fieldRef.fieldPath")
        if ip != "status.podIP":
            c.err(doc, path("MS_WORKER_IP") + ".valueFrom.fieldRef.fieldPath",
                  "MS_WORKER_IP: expected status.podIP, got %r" % (ip,))
        if not cont.get("command"):
            c.err(doc, cp + ".command", "missing: the image's ENTRYPOINT is the daemon")


def check_images(c, ctx):
    images = [(d, p, i) for d, p, i in ctx["images"] if isinstance(i, str) and i]
    if not images:
        return
    first = images[0]
    for d, p, i in images[1:]:
        if i != first[2]:
            c.err(d, p, "image %r differs from %r in %s %s" % (i, first[2], first[0].where(),
                                                              first[1]))
    for d, p, i in images:
        tag = i.rsplit("/", 1)[-1]
        if "@" not in i and (":" not in tag or tag.endswith(":latest")):
            c.err(d, p, "image %r: pin a tag or digest (not latest)" % i)


def validate(docs, flags):
    c = Checker()
    ok = [d for d in docs if check_basics(c, d)]
    seen = {}
    for d in ok:
        key = (d.kind, d.namespace, d.name)
        if key in seen:
            c.err(d, "metadata.name", "duplicate of %s" % seen[key].where())
        seen[key] = d
    pvcs = {}
    for d in ok:
        if d.kind == "PersistentVolumeClaim":
            pvcs.setdefault(d.file, {})[d.name] = d
            if not get(d.body, "spec.resources.requests.storage"):
                c.err(d, "spec.resources.requests.storage", "missing")
            if not get(d.body, "spec.accessModes"):
                c.err(d, "spec.accessModes", "missing")
    ctx = {"images": [], "services": [], "service_docs": []}
    deployments = [d for d in ok if d.kind == "Deployment"]
    if len(deployments) != 1:
        c.errors.append("deploy/k8s: expected exactly one Deployment (ms-rendezvousd), found %d" %
                        len(deployments))
    for d in deployments:
        check_deployment(c, d, flags, pvcs, ctx)
    for d in ok:
        if d.kind == "Service":
            check_service(c, d, ctx)
    if not ctx["service_docs"]:
        c.errors.append("deploy/k8s: expected a Service for ms-rendezvousd, found none")
    check_service_vs_deployment(c, ctx)
    jobs = [d for d in ok if d.kind == "Job"]
    if not jobs:
        c.errors.append("deploy/k8s: expected an example worker Job, found none")
    for d in jobs:
        check_job(c, d, ctx)
    check_images(c, ctx)
    return c.errors


# ---- self-test: every check must fire on a broken copy -----------------------------------

def find_doc(docs, kind):
    return next(d for d in docs if d.kind == kind)


def daemon_container(docs):
    return find_doc(docs, "Deployment").body["spec"]["template"]["spec"]["containers"][0]


def job_env(docs, name):
    cont = find_doc(docs, "Job").body["spec"]["template"]["spec"]["containers"][0]
    return next(e for e in cont["env"] if e["name"] == name)


def _set_args(docs, extra):
    daemon_container(docs)["args"] = daemon_container(docs)["args"] + extra


def _drop_probe(docs):
    del daemon_container(docs)["readinessProbe"]


MUTATIONS = [
    # (description, mutate(docs), kind of the document that must be named, expected field text)
    ("unknown daemon flag", lambda d: _set_args(d, ["--no-such-flag", "1"]),
     "Deployment", "containers[0].args[6]: --no-such-flag is not a flag"),
    ("wrong apiVersion", lambda d: find_doc(d, "Deployment").body.update(apiVersion="v1"),
     "Deployment", "apiVersion: expected 'apps/v1'"),
    ("missing name", lambda d: find_doc(d, "Service").body["metadata"].pop("name"),
     "Service", "metadata.name: missing"),
    ("selector mismatch",
     lambda d: find_doc(d, "Service").body["spec"]["selector"].update(
         {"app.kubernetes.io/name": "other"}),
     "Service", "spec.selector:"),
    ("targetPort mismatch",
     lambda d: find_doc(d, "Service").body["spec"]["ports"][0].update(targetPort="http"),
     "Service", "spec.ports[0].targetPort"),
    ("RollingUpdate", lambda d: find_doc(d, "Deployment").body["spec"].update(
        strategy={"type": "RollingUpdate"}), "Deployment", "spec.strategy.type"),
    ("probe port", lambda d: daemon_container(d)["livenessProbe"]["grpc"].update(port=9999),
     "Deployment", "livenessProbe.grpc.port: expected 8118"),
    ("no readiness probe", _drop_probe, "Deployment", "readinessProbe: missing"),
    ("writable root", lambda d: daemon_container(d)["securityContext"].update(
        readOnlyRootFilesystem=False), "Deployment", "securityContext.readOnlyRootFilesystem"),
    ("capabilities kept", lambda d: daemon_container(d)["securityContext"].update(
        capabilities={"drop": ["NET_RAW"]}), "Deployment", "capabilities.drop"),
    ("short grace", lambda d: find_doc(d, "Deployment").body["spec"]["template"]["spec"].update(
        terminationGracePeriodSeconds=5), "Deployment", "terminationGracePeriodSeconds"),
    ("worker num", lambda d: job_env(d, "MS_WORKER_NUM").update(value="8"),
     "Job", "MS_WORKER_NUM: expected '4'"),
    ("parallelism", lambda d: find_doc(d, "Job").body["spec"].update(parallelism=2),
     "Job", "spec.parallelism"),
    ("sched host", lambda d: job_env(d, "MS_SCHED_HOST").update(value="scheduler.default"),
     "Job", "MS_SCHED_HOST='scheduler.default' names no Service"),
    ("sched port", lambda d: job_env(d, "MS_SCHED_PORT").update(value="2222"),
     "Job", "MS_SCHED_PORT='2222'"),
    ("unquoted port", lambda d: job_env(d, "MS_SCHED_PORT").update(value=8118),
     "Job", "env values must be strings"),
    ("job id", lambda d: job_env(d, "MS_JOB_ID").update(value="other"), "Job", "MS_JOB_ID"),
    ("node id", lambda d: job_env(d, "MS_NODE_ID").update(
        valueFrom={"fieldRef": {"fieldPath": "metadata.name"}}), "Job", "MS_NODE_ID: expected"),
    ("image drift", lambda d: daemon_container(d).update(
        image="registry.example.com/other:1"), "Job", "differs from"),
]


def self_test(docs, flags):
    failures = []
    for desc, mutate, kind, expected in MUTATIONS:
        broken = copy.deepcopy(docs)
        mutate(broken)
        errors = validate(broken, flags)
        target = find_doc(docs, kind)
        prefix = "%s: document %d (%s " % (target.file, target.index, kind)
        hit = [e for e in errors if e.startswith(prefix) and expected in e]
        if not hit:
            failures.append("self-test %r: expected an error starting %r containing %r; got:\n    %s"
                            % (desc, prefix, expected, "\n    ".join(errors) or "(no errors)"))
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", required=True, help="path of the ms-rendezvousd binary")
    ap.add_argument("--dir", default=None, help="manifest directory (default: deploy/k8s of "
                    "this checkout)")
    ap.add_argument("--self-test", action="store_true",
                    help="also check that broken manifests are reported")
    a = ap.parse_args()
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    directory = a.dir or os.path.join(repo, "deploy", "k8s")
    shown = os.path.relpath(os.path.abspath(directory), repo)
    if shown.startswith(".."):
        shown = directory
    flags = daemon_flags(a.daemon)
    errors = []
    docs = load_dir(directory, shown, errors)
    errors += validate(docs, flags)
    if errors:
        sys.stderr.write("validate_k8s.py: %d problem(s) in %s:\n" % (len(errors), shown))
        for e in errors:
            sys.stderr.write("  %s\n" % e)
        return 1
    kinds = ", ".join("%s %s (%s)" % (d.kind, d.name, os.path.basename(d.file)) for d in docs)
    print("validate_k8s.py: %d documents OK: %s" % (len(docs), kinds))
    print("validate_k8s.py: daemon flags from --help: %s" % " ".join(sorted(flags)))
    if a.self_test:
        failures = self_test(docs, flags)
        if failures:
            for f in failures:
                sys.stderr.write("validate_k8s.py: %s\n" % f)
            return 1
        print("validate_k8s.py: self-test: all %d broken variants reported" % len(MUTATIONS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
