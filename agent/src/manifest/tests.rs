//! Tests of parsing, validation and defaults, driven through [`check`] so the API can change
//! without rewriting each test.

use serde_json::{Value, json};

use super::*;

/// Parses one YAML document and returns the rendered errors of `prepare`, or the stored value.
fn prep(yaml: &str) -> Result<Value, Vec<String>> {
    let docs = split_documents(yaml, "t.yaml").map_err(|e| vec![e.to_string()])?;
    assert_eq!(docs.len(), 1, "one document expected");
    prepare(docs.into_iter().next().unwrap().value)
        .map_err(|es| es.into_iter().map(|e| e.to_string()).collect())
}

/// Asserts that `yaml` is refused with exactly these errors (each `path: message` prefix).
fn check(yaml: &str, expected: &[&str]) {
    let errs = prep(yaml).expect_err("should be refused");
    assert_eq!(errs.len(), expected.len(), "errors: {errs:#?}");
    for (got, want) in errs.iter().zip(expected) {
        assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
    }
}

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: flotilla.local/busybox:1
        command: [httpd, -f, -p, "8080"]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {port: http}}
        resources: {limits: {memory: 64Mi, cpu: 250m}}
"#;

#[test]
fn a_valid_deployment_gets_kubernetes_defaults() {
    let v = prep(DEPLOY).unwrap();
    assert_eq!(v["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
    let pod = &v["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    let c = &pod["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/");
    assert_eq!(
        c["resources"]["requests"]["memory"], "64Mi",
        "requests default to limits"
    );
    assert!(v.get("status").is_none());
    // Unset fields are left out, as Kubernetes prints them.
    assert!(c.get("env").is_none() && c.get("workingDir").is_none());
}

#[test]
fn port_out_of_range_names_the_path() {
    let y = DEPLOY.replace("containerPort: 8080", "containerPort: 70000");
    let errs = prep(&y).unwrap_err();
    assert_eq!(
        errs,
        vec!["spec.template.spec.containers[0].ports[0].containerPort: 70000 is not in 1-65535"]
    );
}

#[test]
fn every_bad_field_is_reported_at_once() {
    let y = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: Web_1}
spec:
  replicas: -2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: a, image: x, ports: [{containerPort: 80}, {containerPort: 80}]}
      - {name: a, image: ""}
"#;
    check(
        y,
        &[
            "metadata.name: \"Web_1\" is not a DNS-1123 subdomain",
            "spec.replicas: -2 must be greater than or equal to 0",
            "spec.template.metadata.labels: selector \"app=api\" does not match",
            "spec.template.spec.containers[0].ports[1].containerPort: duplicate port 80/TCP",
            "spec.template.spec.containers[1].name: duplicate container name \"a\"",
            "spec.template.spec.containers[1].image: required",
        ],
    );
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let y = DEPLOY.replace("image: flotilla", "imagee: oops\n        image: flotilla");
    check(
        &y,
        &["spec.template.spec.containers[0].imagee: unknown field `imagee`"],
    );
}

/// An unknown field, a wrong type and a bad value in one document: three lines, and a field
/// Kubernetes has that Flotilla does not support is said to be so, not called unknown.
#[test]
fn unknown_wrong_type_bad_value_and_unsupported_fields_all_at_once() {
    let y = DEPLOY
        .replace("replicas: 3", "replicas: three\n  colour: red")
        .replace("image: flotilla", "imagee: oops\n        image: flotilla");
    let y = format!("{y}      shareProcessNamespace: true\n");
    let y = y.replace("metadata: {name: web,", "metadata: {name: Web_1,");
    check(
        &y,
        &[
            "spec.replicas: invalid type: string \"three\"",
            "spec.colour: unknown field `colour`",
            "spec.template.spec.containers[0].imagee: unknown field `imagee`",
            "spec.template.spec.shareProcessNamespace: not supported by Flotilla yet",
            "metadata.name: \"Web_1\" is not a DNS-1123 subdomain",
        ],
    );
    // A container port's hostIP, as Kubernetes spells it, is a field.
    let ok = DEPLOY.replace(
        "containerPort: 8080,",
        "containerPort: 8080, hostIP: 127.0.0.1,",
    );
    assert!(ok.contains("hostIP"), "{ok}");
    prep(&ok).unwrap();
}

/// With unknown fields dropped (fieldValidation=Ignore), a field Kubernetes does not know is
/// left out and named; one Flotilla does not support is still refused.
#[test]
fn dropping_unknown_fields_never_drops_a_supported_or_unsupported_one() {
    let doc = |y: &str| split_documents(y, "t.yaml").unwrap().remove(0).value;
    let y = DEPLOY.replace("replicas: 3", "replicas: 3\n  colour: red");
    let (v, dropped) = prepare_with(doc(&y), Unknown::Drop).unwrap();
    assert_eq!(dropped, ["spec.colour"]);
    assert!(v["spec"].get("colour").is_none());
    assert_eq!(v["spec"]["replicas"], 3);
    let y = format!("{DEPLOY}      shareProcessNamespace: true\n");
    let e = prepare_with(doc(&y), Unknown::Drop).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message.starts_with("not supported by Flotilla yet"),
        "{e:?}"
    );
}

