use super::*;

/// What the guard answers for the host of a URL: `None` when it passes, else the range named.
fn judged(url: &str, allowed: &AllowedNetworks) -> Option<String> {
    let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{url} parses: {e}"));
    known_bad_url(&parsed, allowed).map(|refusal| match refusal {
        HostRefusal::Address(refusal) => refusal.range.to_string(),
        HostRefusal::Localhost(_) => "localhost".to_owned(),
    })
}

fn allowed(raw: &str) -> AllowedNetworks {
    raw.parse().unwrap_or_else(|e| panic!("{raw}: {e}"))
}

const LINK_LOCAL: &str = "link-local (instance metadata)";

/// Every URL, with nothing allowed, and the range that refuses it (`None`: it passes, to be
/// judged once resolved if it is a name).
const CORPUS: &[(&str, Option<&str>)] = &[
    // The metadata service, however it is spelt.
    ("http://169.254.169.254/latest/meta-data/", Some(LINK_LOCAL)),
    ("http://169.254.169.254./", Some(LINK_LOCAL)),
    ("http://169.254.169.254:80/", Some(LINK_LOCAL)),
    ("https://user:pw@169.254.169.254/", Some(LINK_LOCAL)),
    ("http://2852039166/", Some(LINK_LOCAL)),
    ("http://0xA9FEA9FE/", Some(LINK_LOCAL)),
    ("http://0xa9fea9fe./", Some(LINK_LOCAL)),
    ("http://0xa9.0xfe.0xa9.0xfe/", Some(LINK_LOCAL)),
    ("http://0251.0376.0251.0376/", Some(LINK_LOCAL)),
    ("http://0251.254.169.254/", Some(LINK_LOCAL)),
    ("http://00000251.0376.0251.0376/", Some(LINK_LOCAL)),
    ("http://169.254.43518/", Some(LINK_LOCAL)),
    ("http://169.16689662/", Some(LINK_LOCAL)),
    ("http://0xA9.16689662/", Some(LINK_LOCAL)),
    ("http://169.254.170.2/v2/credentials", Some(LINK_LOCAL)),
    ("http://169.254.0.1/", Some(LINK_LOCAL)),
    ("http://169.254.255.255/", Some(LINK_LOCAL)),
    ("http://[::ffff:169.254.169.254]/", Some(LINK_LOCAL)),
    ("http://[::ffff:a9fe:a9fe]/", Some(LINK_LOCAL)),
    ("http://[0:0:0:0:0:ffff:169.254.169.254]/", Some(LINK_LOCAL)),
    ("http://[::169.254.169.254]/", Some(LINK_LOCAL)),
    ("http://[64:ff9b::169.254.169.254]/", Some(LINK_LOCAL)),
    ("http://[64:ff9b::a9fe:a9fe]/", Some(LINK_LOCAL)),
    ("http://[2002:a9fe:a9fe::]/", Some(LINK_LOCAL)),
    ("http://[2002:a9fe:a9fe:1:2:3:4:5]/", Some(LINK_LOCAL)),
    ("http://[2001:0:4136:e378:8000:63bf:5601:5601]/", Some(LINK_LOCAL)),
    ("http://[fe80::1]/", Some(LINK_LOCAL)),
    ("http://[fe80::a9fe:a9fe]/", Some(LINK_LOCAL)),
    ("http://[febf:ffff::1]/", Some(LINK_LOCAL)),
    ("http://[fd00:ec2::254]/", Some("the instance metadata service")),
    ("http://[fd00:0ec2:0:0:0:0:0:254]/", Some("the instance metadata service")),
    ("http://①⑥⑨.②⑤④.①⑥⑨.②⑤④/", Some(LINK_LOCAL)),
    // Loopback.
    ("http://127.0.0.1/", Some("loopback")),
    ("http://127.0.0.1./", Some("loopback")),
    ("http://127.1/", Some("loopback")),
    ("http://127.0.1/", Some("loopback")),
    ("http://0x7f.1/", Some("loopback")),
    ("http://0x7f000001/", Some("loopback")),
    ("http://2130706433/", Some("loopback")),
    ("http://017700000001/", Some("loopback")),
    ("http://0177.0.0.1/", Some("loopback")),
    ("http://127.255.255.254/", Some("loopback")),
    ("http://１２７.０.０.１/", Some("loopback")),
    ("http://[::1]/", Some("loopback")),
    ("http://[0:0:0:0:0:0:0:1]/", Some("loopback")),
    ("http://[::ffff:127.0.0.1]/", Some("loopback")),
    ("http://[::ffff:7f00:1]/", Some("loopback")),
    ("http://[::127.0.0.1]/", Some("loopback")),
    ("http://[64:ff9b::7f00:1]/", Some("loopback")),
    ("http://[2002:7f00:1::]/", Some("loopback")),
    ("http://localhost/", Some("localhost")),
    ("http://LOCALHOST:8080/", Some("localhost")),
    ("http://localhost./", Some("localhost")),
    ("http://foo.localhost/", Some("localhost")),
    ("http://a.b.LocalHost./x", Some("localhost")),
    // Unspecified and "this network".
    ("http://0.0.0.0/", Some("unspecified")),
    ("http://0/", Some("unspecified")),
    ("http://0x0/", Some("unspecified")),
    ("http://[::]/", Some("unspecified")),
    ("http://[::ffff:0.0.0.0]/", Some("unspecified")),
    ("http://0.1.2.3/", Some("\"this network\" (0.0.0.0/8)")),
    // Private.
    ("http://10.0.0.1/", Some("private")),
    ("http://10.255.255.255/", Some("private")),
    ("http://012.1/", Some("private")),
    ("http://167772161/", Some("private")),
    ("http://172.16.0.1/", Some("private")),
    ("http://172.31.255.255/", Some("private")),
    ("http://192.168.1.1/", Some("private")),
    ("http://0xc0a80101/", Some("private")),
    ("http://3232235777/", Some("private")),
    ("http://[::ffff:10.1.2.3]/", Some("private")),
    ("http://[64:ff9b::10.1.2.3]/", Some("private")),
    ("http://[2002:c0a8:101::]/", Some("private")),
    ("http://[fc00::1]/", Some("private (unique local)")),
    ("http://[fd12:3456::1]/", Some("private (unique local)")),
    ("http://[fd00:ec2::253]/", Some("private (unique local)")),
    ("http://[fec0::1]/", Some("private (site-local)")),
    // Shared address space.
    ("http://100.64.0.1/", Some("shared address space (CGNAT)")),
    ("http://100.127.255.254/", Some("shared address space (CGNAT)")),
    ("http://100.100.100.200/", Some("shared address space (CGNAT)")),
    // NAT64, 6to4 and Teredo wrapping a public address: the wrapper is refused.
    ("http://[64:ff9b::8.8.8.8]/", Some("NAT64")),
    ("http://[64:ff9b:1::1]/", Some("NAT64")),
    ("http://[2002:808:808::]/", Some("6to4")),
    ("http://192.88.99.1/", Some("6to4")),
    ("http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/", Some("Teredo")),
    ("http://[::8.8.8.8]/", Some("IPv4-compatible IPv6")),
    // Multicast, broadcast, reserved, documentation, benchmarking.
    ("http://224.0.0.1/", Some("multicast")),
    ("http://239.255.255.250/", Some("multicast")),
    ("http://[ff02::1]/", Some("multicast")),
    ("http://255.255.255.255/", Some("broadcast")),
    ("http://4294967295/", Some("broadcast")),
    ("http://240.0.0.1/", Some("reserved")),
    ("http://192.0.0.170/", Some("reserved")),
    ("http://[100::1]/", Some("reserved")),
    ("http://[2001:10::1]/", Some("reserved")),
    ("http://[4000::1]/", Some("reserved")),
    ("http://[::ffff:0:7f00:1]/", Some("reserved")),
    ("http://192.0.2.1/", Some("documentation")),
    ("http://198.51.100.7/", Some("documentation")),
    ("http://203.0.113.9/", Some("documentation")),
    ("http://[2001:db8::1]/", Some("documentation")),
    ("http://[3fff::1]/", Some("documentation")),
    ("http://198.18.0.1/", Some("benchmarking")),
    ("http://[2001:2::1]/", Some("benchmarking")),
    // Other schemes read their hosts the same way.
    ("docker://169.254.169.254/org/app:1", Some(LINK_LOCAL)),
    ("docker://2852039166/org/app:1", Some(LINK_LOCAL)),
    ("docker://0xA9FEA9FE:5000/org/app", Some(LINK_LOCAL)),
    ("docker://user:pw@0251.0376.0251.0376/org/app", Some(LINK_LOCAL)),
    ("docker://[::ffff:169.254.169.254]/org/app", Some(LINK_LOCAL)),
    ("docker://127.1/org/app", Some("loopback")),
    ("docker://localhost:5000/org/app", Some("localhost")),
    ("kafka://10.0.0.1:9092/buildlogs", Some("private")),
    ("kafka://0x7f.1:9092/buildlogs", Some("loopback")),
    ("kafka://[fd00:ec2::254]:9092/buildlogs", Some("the instance metadata service")),
    // Public addresses and names pass (names are judged once resolved).
    ("http://example.com/", None),
    ("https://hooks.example.com:8443/status?x=1", None),
    ("http://8.8.8.8/", None),
    ("http://1.1.1.1/", None),
    ("http://134744072/", None),
    ("http://169.253.255.255/", None),
    ("http://169.255.0.1/", None),
    ("http://172.15.255.255/", None),
    ("http://172.32.0.1/", None),
    ("http://100.63.255.255/", None),
    ("http://100.128.0.1/", None),
    ("http://192.169.0.1/", None),
    ("http://11.0.0.1/", None),
    ("http://126.255.255.255/", None),
    ("http://128.0.0.1/", None),
    ("http://223.255.255.255/", None),
    ("http://[2606:4700:4700::1111]/", None),
    ("http://[2a05:d018::1]/", None),
    ("http://[::ffff:8.8.8.8]/", None),
    ("http://localhost.example.com/", None),
    ("http://notlocalhost/", None),
    ("http://169.254.169.254.nip.io/", None),
    ("http://metadata.google.internal/", None),
    ("docker://registry.example/org/app:1", None),
    ("docker://8.8.8.8:5000/org/app:1", None),
    ("kafka://broker.example:9092/buildlogs", None),
];

