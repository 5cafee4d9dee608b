//! The `dns` probe against real dnsmasq servers: matching answers, answers outside the expected
//! ranges (suspected hijack), NXDOMAIN, a dead resolver next to a working one, resolvers that
//! disagree, the `system` resolver read from a resolv.conf, DNS over TLS, and config errors.

use std::time::Duration;

use honeyguide::probe::{ErrorClass, Value};

use crate::support::certs::TestCa;
use crate::support::dnsmasq::{Dnsmasq, DohFront, DotFront, Zone, silent_udp};
use crate::support::probes::{errors, load, metrics, observation, run_loaded, run_one};
use crate::support::{TempDir, init};

fn zone() -> Zone {
    Zone::new()
        .host("probe.test", "127.0.0.1")
        .host("probe.test", "127.0.0.2")
        .host("edge.test", "104.16.132.229")
        .cname("www.probe.test", "probe.test")
        .txt("probe.test", "v=honeyguide")
        .mx("probe.test", "mail.probe.test", 10)
}

fn probe_toml(extra: &str) -> String {
    format!("[[probe]]\nname = \"dns-test\"\nkind = \"dns\"\ntimeout = \"3s\"\n{extra}\n")
}

fn strings(values: &[&str]) -> Value {
    Value::from(values.to_vec())
}

/// A name whose answers are all in `expect_any_of`, asked over UDP and TCP, passes; every
/// resolver's entry says ok, and the metrics show the answer count and each resolver up.
#[tokio::test]
async fn matching_answers_pass_and_every_resolver_is_up() {
    init();
    let dns = Dnsmasq::start(zone());
    let dir = TempDir::new("dns");
    let toml = probe_toml(&format!(
        "query_name = \"probe.test\"\nresolvers = [\"{}\", \"{}\"]\n\
         expect_any_of = [\"127.0.0.1\", \"127.0.0.2\"]",
        dns.udp(),
        dns.tcp()
    ));
    let config = load(dir.path(), &toml);
    let result = run_loaded(&config, 0, Duration::from_secs(3)).await;

    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.message,
        "probe.test A: NOERROR 127.0.0.1, 127.0.0.2 (2 resolvers agree)"
    );
    assert_eq!(
        result.observations["answers"],
        strings(&["127.0.0.1", "127.0.0.2"])
    );
    assert_eq!(result.observations["rcode"], Value::from("NOERROR"));
    assert_eq!(result.observations["disagree"], Value::Bool(false));
    assert_eq!(result.observations["hijack_suspected"], Value::Bool(false));
    assert_eq!(result.observations["unexpected"], Value::List(vec![]));
    for resolver in [dns.udp(), dns.tcp()] {
        assert_eq!(
            observation(&result, &["resolvers", &resolver, "ok"]),
            &Value::Bool(true)
        );
    }
    assert!(result.phase("query").is_some());

    let text = metrics(&config, &result);
    assert!(
        text.contains("probe_dns_answer_rrs{probe=\"dns-test\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "honeyguide_dns_resolver_up{{probe=\"dns-test\",resolver=\"{}\"}} 1\n",
            dns.udp()
        )),
        "{text}"
    );
    assert!(
        text.contains("honeyguide_dns_hijack_suspected{probe=\"dns-test\"} 0\n"),
        "{text}"
    );
}

/// An answer outside the Cloudflare ranges is an `assertion` failure with `hijack_suspected`,
/// the offending address listed under `unexpected`, and the hijack gauge at 1.
#[tokio::test]
async fn answer_outside_cloudflare_ranges_is_a_suspected_hijack() {
    init();
    let dns = Dnsmasq::start(zone());
    let dir = TempDir::new("dns");
    let toml = probe_toml(&format!(
        "query_name = \"probe.test\"\nresolvers = [\"{}\"]\nexpect_in_cidrs = \"cloudflare\"",
        dns.udp()
    ));
    let config = load(dir.path(), &toml);
    let result = run_loaded(&config, 0, Duration::from_secs(3)).await;

    assert_eq!(result.error, Some(ErrorClass::Assertion), "{result:?}");
    assert_eq!(result.observations["hijack_suspected"], Value::Bool(true));
    assert_eq!(
        result.observations["unexpected"],
        strings(&["127.0.0.1", "127.0.0.2"])
    );
    assert_eq!(
        result.message,
        format!(
            "probe.test A: answers outside the expectation (1 of 1): {}: \
             NOERROR 127.0.0.1, 127.0.0.2; not expected: 127.0.0.1, 127.0.0.2",
            dns.udp()
        )
    );
    let text = metrics(&config, &result);
    assert!(
        text.contains("honeyguide_dns_hijack_suspected{probe=\"dns-test\"} 1\n"),
        "{text}"
    );

    // The same resolver, asked for a name that is inside the ranges, passes.
    let toml = probe_toml(&format!(
        "query_name = \"edge.test\"\nresolvers = [\"{}\"]\nexpect_in_cidrs = [\"cloudflare\"]",
        dns.udp()
    ));
    let inside = run_one(dir.path(), &toml).await;
    assert!(inside.ok, "{inside:?}");
}