#[test]
fn wrong_types_are_refused_with_their_path() {
    let y = DEPLOY.replace("replicas: 3", "replicas: three");
    check(&y, &["spec.replicas: invalid type: string \"three\""]);
    let y = DEPLOY.replace("command: [httpd, -f, -p, \"8080\"]", "command: httpd");
    check(
        &y,
        &[
            "spec.template.spec.containers[0].command: invalid type: string \"httpd\", expected a list",
        ],
    );
}

#[test]
fn unsupported_kinds_and_versions() {
    check(
        "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n",
        &["kind: unsupported kind \"Widget\""],
    );
    check(
        "apiVersion: v1\nkind: Deployment\nmetadata: {name: w}\n",
        &["apiVersion: Deployment is served as \"apps/v1\""],
    );
    check("apiVersion: v1\nmetadata: {name: w}\n", &["kind: required"]);
    check(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n}\n",
        &["kind: Node objects are written by the agents"],
    );
    check(
        "- a\n- b\n",
        &["expected an object with apiVersion and kind, got a list"],
    );
}

#[test]
fn missing_required_fields() {
    check(
        "apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{image: x}]}\n",
        &[
            "metadata.name: required",
            "spec.containers[0].name: required",
        ],
    );
    check(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n",
        &["spec.containers: required"],
    );
    check(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: r}\nspec: {template: {spec: {containers: [{name: c, image: x}]}}}\n",
        &["spec.selector: required"],
    );
}

#[test]
fn invalid_yaml_says_where() {
    let e = split_documents("a: [1, 2\nb: c\n", "bad.yaml").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("bad.yaml, document 1: invalid YAML"), "{s}");
    assert!(s.contains("line"), "{s}");
}

#[test]
fn documents_are_numbered_and_lists_expanded() {
    let text = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: c}}\n";
    let docs = split_documents(text, "f.yaml").unwrap();
    let got: Vec<(usize, &str)> = docs
        .iter()
        .map(|d| (d.document, d.value["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(got, vec![(1, "a"), (2, "b"), (2, "c")]);
    // JSON is YAML.
    let docs = split_documents(
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"j"}}"#,
        "f.json",
    )
    .unwrap();
    assert_eq!(docs.len(), 1);
}

