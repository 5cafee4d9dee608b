//! The shipped `probes.toml`: the honeyDue probes of the data layer load with no environment set
//! (their `${VAR:-default}` placeholders fill in), with the intervals Neon's scale-to-zero needs.

use honeyguide::config::{Source, parse};

const DATA_PROBES: [&str; 4] = ["db-pooler", "db-direct", "redis", "asynq"];

/// No load error concerns the data-layer probes, and when the whole file loads they have the
/// expected kinds, targets and intervals (Neon probed every 5 minutes, not more often).
#[test]
fn data_layer_probes_of_the_shipped_config_load() {
    crate::support::init();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/probes.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let config = match parse(&Source::new(path, text), &|_| None) {
        Ok(config) => config,
        Err(errors) => {
            // Other kinds may still be stubs on this branch; only ours must be clean.
            for error in &errors.0 {
                assert!(
                    !DATA_PROBES
                        .iter()
                        .any(|name| error.key.starts_with(&format!("probe[{name}]"))),
                    "{error}"
                );
            }
            return;
        }
    };
    let probe = |name: &str| {
        config
            .probes
            .iter()
            .find(|probe| probe.name == name)
            .unwrap_or_else(|| panic!("no probe {name}"))
    };
    assert_eq!(
        probe("db-pooler").probe.target(),
        "ep-example-123456-pooler.us-east-2.aws.neon.tech:5432/honeyDue"
    );
    assert_eq!(
        probe("db-direct").probe.target(),
        "ep-example-123456.us-east-2.aws.neon.tech:5432/honeyDue"
    );
    for name in ["db-pooler", "db-direct"] {
        assert!(probe(name).interval >= std::time::Duration::from_secs(300));
    }
    assert_eq!(
        probe("redis").probe.target(),
        "redis://redis.honeydue.svc.cluster.local:6379/0"
    );
    assert_eq!(probe("asynq").kind().as_str(), "asynq");
}