/// NXDOMAIN is a `dns` failure with `rcode` NXDOMAIN, both overall and per resolver; with
/// `expect_rcode = "NXDOMAIN"` the same answer passes.
#[tokio::test]
async fn nxdomain_is_a_dns_failure_unless_expected() {
    init();
    let dns = Dnsmasq::start(zone());
    let dir = TempDir::new("dns");
    let toml = probe_toml(&format!(
        "query_name = \"nope.test\"\nresolvers = [\"{}\"]",
        dns.udp()
    ));
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Dns), "{result:?}");
    assert_eq!(result.observations["rcode"], Value::from("NXDOMAIN"));
    assert_eq!(
        observation(&result, &["resolvers", &dns.udp(), "rcode"]),
        &Value::from("NXDOMAIN")
    );
    assert_eq!(
        result.message,
        format!(
            "nope.test A: no resolver gave an answer (1 of 1): {}: NXDOMAIN",
            dns.udp()
        )
    );

    let expected = probe_toml(&format!(
        "query_name = \"nope.test\"\nresolvers = [\"{}\"]\nexpect_rcode = \"NXDOMAIN\"",
        dns.udp()
    ));
    let result = run_one(dir.path(), &expected).await;
    assert!(result.ok, "{result:?}");
}

/// A resolver that never answers, next to one that does: the run still reports before the
/// probe's timeout, as a `dns` failure naming the dead resolver, while the working resolver's
/// answers stay visible in `observations.resolvers`.
#[tokio::test]
async fn a_dead_resolver_is_named_while_the_others_still_report() {
    init();
    let dns = Dnsmasq::start(zone());
    let (_socket, silent) = silent_udp();
    let dir = TempDir::new("dns");
    let toml = probe_toml(&format!(
        "query_name = \"probe.test\"\nresolvers = [\"{}\", \"{silent}\"]\n\
         resolver_timeout = \"1s\"",
        dns.udp()
    ));
    let config = load(dir.path(), &toml);
    let result = run_loaded(&config, 0, Duration::from_secs(3)).await;

    assert_eq!(result.error, Some(ErrorClass::Dns), "{result:?}");
    assert_eq!(
        result.message,
        format!("probe.test A: resolver failed (1 of 2): {silent}: no answer within 1s")
    );
    assert_eq!(
        observation(&result, &["resolvers", &silent, "ok"]),
        &Value::Bool(false)
    );
    assert_eq!(
        observation(&result, &["resolvers", &silent, "rcode"]),
        &Value::Null
    );
    assert_eq!(
        observation(&result, &["resolvers", &dns.udp(), "answers"]),
        &strings(&["127.0.0.1", "127.0.0.2"])
    );
    assert_eq!(
        result.observations["answers"],
        strings(&["127.0.0.1", "127.0.0.2"])
    );
    let text = metrics(&config, &result);
    assert!(
        text.contains(&format!(
            "honeyguide_dns_resolver_up{{probe=\"dns-test\",resolver=\"{silent}\"}} 0\n"
        )),
        "{text}"
    );
}

/// Without `resolver_timeout`, a dead resolver gets 80% of the run's time: the run still ends
/// in `dns` (not the runner's `timeout`) with the dead resolver named.
#[tokio::test]
async fn the_default_resolver_budget_ends_before_the_probe_timeout() {
    init();
    let (_socket, silent) = silent_udp();
    let dir = TempDir::new("dns");
    let toml = format!(
        "[[probe]]\nname = \"dns-test\"\nkind = \"dns\"\ntimeout = \"1s\"\n\
         query_name = \"probe.test\"\nresolvers = [\"{silent}\"]\n"
    );
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Dns), "{result:?}");
    assert_eq!(
        observation(&result, &["resolvers", &silent, "message"]),
        &Value::from("no answer within 800ms")
    );
}