#[test]
fn service_rules() {
    let svc = |spec: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {spec}\n")
    };
    let ok = prep(&svc(
        "{selector: {app: web}, ports: [{port: 80, targetPort: http}]}",
    ))
    .unwrap();
    assert_eq!(ok["spec"]["type"], "ClusterIP");
    assert_eq!(ok["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(ok["spec"]["sessionAffinity"], "None");
    let ok = prep(&svc("{ports: [{port: 80}], sessionAffinity: ClientIP}")).unwrap();
    assert_eq!(ok["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(
        ok["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        10800
    );
    check(&svc("{ports: []}"), &["spec.ports: required"]);
    check(
        &svc("{ports: [{port: 80, nodePort: 30080}]}"),
        &["spec.ports[0].nodePort: only allowed when spec.type is NodePort"],
    );
    check(
        &svc("{type: NodePort, ports: [{port: 80, nodePort: 80}]}"),
        &["spec.ports[0].nodePort: 80 is not in the NodePort range"],
    );
    check(
        &svc("{ports: [{port: 80}, {port: 81}]}"),
        &[
            "spec.ports[0].name: required",
            "spec.ports[1].name: required",
        ],
    );
    check(
        &svc("{ports: [{name: a, port: 80}, {name: b, port: 80}]}"),
        &["spec.ports[1].port: duplicate port 80/TCP"],
    );
    check(
        &svc("{type: LoadBalancer, ports: [{port: 80}]}"),
        &["spec.type: \"LoadBalancer\" is not supported"],
    );
}

#[test]
fn pod_rules() {
    let pod =
        |spec: &str| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec: {spec}\n");
    check(
        &pod("{containers: [{name: c, image: x}], restartPolicy: Sometimes}"),
        &["spec.restartPolicy: \"Sometimes\" is not one of"],
    );
    check(
        &pod("{containers: [{name: c, image: x, volumeMounts: [{name: data, mountPath: /d}]}]}"),
        &["spec.containers[0].volumeMounts[0].name: volume \"data\" is not in spec.volumes"],
    );
    check(
        &pod("{volumes: [{name: v}], containers: [{name: c, image: x}]}"),
        &["spec.volumes[0]: must have one source"],
    );
    check(
        &pod("{containers: [{name: c, image: x, livenessProbe: {tcpSocket: {port: web}}}]}"),
        &[
            "spec.containers[0].livenessProbe.tcpSocket.port: \"web\" is not the name of one of the container's ports",
        ],
    );
    // What the node would not do is refused, never accepted and ignored (an HTTPS probe is
    // run, so it is taken).
    check(
        &pod(
            "{containers: [{name: c, image: x, readinessProbe: {httpGet: {port: 8443, scheme: HTTPS}}, lifecycle: {postStart: {exec: {command: [\"true\"]}}, preStop: {httpGet: {port: 80}}}}]}",
        ),
        &[
            "spec.containers[0].lifecycle.postStart: not supported by Flotilla yet",
            "spec.containers[0].lifecycle.preStop.httpGet: not supported by Flotilla yet",
        ],
    );
    // A preStop pause is run; it must end within the grace period, and postStart is not run.
    prep(&pod(
        "{containers: [{name: c, image: x, lifecycle: {preStop: {sleep: {seconds: 5}}}}]}",
    ))
    .unwrap();
    check(
        &pod(
            "{terminationGracePeriodSeconds: 10, containers: [{name: c, image: x, lifecycle: {preStop: {sleep: {seconds: 20}}}}, {name: d, image: x, lifecycle: {preStop: {sleep: {seconds: 0}}}}]}",
        ),
        &[
            "spec.containers[0].lifecycle.preStop.sleep.seconds: Invalid value: 20: must be greater than 0 and less than terminationGracePeriodSeconds (10)",
            "spec.containers[1].lifecycle.preStop.sleep.seconds: Invalid value: 0: must be greater than 0",
        ],
    );
    check(
        &pod(
            "{containers: [{name: c, image: x, lifecycle: {preStop: {sleep: {seconds: 1}, exec: {command: [\"true\"]}}}}]}",
        ),
        &[
            "spec.containers[0].lifecycle.preStop: must have exactly one of exec, httpGet, tcpSocket, sleep",
        ],
    );
    check(
        &pod("{containers: [{name: c, image: x, resources: {limits: {memory: lots}}}]}"),
        &["spec.containers[0].resources.limits[memory]: \"lots\" is not a quantity"],
    );
    check(
        &pod(
            "{containers: [{name: c, image: x, resources: {limits: {cpu: 1}, requests: {cpu: 2}}}]}",
        ),
        &[
            "spec.containers[0].resources.requests[cpu]: must be less than or equal to the cpu limit",
        ],
    );
    check(
        &pod(
            "{containers: [{name: c, image: x, env: [{name: A, value: b, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}]}",
        ),
        &["spec.containers[0].env[0]: may not have both value and valueFrom"],
    );
    check(
        &pod(
            "{containers: [{name: c, image: x}], tolerations: [{key: k, operator: Exists, value: v}]}",
        ),
        &["spec.tolerations[0].value: must be empty when operator is Exists"],
    );
    check(
        &pod(
            "{containers: [{name: c, image: x}], affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: cores, operator: Gt, values: [many]}, {key: zone, operator: Near, values: [a]}]}]}, preferredDuringSchedulingIgnoredDuringExecution: [{weight: 0, preference: {matchFields: [{key: metadata.labels, operator: In, values: [x]}]}}]}}}",
        ),
        &[
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values: must be one integer for Gt",
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].operator: \"Near\" is not one of In, NotIn, Exists, DoesNotExist, Gt, Lt",
            "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: 0 is not in 1-100",
            "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchFields[0].key: \"metadata.labels\" is not supported: only metadata.name",
        ],
    );
    check(
        &pod(
            "{containers: [{name: c, image: x}], topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: Sometimes}]}",
        ),
        &[
            "spec.topologySpreadConstraints[0].maxSkew: 0 must be greater than 0",
            "spec.topologySpreadConstraints[0].whenUnsatisfiable: \"Sometimes\" is not one of DoNotSchedule, ScheduleAnyway",
        ],
    );
    let v = prep(&pod("{containers: [{name: c, image: busybox, ports: [{containerPort: 80}]}], volumes: [{name: cfg, configMap: {name: c}}]}")).unwrap();
    assert_eq!(
        v["spec"]["containers"][0]["imagePullPolicy"], "Always",
        "untagged image means latest"
    );
    assert_eq!(v["spec"]["volumes"][0]["configMap"]["defaultMode"], 420);
}

#[test]
fn job_rules_and_defaults() {
    let job = |extra: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: pi}}\nspec:\n  {extra}\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: x}}]\n"
        )
    };
    let v = prep(&job("backoffLimit: 2")).unwrap();
    assert_eq!(v["spec"]["completions"], 1);
    assert_eq!(
        v["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/job-name"],
        "pi"
    );
    assert_eq!(
        v["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "pi"
    );
    check(
        &job("parallelism: -1"),
        &["spec.parallelism: -1 must be greater than or equal to 0"],
    );
    let always = job("completions: 2").replace("restartPolicy: Never", "restartPolicy: Always");
    check(
        &always,
        &["spec.template.spec.restartPolicy: \"Always\" is not allowed here"],
    );
}

