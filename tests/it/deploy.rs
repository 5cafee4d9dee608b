//! The deployment files agree with the code and the shipped configuration: what is deployed is
//! what `honeyguide validate` checked, and the dashboard queries metrics that exist.

use std::collections::BTreeSet;
use std::path::Path;

fn repo_path(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn repo(path: &str) -> String {
    let full = repo_path(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

/// Every rule file is in the config map the kustomization generates, and nothing else is.
#[test]
fn the_alerts_config_map_lists_every_rule_file() {
    let shipped: BTreeSet<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".toml"))
            .collect();
    let listed: BTreeSet<String> = repo("deploy/k8s/kustomization.yaml")
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- ../../alerts/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, shipped);
}

fn deployment_sets(variable: &str) -> bool {
    repo("deploy/k8s/deployment.yaml").contains(&format!("- name: {variable}"))
}

/// Every `${VAR}` that probes.toml reads (also in its commented-out notifier examples, which an
/// operator enables by uncommenting) is in the example Secret the Deployment loads.
#[test]
fn the_secret_carries_every_variable_probes_toml_reads() {
    let probes = repo("probes.toml");
    let secret = repo("deploy/k8s/secret.example.yaml");
    let mut missing = Vec::new();
    for line in probes.lines() {
        for reference in line.split("${").skip(1) {
            let name: String = reference
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // HONEYGUIDE_LISTEN is the daemon's own port, set in the Deployment's container port;
            // HONEYGUIDE_VANTAGE is set in the Deployment beside the scrape config's label.
            if name.is_empty()
                || name == "VAR"
                || name == "HONEYGUIDE_LISTEN"
                || (name == "HONEYGUIDE_VANTAGE" && deployment_sets(&name))
            {
                continue;
            }
            if !secret.contains(&format!("  {name}: ")) {
                missing.push(name);
            }
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "not in deploy/k8s/secret.example.yaml: {missing:?}"
    );
}

/// Every metric the Grafana dashboard queries is one honeyguide writes.
#[test]
fn the_dashboard_queries_existing_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo("deploy/grafana-dashboard.json")).unwrap();
    let mut sources = String::new();
    collect_sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("probe_") || word.starts_with("honeyguide_") {
                    queried.insert(word.trim_end_matches("_bucket").to_owned());
                }
            }
        }
    }
    assert!(queried.len() > 15, "{queried:?}");
    let unknown: Vec<_> = queried
        .iter()
        .filter(|name| !sources.contains(&format!("\"{name}\"")))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics nothing writes: {unknown:?}"
    );
}

fn collect_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_sources(&path, out);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The Deployment runs as the image's unprivileged user and checks /healthz.
#[test]
fn the_deployment_runs_unprivileged_with_health_checks() {
    let deployment = repo("deploy/k8s/deployment.yaml");
    let dockerfile = repo("Dockerfile");
    assert!(dockerfile.contains("USER 10001:10001"), "{dockerfile}");
    assert!(deployment.contains("runAsNonRoot: true"));
    assert!(deployment.contains("runAsUser: 10001"));
    assert_eq!(
        deployment.matches("path: /healthz").count(),
        2,
        "liveness and readiness"
    );
}

/// The systemd unit for the outside instance is valid (`systemd-analyze verify`, warnings
/// included, against the binary under test) and hardened as deploy/README.md says: its own
/// user, a private state directory for the store, a read-only system, no new privileges,
/// reload by SIGHUP, restart on failure.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let analyze = crate::support::require_binary("/usr/bin/systemd-analyze", "systemd");
    let unit = repo("deploy/systemd/honeyguide.service");
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=honeyguide",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(
            unit.lines().any(|line| line.trim() == setting),
            "the unit lacks `{setting}`"
        );
    }
    let dir = crate::support::TempDir::new("systemd");
    let path = dir.path().join("honeyguide.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/honeyguide",
            env!("CARGO_BIN_EXE_honeyguide"),
        ),
    )
    .unwrap();
    let output = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned:\n{said}"
    );
}