#[test]
fn the_corpus_is_judged_as_expected_with_nothing_allowed() {
    let none = AllowedNetworks::none();
    let mut wrong = Vec::new();
    for (url, expected) in CORPUS {
        let got = judged(url, &none);
        if got.as_deref() != *expected {
            wrong.push(format!("{url}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} judged wrongly:\n{}", wrong.len(), CORPUS.len(), wrong.join("\n"));
    let refused = CORPUS.iter().filter(|(_, expected)| expected.is_some()).count();
    assert_eq!((CORPUS.len(), refused), (140, 114), "the corpus' size (update the report when it changes)");
}

#[test]
fn allowing_everything_still_refuses_link_local_and_the_metadata_service() {
    let everything = allowed("0.0.0.0/0, ::/0");
    for (url, expected) in CORPUS {
        let got = judged(url, &everything);
        let always = matches!(*expected, Some(LINK_LOCAL | "the instance metadata service"));
        assert_eq!(got.is_some(), always, "{url}: {got:?}");
    }
}

#[test]
fn allowed_ranges_open_only_themselves() {
    let private = allowed("10.0.0.0/8");
    assert_eq!(judged("http://10.1.2.3/", &private), None);
    assert_eq!(judged("http://[::ffff:10.1.2.3]/", &private), None, "the mapped form is the same address");
    assert_eq!(judged("http://012.1/", &private), None);
    assert_eq!(judged("http://192.168.1.1/", &private).as_deref(), Some("private"));
    assert_eq!(judged("http://127.0.0.1/", &private).as_deref(), Some("loopback"));
    assert_eq!(judged("http://[64:ff9b::10.1.2.3]/", &private).as_deref(), Some("NAT64"), "the wrapper is not allowed");
    assert_eq!(judged("http://localhost/", &private).as_deref(), Some("localhost"));

    let nat64 = allowed("64:ff9b::/96");
    assert_eq!(judged("http://[64:ff9b::8.8.8.8]/", &nat64), None);
    assert_eq!(judged("http://[64:ff9b::10.1.2.3]/", &nat64).as_deref(), Some("private"), "what it carries is not allowed");

    let local = allowed("127.0.0.0/8,::1/128");
    for url in [
        "http://127.0.0.1:3000/",
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:9/",
        "kafka://127.0.0.1:9092/t",
    ] {
        assert_eq!(judged(url, &local), None, "{url}");
    }
    assert_eq!(judged("http://10.0.0.1/", &local).as_deref(), Some("private"));

    let link_local = allowed("169.254.0.0/16, fe80::/10, fd00:ec2::/32");
    for url in ["http://169.254.169.254/", "http://[fe80::1]/", "http://[fd00:ec2::254]/", "http://[::ffff:169.254.169.254]/"] {
        assert!(judged(url, &link_local).is_some(), "{url} stays refused");
    }
}

#[test]
fn a_localhost_name_is_known_bad_only_while_no_loopback_address_is_allowed() {
    assert_eq!(judged("http://localhost/", &allowed("127.0.0.2/32")), None, "it is judged once resolved");
    assert_eq!(judged("http://localhost/", &allowed("::1")), None);
    assert_eq!(judged("http://localhost/", &allowed("0.0.0.0/0")), None);
    assert_eq!(judged("http://localhost/", &allowed("10.0.0.0/8,fd00::/8")).as_deref(), Some("localhost"));
}

#[test]
fn refusals_name_the_address_and_what_it_carries() {
    let refusal = check("169.254.169.254".parse().unwrap(), &AllowedNetworks::none()).unwrap_err();
    assert_eq!(refusal.to_string(), "169.254.169.254 is link-local (instance metadata)");
    assert!(refusal.always());
    let refusal = check("64:ff9b::a9fe:a9fe".parse().unwrap(), &allowed("::/0")).unwrap_err();
    assert_eq!(refusal.to_string(), "64:ff9b::a9fe:a9fe carries 169.254.169.254, which is link-local (instance metadata)");
    let refusal = check("10.1.2.3".parse().unwrap(), &AllowedNetworks::none()).unwrap_err();
    assert_eq!(refusal.to_string(), "10.1.2.3 is private");
    assert!(!refusal.always());
    let host = Host::parse("localhost:9092").unwrap();
    assert_eq!(known_bad(&host, &AllowedNetworks::none()).unwrap().to_string(), "localhost names the loopback host");
}

#[test]
fn broker_and_registry_hosts_read_like_http_hosts() {
    assert_eq!(Host::parse("0xA9FEA9FE:9092"), Some(Host::Address("169.254.169.254".parse().unwrap())));
    assert_eq!(Host::parse("[::1]:9092"), Some(Host::Address("::1".parse().unwrap())));
    assert_eq!(Host::parse("Broker.Example:9092"), Some(Host::Name("broker.example".to_owned())));
    assert_eq!(Host::parse("registry.example"), Some(Host::Name("registry.example".to_owned())));
    for unreadable in ["", "a@169.254.169.254:9092", "host/path", "[::1", "a b:1"] {
        assert_eq!(Host::parse(unreadable), None, "{unreadable}");
    }
}

#[test]
fn allowed_networks_parse_from_the_setting() {
    assert!(allowed("").is_empty());
    assert!(allowed(" , ").is_empty());
    let networks = allowed(" 10.1.2.3/8 , fd00::/8,192.168.1.1");
    assert_eq!(networks.to_string(), "10.0.0.0/8,fd00::/8,192.168.1.1/32");
    assert!(networks.contains("10.200.0.1".parse().unwrap()));
    assert!(!networks.contains("192.168.1.2".parse().unwrap()));
    for malformed in ["10.0.0.0/33", "abc", "10.0.0.0/8;192.168.0.0/16", "fd00::/129", "localhost"] {
        assert!(malformed.parse::<AllowedNetworks>().is_err(), "{malformed}");
    }
}

#[test]
fn a_broker_is_compared_and_dialled_in_one_spelling() {
    assert_eq!(broker_address("Kafka.Example:9092").as_deref(), Some("kafka.example:9092"));
    assert_eq!(broker_address("0x7f.1:9092").as_deref(), Some("127.0.0.1:9092"));
    assert_eq!(broker_address("%31%32%37.0.0.1:9092").as_deref(), Some("127.0.0.1:9092"));
    assert_eq!(broker_address("[::1]:9092").as_deref(), Some("[::1]:9092"));
    for unusable in ["kafka.example", "kafka.example:0", "a,b:9092", "u:p@h:9092", "h:9092/x", "a b:9092", ""] {
        assert_eq!(broker_address(unusable), None, "{unusable}");
    }
}

#[test]
fn kafka_allowed_brokers_lists_the_only_brokers_dialled() {
    let allowed: AllowedBrokers = "kafka-1.internal:9092, 10.0.0.7:9093".parse().unwrap();
    assert!(allowed.is_restricted());
    assert!(allowed.allows("KAFKA-1.internal:9092") && allowed.allows("10.0.0.7:9093") && allowed.allows("0xa.7:9093"));
    assert!(!allowed.allows("kafka-1.internal:9093") && !allowed.allows("kafka-2.internal:9092") && !allowed.allows("junk"));
    assert!(AllowedBrokers::any().allows("anything.example:1"));
    assert!("kafka-1.internal".parse::<AllowedBrokers>().unwrap_err().contains("kafka-1.internal"), "no port");
    assert!(" , ".parse::<AllowedBrokers>().is_err(), "an empty list is a mistake, not 'any'");
}