#[test]
fn secrets_merge_string_data_and_check_base64() {
    let v = prep(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: hunter2}\n",
    )
    .unwrap();
    assert_eq!(v["data"]["password"], "aHVudGVyMg==");
    assert_eq!(v["type"], "Opaque");
    assert!(v.get("stringData").is_none());
    check(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: \"!!\"}\n",
        &["data[k]: is not valid base64"],
    );
}

#[test]
fn names_and_labels() {
    check(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n",
        &["metadata.name: \"a.b\" is not a DNS-1123 label"],
    );
    check(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {\"-x\": y, ok: \"bad value!\"}}\n",
        &[
            "metadata.labels[-x]: key must be letters",
            "metadata.labels[ok]: value \"bad value!\" must be",
        ],
    );
    check(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n",
        &["metadata.namespace: not allowed"],
    );
    let v =
        prep("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a.conf: x}\n").unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a.conf": "x"}})
    );
}

#[test]
fn rolling_update_bounds() {
    let y = DEPLOY.replace(
        "replicas: 3",
        "replicas: 3\n  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}",
    );
    check(
        &y,
        &["spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0"],
    );
    let y = DEPLOY.replace(
        "replicas: 3",
        "replicas: 3\n  strategy: {rollingUpdate: {maxSurge: 150%}}",
    );
    check(
        &y,
        &["spec.strategy.rollingUpdate.maxSurge: \"150%\" must be an integer or a percentage"],
    );
}

