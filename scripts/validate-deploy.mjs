// scripts/validate-deploy.mjs — checks deploy/k8s/*.yaml and docker-compose.yml
// (run by scripts/validate-deploy.sh, which installs the npm packages it imports).
//
// 1. Schema: every Kubernetes object is validated against the Kubernetes OpenAPI
//    schemas bundled in the npm package kubernetes-models (ajv under the hood): types,
//    required fields, enums, int-or-string ports.
// 2. Cross-references the schemas cannot see: selectors match their pod templates'
//    labels (Deployment, StatefulSet, Service, PodDisruptionBudget), every ConfigMap /
//    Secret / PVC a pod mounts exists with every key it names, a Service's named
//    targetPorts and every probe's port exist on the selected containers, the
//    StatefulSet's serviceName is a headless Service, the HPA targets an existing
//    Deployment, and every shard line of the ConfigMap names a pod of the ledger
//    StatefulSet through the headless Service's DNS name, with ports the pods expose.
// 3. Compose: the structure docker-compose.yml promises (three shards with their own
//    named volumes, a gateway without host ports, healthchecks everywhere, config
//    mounted from deploy/).
// Prints one line per problem and exits 1 if there is any.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";

const problems = [];
const fail = (where, msg) => problems.push(`${where}: ${msg}`);

// ---- load ----
const [k8sDir, composePath] = process.argv.slice(2);
const objects = [];
for (const f of fs.readdirSync(k8sDir).filter((n) => n.endsWith(".yaml")).sort()) {
    const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(k8sDir, f), "utf8"));
    for (const d of docs) {
        if (d.errors.length) {
            fail(f, `YAML: ${d.errors[0].message}`);
            continue;
        }
        const o = d.toJS();
        if (o) {
            objects.push({ file: f, o });
        }
    }
}

// ---- 1. schema ----
const modulePath = (apiVersion, kind) => {
    if (apiVersion === "kustomize.config.k8s.io/v1beta1") {
        return null;
    }
    return `kubernetes-models/${apiVersion}/${kind}`;
};
for (const { file, o } of objects) {
    const where = `${file} ${o.kind}/${o.metadata?.name}`;
    const mp = modulePath(o.apiVersion, o.kind);
    if (mp === null) {
        continue;
    }
    let Model;
    try {
        Model = (await import(mp))[o.kind];
    } catch {
        fail(where, `unknown apiVersion/kind ${o.apiVersion} ${o.kind}`);
        continue;
    }
    try {
        new Model(o).validate();
    } catch (e) {
        fail(where, `schema: ${e.message}`);
    }
}

// ---- 2. cross-references ----
const byKind = (k) => objects.filter(({ o }) => o.kind === k).map(({ o }) => o);
const find = (k, name) => byKind(k).find((o) => o.metadata?.name === name);
const matches = (selector, labels) =>
    selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const workloads = [...byKind("Deployment"), ...byKind("StatefulSet")];
const containerPorts = (w) =>
    w.spec.template.spec.containers.flatMap((c) => c.ports ?? []);

