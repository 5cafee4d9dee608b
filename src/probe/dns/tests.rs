//! Unit tests of the `dns` kind: resolver syntax, expectations, verdicts.

use super::resolve::*;
use super::spec::*;
use super::verdict::*;
use super::*;
use crate::probe::{ErrorClass, Value};

fn answered(rcode: &str, answers: &[&str]) -> Reply {
    Reply::Answered {
        rcode: rcode.to_owned(),
        answers: answers.iter().map(|a| (*a).to_owned()).collect(),
    }
}

fn report(label: &str, reply: Reply) -> ResolverReport {
    ResolverReport {
        label: label.to_owned(),
        seconds: 0.01,
        reply,
    }
}

fn cloudflare() -> Expectation {
    Expectation {
        ranges: parse_range_item("cloudflare").unwrap(),
        ..Expectation::default()
    }
}

#[test]
fn resolver_syntax_covers_every_transport() {
    assert_eq!(ResolverAddr::parse("system"), Ok(ResolverAddr::System));
    assert_eq!(
        ResolverAddr::parse("udp://1.1.1.1"),
        Ok(ResolverAddr::Udp("1.1.1.1:53".parse().unwrap()))
    );
    assert_eq!(
        ResolverAddr::parse("tcp://[2606:4700:4700::1111]:5353"),
        Ok(ResolverAddr::Tcp(
            "[2606:4700:4700::1111]:5353".parse().unwrap()
        ))
    );
    assert_eq!(
        ResolverAddr::parse("tls://1.1.1.1#cloudflare-dns.com"),
        Ok(ResolverAddr::Tls {
            addr: "1.1.1.1:853".parse().unwrap(),
            server_name: Arc::from("cloudflare-dns.com"),
        })
    );
    assert_eq!(
        ResolverAddr::parse("https://1.1.1.1#cloudflare-dns.com"),
        Ok(ResolverAddr::Https {
            addr: "1.1.1.1:443".parse().unwrap(),
            server_name: Arc::from("cloudflare-dns.com"),
            path: Arc::from("/dns-query"),
        })
    );
}

#[test]
fn resolver_syntax_errors_say_what_to_write() {
    let by_name = ResolverAddr::parse("udp://dns.google").unwrap_err();
    assert!(by_name.contains("by IP address"), "{by_name}");
    let no_sni = ResolverAddr::parse("tls://1.1.1.1:853").unwrap_err();
    assert_eq!(
        no_sni,
        "add the certificate name after `#`, e.g. \"tls://1.1.1.1:853#cloudflare-dns.com\""
    );
    let scheme = ResolverAddr::parse("quic://1.1.1.1").unwrap_err();
    assert!(
        scheme.starts_with("unknown resolver scheme `quic`"),
        "{scheme}"
    );
}

#[test]
fn cloudflare_set_holds_edge_addresses_and_not_origins() {
    let expectation = cloudflare();
    assert!(expectation.accepts("104.16.132.229"));
    assert!(expectation.accepts("2606:4700::6810:84e5"));
    assert!(expectation.accepts("172.67.1.1"));
    assert!(!expectation.accepts("172.16.0.1"));
    assert!(!expectation.accepts("203.0.113.7"));
}

#[test]
fn agreeing_resolvers_inside_the_ranges_pass() {
    let outcome = evaluate(
        "api.example.com",
        RecordKind::A,
        &cloudflare(),
        &[
            report("system", answered("NOERROR", &["104.16.1.1", "104.16.2.2"])),
            report(
                "udp://1.1.1.1:53",
                answered("NOERROR", &["104.16.2.2", "104.16.1.1"]),
            ),
        ],
    );
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(
        outcome.message,
        "api.example.com A: NOERROR 104.16.1.1, 104.16.2.2 (2 resolvers agree)"
    );
    assert_eq!(outcome.observations["disagree"], Value::Bool(false));
    assert_eq!(outcome.observations["hijack_suspected"], Value::Bool(false));
}

#[test]
fn an_answer_outside_the_ranges_is_a_suspected_hijack() {
    let outcome = evaluate(
        "api.example.com",
        RecordKind::A,
        &cloudflare(),
        &[
            report("system", answered("NOERROR", &["203.0.113.66"])),
            report("udp://1.1.1.1:53", answered("NOERROR", &["104.16.1.1"])),
        ],
    );
    assert_eq!(outcome.error, Some(ErrorClass::Assertion));
    assert_eq!(outcome.observations["hijack_suspected"], Value::Bool(true));
    assert_eq!(outcome.observations["disagree"], Value::Bool(true));
    assert_eq!(
        outcome.observations["unexpected"],
        Value::from(vec!["203.0.113.66"])
    );
    assert_eq!(
        outcome.message,
        "api.example.com A: answers outside the expectation (1 of 2): \
             system: NOERROR 203.0.113.66; not expected: 203.0.113.66"
    );
}

#[test]
fn expected_nxdomain_passes_and_a_resolving_name_is_an_assertion() {
    let expectation = Expectation {
        rcode: Some("NXDOMAIN".to_owned()),
        ..Expectation::default()
    };
    let gone = evaluate(
        "old.example.com",
        RecordKind::A,
        &expectation,
        &[report("system", answered("NXDOMAIN", &[]))],
    );
    assert!(gone.ok, "{gone:?}");
    let back = evaluate(
        "old.example.com",
        RecordKind::A,
        &expectation,
        &[report("system", answered("NOERROR", &["192.0.2.1"]))],
    );
    assert_eq!(back.error, Some(ErrorClass::Assertion));
    assert_eq!(
        back.message,
        "old.example.com A: answers outside the expectation (1 of 1): \
             system: NOERROR 192.0.2.1, expected NXDOMAIN"
    );
}

#[test]
fn empty_noerror_is_a_dns_failure() {
    let outcome = evaluate(
        "api.example.com",
        RecordKind::Aaaa,
        &Expectation::default(),
        &[report("system", answered("NOERROR", &[]))],
    );
    assert_eq!(outcome.error, Some(ErrorClass::Dns));
    assert_eq!(
        outcome.message,
        "api.example.com AAAA: no resolver gave an answer (1 of 1): \
             system: NOERROR with no answer"
    );
    assert_eq!(outcome.observations["rcode"], Value::from("NOERROR"));
}

#[test]
fn names_and_mx_answers_compare_without_case_or_root_dot() {
    let expectation = Expectation {
        values: ["www.Example.com.", "10 mail.example.com"]
            .iter()
            .map(|v| normalize_answer(v))
            .collect(),
        ..Expectation::default()
    };
    assert!(expectation.accepts("www.example.com"));
    assert!(expectation.accepts("10 MAIL.example.com."));
    assert!(!expectation.accepts("20 mail.example.com"));
}