/// The controllers read stored objects as Kubernetes' own types and write them back: every
/// object `prepare` stores must decode into its k8s-openapi type and encode to exactly the
/// same JSON (so nothing a user wrote is lost on the way, and a pod template hashes the same
/// read either way, so an upgrade starts no rollout).
#[test]
fn prepared_objects_round_trip_through_kubernetes_types() {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    use lifecycle::{Object, decode, encode};
    fn same<T: Object>(v: &Value) {
        let t: T =
            decode(v.clone()).unwrap_or_else(|e| panic!("{} does not decode: {e}\n{v:#}", T::KIND));
        assert_eq!(
            &encode(&t),
            v,
            "{} changed on the way through its type",
            T::KIND
        );
    }
    let pod_spec = r#"
      initContainers:
      - {name: init, image: flotilla.local/busybox:1, command: [sh, -c, "true"]}
      containers:
      - name: web
        image: flotilla.local/busybox:1
        imagePullPolicy: Never
        command: [httpd, -f, -p, "8080"]
        args: ["-v"]
        workingDir: /srv
        env:
        - {name: MODE, value: fast}
        - name: FROM_MAP
          valueFrom: {configMapKeyRef: {name: settings, key: mode}}
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        envFrom: [{secretRef: {name: creds}}]
        ports: [{containerPort: 8080, name: http, hostPort: 18080, hostIP: 127.0.0.1}]
        resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: "1", memory: 128Mi}}
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 2}
        livenessProbe: {tcpSocket: {port: 8080}, initialDelaySeconds: 5}
        startupProbe: {exec: {command: ["true"]}, failureThreshold: 30}
        lifecycle: {preStop: {exec: {command: [sleep, "1"]}}}
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: conf, mountPath: /etc/conf, readOnly: true}
        securityContext: {runAsUser: 1000, readOnlyRootFilesystem: true}
      volumes:
      - {name: data, emptyDir: {}}
      - name: conf
        configMap: {name: settings, items: [{key: mode, path: mode.txt}]}
      nodeSelector: {kubernetes.io/arch: arm64}
      tolerations: [{key: dedicated, operator: Equal, value: edge, effect: NoSchedule}]
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 10
            preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}
      terminationGracePeriodSeconds: 5
"#;
    let indent = |s: &str, n: usize| {
        s.lines()
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{}{l}", " ".repeat(n))
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let template = |n: usize| {
        format!(
            "{p}template:\n{p}  metadata: {{labels: {{app: web}}, annotations: {{note: x}}}}\n{p}  spec:\n{}",
            indent(pod_spec.trim_start_matches('\n'), n - 4),
            p = " ".repeat(n - 6)
        )
    };
    let docs = [
        ("Pod".to_string(), format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: web, labels: {{app: web}}}}\nspec:\n{}", indent(pod_spec.trim_start_matches('\n'), 0).replace("\n      ", "\n  ").replacen("      ", "  ", 1))),
        ("Deployment".into(), format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, annotations: {{kubernetes.io/change-cause: first}}}}\nspec:\n  replicas: 3\n  revisionHistoryLimit: 4\n  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 25%, maxUnavailable: 1}}}}\n  selector: {{matchLabels: {{app: web}}}}\n{}", template(8))),
        ("ReplicaSet".into(), format!("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  selector: {{matchExpressions: [{{key: app, operator: In, values: [web]}}]}}\n{}", template(8))),
        ("DaemonSet".into(), format!("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: web}}\nspec:\n  updateStrategy: {{type: RollingUpdate, rollingUpdate: {{maxUnavailable: 10%}}}}\n  selector: {{matchLabels: {{app: web}}}}\n{}", template(8))),
        ("Job".into(), format!("apiVersion: batch/v1\nkind: Job\nmetadata: {{name: once}}\nspec:\n  completions: 3\n  parallelism: 2\n  backoffLimit: 1\n{}", template(8).replace("terminationGracePeriodSeconds: 5", "restartPolicy: Never"))),
        ("Service".into(), "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080, protocol: TCP}]\n".into()),
        ("ConfigMap".into(), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n".into()),
        ("Namespace".into(), "apiVersion: v1\nkind: Namespace\nmetadata: {name: edge, labels: {team: a}}\n".into()),
    ];
    for (kind, yaml) in docs {
        let v = prep(&yaml).unwrap_or_else(|e| panic!("{kind}: {e:#?}\n{yaml}"));
        match kind.as_str() {
            "Pod" => same::<core::Pod>(&v),
            "Deployment" => same::<apps::Deployment>(&v),
            "ReplicaSet" => same::<apps::ReplicaSet>(&v),
            "DaemonSet" => same::<apps::DaemonSet>(&v),
            "Job" => same::<batch::Job>(&v),
            "Service" => same::<core::Service>(&v),
            "ConfigMap" => same::<core::ConfigMap>(&v),
            "Namespace" => same::<core::Namespace>(&v),
            k => unreachable!("{k}"),
        }
    }
}