/// The outside instance's vmagent unit verifies, ships with `vantage` on every series, and the
/// in-cluster scrape names the same vantage as the deployment, so the two instances' series are
/// told apart in VictoriaMetrics.
#[test]
fn every_shipped_instance_ships_its_vantage() {
    let analyze = crate::support::require_binary("/usr/bin/systemd-analyze", "systemd");
    crate::support::require_binary("/usr/bin/vmagent", "victoria-metrics");
    let unit = repo("deploy/systemd/vmagent-honeyguide.service");
    assert!(
        unit.contains("-remoteWrite.label=vantage=${VANTAGE}"),
        "{unit}"
    );
    let output = std::process::Command::new(analyze)
        .arg("verify")
        .arg(repo_path("deploy/systemd/vmagent-honeyguide.service"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && said.trim().is_empty(), "{said}");

    let deployment = repo("deploy/k8s/deployment.yaml");
    let scrape = repo("deploy/k8s/vmagent-scrape.yaml");
    let env_vantage = deployment
        .split("name: HONEYGUIDE_VANTAGE")
        .nth(1)
        .and_then(|rest| rest.lines().nth(1))
        .and_then(|line| line.trim().strip_prefix("value: "))
        .expect("the deployment sets HONEYGUIDE_VANTAGE");
    assert!(
        scrape.contains(&format!("vantage: {env_vantage}")),
        "the scrape config labels another vantage than `{env_vantage}`:\n{scrape}"
    );
    assert!(repo("probes.toml").contains("vantage = \"${HONEYGUIDE_VANTAGE:-}\""));
}

/// The RBAC of deploy/k8s grants every request the `kubernetes` probe makes, read-only, to
/// the ServiceAccount the Deployment runs as: found by running the probe (with the shipped
/// workloads of the honeyDue cluster) against the test API server and checking each request it
/// made against the ClusterRole's rules, as the API server's authorizer would.
#[tokio::test]
async fn the_cluster_role_grants_what_the_kubernetes_probe_requests() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};

    use crate::support::kube_api::{Cluster, KubeApi, TOKEN, WORKLOADS};

    let text = repo("deploy/k8s/rbac.yaml");
    let documents: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(documents.len(), 3, "ServiceAccount, ClusterRole, binding");
    let account: ServiceAccount = serde_saphyr::from_str(documents[0]).unwrap();
    let role: ClusterRole = serde_saphyr::from_str(documents[1]).unwrap();
    let binding: ClusterRoleBinding = serde_saphyr::from_str(documents[2]).unwrap();
    let account_name = account.metadata.name.clone().unwrap();
    assert!(
        repo("deploy/k8s/deployment.yaml").contains(&format!("serviceAccountName: {account_name}")),
        "the Deployment runs as the ServiceAccount"
    );
    assert!(repo("deploy/k8s/kustomization.yaml").contains("  - rbac.yaml\n"));
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.clone().unwrap_or_default();
    assert!(
        subjects
            .iter()
            .any(|subject| subject.kind == "ServiceAccount"
                && subject.name == account_name
                && subject.namespace.as_deref() == Some("honeydue")),
        "{subjects:?}"
    );
    let rules: Vec<PolicyRule> = role.rules.clone().unwrap_or_default();
    for rule in &rules {
        for verb in &rule.verbs {
            assert!(
                ["get", "list", "watch"].contains(&verb.as_str()),
                "the ClusterRole must be read-only, not `{verb}`"
            );
        }
    }

    crate::support::init();
    let api = KubeApi::start(Cluster::honeydue()).await;
    let dir = crate::support::TempDir::new("rbac");
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    std::fs::write(dir.path().join("ca.crt"), api.ca.pem()).unwrap();
    let workloads: Vec<String> = WORKLOADS.iter().map(|w| format!("\"{w}\"")).collect();
    let toml = format!(
        "[[probe]]\nname = \"k8s\"\nkind = \"kubernetes\"\nservice_account_dir = \"{}\"\n\
         workloads = [{}]\n",
        dir.path().display(),
        workloads.join(", ")
    );
    let port = api.addr.port().to_string();
    let config = crate::support::probes::load_with_env(
        dir.path(),
        &toml,
        &[
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", &port),
        ],
    );
    let result = crate::support::probes::run_named(&config, "k8s").await;
    assert!(result.ok, "{result:?}");
    let seen = api.seen();
    assert!(seen.len() > 10, "{seen:?}");
    for request in &seen {
        let (method, target) = request.split_once(' ').unwrap();
        assert_eq!(method, "GET", "the probe only reads");
        let path = target.split('?').next().unwrap();
        assert!(
            granted(&rules, path),
            "the ClusterRole does not grant `{request}`"
        );
    }
}

/// Whether `rules` allow a GET of `path`: a non-resource URL, or `get` (a named object) or
/// `list` (a collection) of a resource in its API group.
fn granted(rules: &[k8s_openapi::api::rbac::v1::PolicyRule], path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => {
            return rules.iter().any(|rule| {
                rule.verbs.iter().any(|verb| verb == "get")
                    && rule.non_resource_urls.iter().flatten().any(|url| {
                        url == path
                            || url
                                .strip_suffix('*')
                                .is_some_and(|prefix| path.starts_with(prefix))
                    })
            });
        }
    };
    let rest = match rest {
        ["namespaces", _namespace, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, verb) = match rest {
        [resource] => (*resource, "list"),
        [resource, _name] => (*resource, "get"),
        _ => return false,
    };
    rules.iter().any(|rule| {
        rule.verbs.iter().any(|allowed| allowed == verb)
            && rule
                .api_groups
                .iter()
                .flatten()
                .any(|allowed| allowed == group)
            && rule
                .resources
                .iter()
                .flatten()
                .any(|allowed| allowed == resource)
    })
}
