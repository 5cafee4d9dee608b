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