for (const w of workloads) {
    const where = `${w.kind}/${w.metadata.name}`;
    const tl = w.spec.template.metadata?.labels;
    if (!matches(w.spec.selector?.matchLabels, tl)) {
        fail(where, "spec.selector.matchLabels does not match the pod template's labels");
    }
    const ns = w.metadata.namespace;
    const vols = w.spec.template.spec.volumes ?? [];
    for (const v of vols) {
        if (v.configMap) {
            const cm = find("ConfigMap", v.configMap.name);
            if (!cm || cm.metadata.namespace !== ns) {
                fail(where, `volume ${v.name}: ConfigMap ${v.configMap.name} not defined`);
            } else {
                for (const it of v.configMap.items ?? []) {
                    if (!(it.key in (cm.data ?? {}))) {
                        fail(where, `volume ${v.name}: ConfigMap ${cm.metadata.name} has no key ${it.key}`);
                    }
                }
            }
        }
        if (v.secret) {
            const s = find("Secret", v.secret.secretName);
            if (!s || s.metadata.namespace !== ns) {
                fail(where, `volume ${v.name}: Secret ${v.secret.secretName} not defined`);
            } else {
                const keys = { ...(s.data ?? {}), ...(s.stringData ?? {}) };
                for (const it of v.secret.items ?? []) {
                    if (!(it.key in keys)) {
                        fail(where, `volume ${v.name}: Secret ${s.metadata.name} has no key ${it.key}`);
                    }
                }
            }
        }
        if (v.persistentVolumeClaim && !find("PersistentVolumeClaim", v.persistentVolumeClaim.claimName)) {
            fail(where, `volume ${v.name}: PVC ${v.persistentVolumeClaim.claimName} not defined`);
        }
    }
    const claimNames = (w.spec.volumeClaimTemplates ?? []).map((t) => t.metadata.name);
    for (const c of w.spec.template.spec.containers) {
        for (const m of c.volumeMounts ?? []) {
            if (!vols.some((v) => v.name === m.name) && !claimNames.includes(m.name)) {
                fail(where, `container ${c.name} mounts undefined volume ${m.name}`);
            }
        }
        for (const e of c.env ?? []) {
            const ref = e.valueFrom?.secretKeyRef ?? e.valueFrom?.configMapKeyRef;
            if (ref) {
                const isSecret = !!e.valueFrom.secretKeyRef;
                const o = find(isSecret ? "Secret" : "ConfigMap", ref.name);
                const keys = o ? { ...(o.data ?? {}), ...(o.stringData ?? {}) } : {};
                if (!o || !(ref.key in keys)) {
                    fail(where, `env ${e.name}: ${ref.name}/${ref.key} not defined`);
                }
            }
            // file:/path secrets must point into a mounted volume.
            const fm = /^file:(\/.*)$/.exec(e.value ?? "");
            if (fm && !(c.volumeMounts ?? []).some((m) => fm[1].startsWith(m.mountPath + "/"))) {
                fail(where, `env ${e.name}: ${fm[1]} is not inside a mounted volume`);
            }
        }
        const ports = c.ports ?? [];
        for (const probe of ["readinessProbe", "livenessProbe", "startupProbe"]) {
            const p = c[probe]?.httpGet?.port;
            if (p === undefined) {
                continue;
            }
            const ok = typeof p === "number" ? ports.some((x) => x.containerPort === p)
                                             : ports.some((x) => x.name === p);
            if (!ok) {
                fail(where, `container ${c.name}: ${probe} port ${p} is not a container port`);
            }
        }
        if (!c.resources?.requests || !c.resources?.limits) {
            fail(where, `container ${c.name}: resources.requests and .limits are required`);
        }
        if (!c.readinessProbe || !c.livenessProbe) {
            fail(where, `container ${c.name}: readiness and liveness probes are required`);
        }
    }
}

for (const s of byKind("Service")) {
    const where = `Service/${s.metadata.name}`;
    const sel = workloads.filter((w) => matches(s.spec.selector, w.spec.template.metadata?.labels));
    if (sel.length === 0) {
        fail(where, "selector matches no Deployment or StatefulSet pod template");
        continue;
    }
    for (const p of s.spec.ports ?? []) {
        const t = p.targetPort ?? p.port;
        for (const w of sel) {
            const cps = containerPorts(w);
            const ok = typeof t === "number" ? cps.some((x) => x.containerPort === t)
                                             : cps.some((x) => x.name === t);
            if (!ok) {
                fail(where, `port ${p.name}: targetPort ${t} not exposed by ${w.kind}/${w.metadata.name}`);
            }
        }
    }
}

for (const pdb of byKind("PodDisruptionBudget")) {
    if (!workloads.some((w) => matches(pdb.spec.selector?.matchLabels, w.spec.template.metadata?.labels))) {
        fail(`PodDisruptionBudget/${pdb.metadata.name}`, "selector matches no workload");
    }
}
for (const h of byKind("HorizontalPodAutoscaler")) {
    const t = h.spec.scaleTargetRef;
    if (!find(t.kind, t.name)) {
        fail(`HorizontalPodAutoscaler/${h.metadata.name}`, `target ${t.kind}/${t.name} not defined`);
    }
}

const ledgers = byKind("StatefulSet");
for (const sts of ledgers) {
    const where = `StatefulSet/${sts.metadata.name}`;
    const svc = find("Service", sts.spec.serviceName);
    if (!svc || svc.spec.clusterIP !== "None") {
        fail(where, `serviceName ${sts.spec.serviceName} is not a headless Service`);
    } else if (!svc.spec.publishNotReadyAddresses) {
        fail(where, "headless Service must publish not-ready addresses (shards resolve their own names)");
    }
    if (!byKind("PodDisruptionBudget").some((p) => matches(p.spec.selector?.matchLabels, sts.spec.template.metadata?.labels))) {
        fail(where, "no PodDisruptionBudget covers it");
    }
}

