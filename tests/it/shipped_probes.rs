//! The shipped `probes.toml`: the honeyDue probes of the data layer load with no environment set
//! (their `${VAR:-default}` placeholders fill in), with the intervals Neon's scale-to-zero needs.

use crate::support::probes::load_shipped;

/// The whole file loads, and the data-layer probes have the expected kinds, targets and
/// intervals (Neon probed every 5 minutes, not more often).
#[test]
fn data_layer_probes_of_the_shipped_config_load() {
    crate::support::init();
    let config = load_shipped();
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