const HPA: &str = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 3\n";

#[test]
fn autoscaler_defaults_as_kubernetes_fills_them() {
    let v = prep(HPA).unwrap();
    assert_eq!(v["spec"]["minReplicas"], 1);
    assert_eq!(
        v["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
    assert!(v["spec"].get("behavior").is_none(), "{v}");
    let v = prep(&format!(
        "{HPA}  behavior:\n    scaleDown: {{stabilizationWindowSeconds: 60}}\n"
    ))
    .unwrap();
    let b = &v["spec"]["behavior"];
    assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 60);
    assert_eq!(
        b["scaleDown"]["policies"],
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
    );
    assert_eq!(b["scaleUp"]["stabilizationWindowSeconds"], 0);
    assert_eq!(b["scaleUp"]["selectPolicy"], "Max");
    assert_eq!(
        b["scaleUp"]["policies"][0],
        json!({"type": "Pods", "value": 4, "periodSeconds": 15})
    );
}

#[test]
fn autoscaler_errors_all_at_once() {
    let y = HPA
        .replace("kind: Deployment", "kind: StatefulSet")
        .replace("maxReplicas: 3", "minReplicas: 0\n  maxReplicas: 0");
    let y = format!(
        "{y}  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization}}}}\n  - type: Pods\n    pods: {{metric: {{name: rps}}, target: {{type: AverageValue, averageValue: '1'}}}}\n  - type: Resource\n    resource: {{name: nvidia.com/gpu, target: {{type: Utilization, averageUtilization: 50}}}}\n  behavior:\n    scaleUp: {{selectPolicy: Fastest, policies: [{{type: Pods, value: 0, periodSeconds: 3600}}]}}\n"
    );
    check(
        &y,
        &[
            "spec.metrics[1].pods: not supported by Flotilla yet",
            "spec.scaleTargetRef.kind: \"StatefulSet\": scaling a StatefulSet is not supported by Flotilla yet",
            "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
            "spec.maxReplicas: Invalid value: 0: must be greater than 0",
            "spec.metrics[0].resource.target.averageUtilization: Required value",
            "spec.metrics[1].type: \"Pods\": metrics of this type are not supported by Flotilla yet",
            "spec.metrics[2].resource.name: \"nvidia.com/gpu\": Flotilla measures cpu and memory only",
            "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Fastest\"",
            "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
            "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 3600: must be less than or equal to 1800",
        ],
    );
}

const CRONJOB: &str = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: tick}\nspec:\n  schedule: '*/1 * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers: [{name: c, image: busybox}]\n";