/// Two resolvers with different answers for one name: `disagree` is true, the union of the
/// answers is reported, and (with no expectation) the probe still passes.
#[tokio::test]
async fn resolvers_that_answer_differently_disagree() {
    init();
    let first = Dnsmasq::start(Zone::new().host("api.test", "192.0.2.10"));
    let second = Dnsmasq::start(Zone::new().host("api.test", "198.51.100.20"));
    let dir = TempDir::new("dns");
    let toml = probe_toml(&format!(
        "query_name = \"api.test\"\nresolvers = [\"{}\", \"{}\"]",
        first.udp(),
        second.udp()
    ));
    let config = load(dir.path(), &toml);
    let result = run_loaded(&config, 0, Duration::from_secs(3)).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(result.observations["disagree"], Value::Bool(true));
    assert_eq!(
        result.observations["answers"],
        strings(&["192.0.2.10", "198.51.100.20"])
    );
    assert_eq!(
        result.message,
        "api.test A: NOERROR 192.0.2.10, 198.51.100.20 (2 resolvers, answers differ)"
    );
    let text = metrics(&config, &result);
    assert!(
        text.contains("honeyguide_dns_resolvers_disagree{probe=\"dns-test\"} 1\n"),
        "{text}"
    );
}

/// CNAME, MX and TXT lookups return their values in the documented forms.
#[tokio::test]
async fn cname_mx_and_txt_answers_have_readable_forms() {
    init();
    let dns = Dnsmasq::start(zone());
    let dir = TempDir::new("dns");
    for (record_type, name, expected) in [
        ("CNAME", "www.probe.test", "probe.test"),
        ("MX", "probe.test", "10 mail.probe.test"),
        ("TXT", "probe.test", "v=honeyguide"),
    ] {
        let toml = probe_toml(&format!(
            "query_name = \"{name}\"\nrecord_type = \"{record_type}\"\nresolvers = [\"{}\"]\n\
             expect_any_of = [\"{expected}\"]",
            dns.udp()
        ));
        let result = run_one(dir.path(), &toml).await;
        assert!(result.ok, "{record_type}: {result:?}");
        assert_eq!(
            result.observations["answers"],
            strings(&[expected]),
            "{record_type}"
        );
    }
}

/// `system` reads its name servers from the resolv.conf it is given (here one that points at a
/// dnsmasq on port 53 of a loopback address), like the operating system would; when that
/// server is stopped, the probe fails as `dns` ("CoreDNS down").
#[tokio::test]
async fn system_resolver_follows_resolv_conf_and_fails_when_its_server_is_down() {
    init();
    let mut dns = Dnsmasq::start_on_port_53(zone());
    let dir = TempDir::new("dns");
    std::fs::write(
        dir.path().join("resolv.conf"),
        format!("nameserver {}\n", dns.addr.ip()),
    )
    .unwrap();
    let toml = probe_toml(
        "query_name = \"probe.test\"\nresolv_conf = \"resolv.conf\"\nresolver_timeout = \"1s\"",
    );
    let result = run_one(dir.path(), &toml).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        observation(&result, &["resolvers", "system", "answers"]),
        &strings(&["127.0.0.1", "127.0.0.2"])
    );

    dns.stop();
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Dns), "{result:?}");
    assert_eq!(
        observation(&result, &["resolvers", "system", "ok"]),
        &Value::Bool(false)
    );
}

/// A DNS-over-TLS resolver with the right certificate name answers; with a name the
/// certificate does not cover, the resolver fails and the message says so.
#[tokio::test]
async fn dns_over_tls_verifies_the_server_name() {
    init();
    let dns = Dnsmasq::start(zone());
    let ca = TestCa::new();
    let dir = TempDir::new("dns");
    let ca_path = ca.write_pem(dir.path());
    let dot = DotFront::start(&ca.leaf(&["dns.test"]), dns.addr).await;

    let good = format!("tls://{}#dns.test", dot.addr);
    let toml = probe_toml(&format!(
        "query_name = \"probe.test\"\nresolvers = [\"{good}\"]\nca_file = \"{}\"",
        ca_path.display()
    ));
    let result = run_one(dir.path(), &toml).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.observations["answers"],
        strings(&["127.0.0.1", "127.0.0.2"])
    );

    let wrong = format!("tls://{}#other.test", dot.addr);
    let toml = probe_toml(&format!(
        "query_name = \"probe.test\"\nresolvers = [\"{wrong}\"]\nca_file = \"{}\"\n\
         resolver_timeout = \"2s\"",
        ca_path.display()
    ));
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Dns), "{result:?}");
    assert_eq!(
        observation(&result, &["resolvers", &wrong, "message"]),
        &Value::from(
            "io error: invalid peer certificate: certificate not valid for name \"other.test\"; \
             certificate is only valid for DnsName(\"dns.test\")"
        )
    );
}