// Shard lines: NAME tcp://POD.SVC.NS.svc.cluster.local:PORT tcp://...:PORT HOST:PORT
for (const cm of byKind("ConfigMap")) {
    const conf = cm.data?.["capgate.conf"];
    if (!conf) {
        continue;
    }
    const where = `ConfigMap/${cm.metadata.name} capgate.conf`;
    const shards = conf.split("\n").map((l) => l.trim()).filter((l) => /^shard\s/.test(l));
    if (shards.length === 0) {
        fail(where, "no shard line");
    }
    shards.forEach((line, i) => {
        const [, name, req, pub, http] = line.split(/\s+/);
        if (name !== `s${i}`) {
            fail(where, `shard line ${i} is named ${name}; pod capgate-ledger-${i} serves s${i}`);
        }
        for (const addr of [req, pub, http]) {
            const m = /^(?:tcp:\/\/)?([^.:]+)\.([^.:]+)\.([^.:]+)\.svc\.cluster\.local:(\d+)$/.exec(addr ?? "");
            if (!m) {
                fail(where, `${name}: ${addr} is not a StatefulSet pod DNS name`);
                continue;
            }
            const [, pod, svcName, ns, port] = m;
            const sts = ledgers.find((s) => s.spec.serviceName === svcName && s.metadata.namespace === ns);
            if (!sts) {
                fail(where, `${name}: no StatefulSet behind headless Service ${svcName}.${ns}`);
                continue;
            }
            const ord = Number(pod.slice(sts.metadata.name.length + 1));
            if (!pod.startsWith(sts.metadata.name + "-") || !(ord >= 0 && ord < sts.spec.replicas)) {
                fail(where, `${name}: ${pod} is not a pod of StatefulSet ${sts.metadata.name} (replicas ${sts.spec.replicas})`);
            }
            if (ord !== i) {
                fail(where, `${name}: points at pod ${pod}, but pod ordinal ${i} serves it`);
            }
            if (!containerPorts(sts).some((p) => p.containerPort === Number(port))) {
                fail(where, `${name}: port ${port} is not exposed by the ledger pods`);
            }
        }
    });
    const sts = ledgers[0];
    if (sts && shards.length !== sts.spec.replicas) {
        fail(where, `${shards.length} shard lines but ${sts.spec.replicas} ledger replicas`);
    }
}

// ---- 3. compose ----
const compose = YAML.parse(fs.readFileSync(composePath, "utf8"));
const svcs = compose.services ?? {};
const cw = (n, msg) => fail(`${path.basename(composePath)} ${n}`, msg);
for (const s of ["ledger-s0", "ledger-s1", "ledger-s2"]) {
    const v = (svcs[s]?.volumes ?? []).find((x) => String(x).endsWith(":/var/lib/capgate"));
    const vol = v && String(v).split(":")[0];
    if (!vol || !(vol in (compose.volumes ?? {}))) {
        cw(s, "needs its own named volume at /var/lib/capgate");
    }
}
const lv = ["ledger-s0", "ledger-s1", "ledger-s2"].map(
    (s) => String((svcs[s]?.volumes ?? []).find((x) => String(x).endsWith(":/var/lib/capgate"))).split(":")[0]);
if (new Set(lv).size !== 3) {
    cw("ledger-*", "the three shards must not share a volume");
}
for (const need of ["gateway", "alerter", "demo", "sink", "lb"]) {
    if (!svcs[need]) {
        cw(need, "service missing");
    }
}
if (svcs.gateway?.ports?.length) {
    cw("gateway", "must not publish host ports (several replicas must fit; lb publishes)");
}
for (const [n, s] of Object.entries(svcs)) {
    if (!s.healthcheck) {
        cw(n, "no healthcheck");
    }
    if (s.image === "capgate:dev" && n !== "lb" &&
        !(s.volumes ?? []).some((v) => String(v).startsWith("./deploy/capgate.conf:"))) {
        cw(n, "config not mounted from deploy/");
    }
}

if (problems.length) {
    for (const p of problems) {
        console.log(`validate-deploy: ${p}`);
    }
    process.exit(1);
}
console.log(`validate-deploy: ${objects.length} Kubernetes objects valid against the schemas; ` +
    "cross-references and compose structure ok");