#[test]
fn cronjob_defaults_as_kubernetes_fills_them() {
    let v = prep(CRONJOB).unwrap();
    let s = &v["spec"];
    assert_eq!(s["concurrencyPolicy"], "Allow");
    assert_eq!(s["suspend"], false);
    assert_eq!(s["successfulJobsHistoryLimit"], 3);
    assert_eq!(s["failedJobsHistoryLimit"], 1);
    let pod = &s["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 30, "{v}");
    assert!(
        s["jobTemplate"]["spec"].get("completions").is_none(),
        "a Job's own defaults come with each Job"
    );
}

#[test]
fn cronjob_errors_all_at_once() {
    let y = CRONJOB
        .replace("name: tick", &format!("name: {}", "t".repeat(53)))
        .replace("'*/1 * * * *'", "'CRON_TZ=UTC 0 * * *'\n  timeZone: Mars/Olympus\n  concurrencyPolicy: Sometimes\n  startingDeadlineSeconds: -5")
        .replace("restartPolicy: OnFailure", "restartPolicy: Always");
    check(
        &y,
        &[
            "metadata.name: Invalid value: \"ttttt",
            "spec.schedule: Invalid value: \"CRON_TZ=UTC 0 * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus",
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\"",
            "spec.startingDeadlineSeconds: -5 must be greater than or equal to 0",
            "spec.jobTemplate.spec.template.spec.restartPolicy",
        ],
    );
    check(
        &CRONJOB.replace("'*/1 * * * *'", "'61 * * * *'"),
        &["spec.schedule: Invalid value: \"61 * * * *\": "],
    );
    check(
        &CRONJOB.replace(
            "      template:",
            "      ttlSecondsAfterFinished: 10\n      backoffLimitPerIndex: 1\n      template:",
        ),
        &["spec.jobTemplate.spec.backoffLimitPerIndex: not supported by Flotilla yet"],
    );
}

#[test]
fn a_replication_controller_defaults_its_selector_and_labels_from_the_template() {
    let rc = "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: nginx}\nspec:\n  template:\n    metadata: {labels: {app: nginx}}\n    spec: {containers: [{name: c, image: nginx}]}\n";
    let v = prep(rc).unwrap();
    assert_eq!(v["spec"]["selector"], json!({"app": "nginx"}));
    assert_eq!(v["metadata"]["labels"], json!({"app": "nginx"}));
    assert_eq!(v["spec"]["replicas"], 1);
    check(
        &rc.replace(
            "spec:\n  template",
            "spec:\n  replicas: -1\n  selector: {app: web}\n  template",
        ),
        &[
            "spec.replicas: -1 must be greater than or equal to 0",
            "spec.template.metadata.labels: selector \"app=web\" does not match",
        ],
    );
    check(
        &rc.replace("metadata: {labels: {app: nginx}}", "metadata: {}"),
        &["spec.selector: required"],
    );
}

#[test]
fn job_modes_and_failure_policies_are_checked_as_kubernetes_does() {
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      restartPolicy: OnFailure\n      containers: [{name: c, image: busybox}]\n";
    let ok = job.replace(
        "spec:\n  template",
        "spec:\n  completionMode: Indexed\n  completions: 3\n  suspend: true\n  template",
    );
    let v = prep(&ok).unwrap();
    assert_eq!(v["spec"]["completionMode"], "Indexed");
    assert_eq!(v["spec"]["suspend"], true);
    check(
        &job.replace("spec:\n  template", "spec:\n  completionMode: Indexed\n  podFailurePolicy:\n    rules:\n    - {action: FailJob, onExitCodes: {containerName: nope, operator: Within, values: [0, 0]}}\n    - {action: FailIndex, onPodConditions: [{type: Ready, status: Maybe}]}\n    - {action: Ignore}\n  template"),
        &[
            "spec.completions: Required value: when completion mode is Indexed",
            "spec.template.spec.restartPolicy: Unsupported value: only \"Never\"",
            "spec.podFailurePolicy.rules[0].onExitCodes.operator: Unsupported value: \"Within\"",
            "spec.podFailurePolicy.rules[0].onExitCodes.values: Duplicate value",
            "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"nope\"",
            "spec.podFailurePolicy.rules[1].action: FailIndex needs backoffLimitPerIndex",
            "spec.podFailurePolicy.rules[1].onPodConditions[0].status: Unsupported value: \"Maybe\"",
            "spec.podFailurePolicy.rules[2]: specifying one of OnExitCodes and OnPodConditions is required",
        ],
    );
}

#[test]
fn pod_fields_that_would_do_nothing_are_refused_by_name() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true\n  priority: 1000\n  dnsPolicy: None\n  containers:\n  - name: c\n    image: busybox\n    terminationMessagePolicy: FallbackToLogsOnErr\n    securityContext: {allowPrivilegeEscalation: true}\n";
    check(
        pod,
        &[
            "spec.hostNetwork: true is not supported by Flotilla yet",
            "spec.priority: Forbidden: the integer value of priority (1000) must not be provided",
            "spec.dnsPolicy: \"None\" needs dnsConfig",
            "spec.containers[0].terminationMessagePolicy: Unsupported value: \"FallbackToLogsOnErr\"",
            "spec.containers[0].securityContext.allowPrivilegeEscalation: true is not supported",
        ],
    );
    let fine = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: false\n  dnsPolicy: ClusterFirstWithHostNet\n  containers:\n  - name: c\n    image: busybox\n    securityContext: {allowPrivilegeEscalation: false}\n";
    assert!(prep(fine).is_ok());
}

#[test]
fn an_autoscaler_may_target_a_replication_controller() {
    let y = HPA.replace(
        "{apiVersion: apps/v1, kind: Deployment, name: web}",
        "{apiVersion: v1, kind: ReplicationController, name: web}",
    );
    let v = prep(&y).unwrap();
    assert_eq!(v["spec"]["scaleTargetRef"]["kind"], "ReplicationController");
}