/// A DNS-over-HTTPS resolver (HTTP/2, default path `/dns-query`) answers like the others; a
/// path the server does not serve is a failed resolver whose message carries the HTTP status.
#[tokio::test]
async fn dns_over_https_answers_through_http2() {
    init();
    let dns = Dnsmasq::start(zone());
    let ca = TestCa::new();
    let dir = TempDir::new("dns");
    let ca_path = ca.write_pem(dir.path());
    let doh = DohFront::start(&ca.leaf(&["doh.test"]), dns.addr).await;

    let good = format!("https://{}#doh.test", doh.addr);
    let toml = probe_toml(&format!(
        "query_name = \"probe.test\"\nresolvers = [\"{good}\"]\nca_file = \"{}\"",
        ca_path.display()
    ));
    let result = run_one(dir.path(), &toml).await;
    assert!(result.ok, "{result:?}");
    assert_eq!(
        result.observations["answers"],
        strings(&["127.0.0.1", "127.0.0.2"])
    );

    let wrong_path = format!("https://{}/resolve#doh.test", doh.addr);
    let toml = probe_toml(&format!(
        "query_name = \"probe.test\"\nresolvers = [\"{wrong_path}\"]\nca_file = \"{}\"",
        ca_path.display()
    ));
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Dns), "{result:?}");
    assert_eq!(
        observation(&result, &["resolvers", &wrong_path, "message"]),
        &Value::from("http unsuccessful code: 404 Not Found, message: ")
    );
}

/// A TCP resolver with nothing listening is reported as refused, not as a timeout.
#[tokio::test]
async fn a_refused_tcp_resolver_says_so() {
    init();
    let dir = TempDir::new("dns");
    let port = crate::support::free_port();
    let resolver = format!("tcp://127.0.0.1:{port}");
    let toml = probe_toml(&format!(
        "query_name = \"probe.test\"\nresolvers = [\"{resolver}\"]"
    ));
    let result = run_one(dir.path(), &toml).await;
    assert_eq!(result.error, Some(ErrorClass::Dns), "{result:?}");
    assert_eq!(
        result.message,
        format!(
            "probe.test A: no resolver gave an answer (1 of 1): {resolver}: \
             io error: Connection refused (os error 111)"
        )
    );
}

/// Bad values are load errors located at the key, with a message saying what to write.
#[test]
fn bad_values_are_located_config_errors() {
    let dir = TempDir::new("dns");
    let text = "[[probe]]\nname = \"d\"\nkind = \"dns\"\nquery_name = \"api.test\"\n\
                resolvers = [\"udp://dns.google\", \"tls://1.1.1.1\"]\n\
                expect_in_cidrs = [\"cloudfare\"]\nexpect_rcode = \"GONE\"\n";
    let path = dir.path().join("probes.toml");
    let path = path.display();
    assert_eq!(
        errors(dir.path(), text),
        format!(
            "{path}:5:13: probe[d].resolvers[0]: resolver `udp://dns.google` must be given by IP \
             address, not `dns.google` (a resolver found by name would need another resolver)\n\
             {path}:5:13: probe[d].resolvers[1]: add the certificate name after `#`, e.g. \
             \"tls://1.1.1.1:853#cloudflare-dns.com\"\n\
             {path}:6:19: probe[d].expect_in_cidrs[0]: `cloudfare` is neither a CIDR like \
             \"104.16.0.0/13\", an IP, nor a named set (`cloudflare`)\n\
             {path}:7:16: probe[d].expect_rcode: unknown response code `GONE`, expected one of \
             NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED"
        )
    );

    let text = "[[probe]]\nname = \"d\"\nkind = \"dns\"\nquery_name = \"api.test\"\n\
                record_type = \"MX\"\nexpect_in_cidrs = \"cloudflare\"\n";
    assert_eq!(
        errors(dir.path(), text),
        format!(
            "{path}:6:19: probe[d].expect_in_cidrs: address ranges only apply to A and AAAA \
             lookups, not MX"
        )
    );
}
