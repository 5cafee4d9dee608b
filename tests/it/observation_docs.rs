//! Each kind's observation table in `docs/probes/<kind>.md` (and the connection's, in
//! `connection.md`) is the one its schema renders: the docs cannot drift from what rules read.
//! `HONEYGUIDE_BLESS=1` rewrites the tables instead of failing.

use std::path::PathBuf;

use honeyguide::probe::schema::{self, Field};
use honeyguide::probe::{Kind, net};

const BEGIN: &str = "<!-- observations: generated from the kind's schema by \
                     `HONEYGUIDE_BLESS=1 cargo test --test it observation_docs`; do not edit -->";
const END: &str = "<!-- end of generated observations -->";

fn pages() -> Vec<(PathBuf, &'static [Field])> {
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/probes");
    let mut pages: Vec<(PathBuf, &'static [Field])> = Kind::ALL
        .iter()
        .map(|kind| (docs.join(format!("{kind}.md")), kind.schema().own()))
        .collect();
    pages.push((docs.join("connection.md"), net::OBSERVATIONS));
    pages
}

/// The page with its generated block replaced by `table`, or `None` without the markers.
fn with_table(page: &str, table: &str) -> Option<String> {
    let (before, rest) = page.split_once(BEGIN)?;
    let (_, after) = rest.split_once(END)?;
    Some(format!("{before}{BEGIN}\n{table}{END}{after}"))
}

#[test]
fn every_observation_table_is_the_schemas() {
    let bless = std::env::var_os("HONEYGUIDE_BLESS").is_some();
    let mut stale = Vec::new();
    for (path, fields) in pages() {
        let page = std::fs::read_to_string(&path).unwrap();
        let expected = with_table(&page, &schema::markdown(fields))
            .unwrap_or_else(|| panic!("{} has no generated observations block", path.display()));
        if expected == page {
            continue;
        }
        if bless {
            std::fs::write(&path, expected).unwrap();
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "observation tables differ from the schemas in {stale:?}: run \
         HONEYGUIDE_BLESS=1 cargo test --test it observation_docs, and review the diff"
    );
}

/// Every gauge a schema declares is named on its kind's page, so a user finds the series.
#[test]
fn every_declared_gauge_is_documented() {
    for (path, fields) in pages() {
        let page = std::fs::read_to_string(&path).unwrap();
        for gauge in fields.iter().filter_map(|field| field.gauge) {
            assert!(
                page.contains(gauge.name),
                "{} does not name {}",
                path.display(),
                gauge.name
            );
        }
    }
}
