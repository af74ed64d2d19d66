//! The SSRF guard where the connections are made (SPEC §7; the rules are `shuttle_core::netguard`).
//!
//! - [`GuardedResolver`] is the DNS resolver of the HTTP clients (sources, webhooks): it resolves a
//!   name, drops the refused addresses and hands the rest to the connector, so the connection goes
//!   to an address that was checked — there is no second lookup a DNS-rebinding answer could
//!   change. A name with no address left fails with [`ResolvedRefused`].
//! - An address literal never reaches a resolver (the connector dials it as it is), so the
//!   clients check every URL they request with [`check_url`] first: each redirect hop of a
//!   download, each webhook request.
//! - Kafka brokers are dialled by librdkafka, which resolves by itself: [`check_brokers`]
//!   resolves them before a producer is created and refuses the list if any address is refused.
//!   librdkafka's own later lookups cannot be pinned; that gap is the Kafka client's to live with.
//!
//! The clients are built with `no_proxy()`: a proxy would resolve and connect on its own side.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use shuttle_core::netguard::{check, known_bad, AllowedNetworks, Host, HostRefusal, Refusal};
use url::Url;

/// Resolves names for an HTTP client, keeping only the addresses the guard allows.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    allowed: Arc<AllowedNetworks>,
}

impl GuardedResolver {
    pub fn new(allowed: AllowedNetworks) -> Self {
        Self { allowed: Arc::new(allowed) }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (allowed, host) = (self.allowed.clone(), name.as_str().to_owned());
        Box::pin(async move {
            // Port 0: the connector puts the URL's port in.
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (kept, refused) = allowed_addresses(&resolved, &allowed);
            if kept.is_empty() {
                return Err(Box::new(ResolvedRefused { host, refusals: refused }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The addresses the guard allows, and why the others are refused.
fn allowed_addresses(resolved: &[SocketAddr], allowed: &AllowedNetworks) -> (Vec<SocketAddr>, Vec<Refusal>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for address in resolved {
        match check(address.ip(), allowed) {
            Ok(()) => kept.push(*address),
            Err(refusal) => refused.push(refusal),
        }
    }
    (kept, refused)
}

/// A name that resolves only to refused addresses (or to none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRefused {
    pub host: String,
    pub refusals: Vec<Refusal>,
}

impl std::fmt::Display for ResolvedRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.refusals.is_empty() {
            return write!(f, "{} resolves to no address", self.host);
        }
        // The ranges, not the addresses: this reaches the caller, who should not learn what
        // private names resolve to.
        let mut ranges: Vec<String> = self.refusals.iter().map(|refusal| refusal.range.to_string()).collect();
        ranges.dedup();
        write!(f, "{} resolves only to refused addresses ({})", self.host, ranges.join(", "))
    }
}

impl std::error::Error for ResolvedRefused {}

/// Whether a URL about to be requested is refused before any lookup: an address literal in a
/// refused range (the resolver never sees those), or a `localhost` name while no loopback
/// address is allowed. Other names are judged by the resolver.
pub fn check_url(url: &Url, allowed: &AllowedNetworks) -> Result<(), HostRefusal> {
    match Host::of_url(url).and_then(|host| known_bad(&host, allowed)) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// The resolver's refusal, when that is why a request failed.
pub fn refusal_in(error: &reqwest::Error) -> Option<&ResolvedRefused> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(inner) = cause {
        if let Some(refused) = inner.downcast_ref::<ResolvedRefused>() {
            return Some(refused);
        }
        cause = inner.source();
    }
    None
}

/// Why a host that another client dials (a Kafka broker, a docker registry) is not taken.
#[derive(Debug)]
pub enum DialCheck {
    /// Not one plain host: an address, or a name of letters, digits, `.`, `-` and `_`.
    NotPlain,
    /// The guard refuses it: why, naming the range, never the address a name resolved to.
    Refused(String),
    /// Its name did not resolve.
    Unresolved(std::io::Error),
}

/// Checks `authority` (`host[:port]`) before a client other than ours dials it, so that its
/// connections cannot be pinned to the checked addresses: it must be one plain host (librdkafka
/// splits a list on `,` and spaces, so anything else could smuggle in a second host), not known
/// to be bad, and every address it resolves to must be allowed.
///
/// Refusals name the range, never the address a name resolved to: they reach the caller, who
/// should not learn what private names resolve to.
pub async fn check_dialled(authority: &str, default_port: u16, allowed: &AllowedNetworks) -> Result<(), DialCheck> {
    let host = Host::parse(authority).filter(Host::is_plain).ok_or(DialCheck::NotPlain)?;
    if let Some(refusal) = known_bad(&host, allowed) {
        return Err(DialCheck::Refused(refusal.to_string()));
    }
    let Host::Name(name) = host else { return Ok(()) };
    let port = authority.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).unwrap_or(default_port);
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port)).await.map_err(DialCheck::Unresolved)?.collect();
    match allowed_addresses(&resolved, allowed).1.first() {
        Some(refusal) => Err(DialCheck::Refused(format!("{name} resolves to {}", refusal.range))),
        None => Ok(()),
    }
}

/// Why Kafka bootstrap brokers were not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerCheck {
    /// The guard refuses a broker: final.
    Refused(String),
    /// A broker name did not resolve: librdkafka must not be left to resolve it on its own
    /// (a second lookup could answer otherwise), so the attempt fails and is retried later.
    Unresolved(String),
}

/// Checks Kafka bootstrap brokers (`host:port`) before librdkafka dials them ([`check_dialled`]).
pub async fn check_brokers(brokers: &[String], allowed: &AllowedNetworks) -> Result<(), BrokerCheck> {
    for broker in brokers {
        let broker = broker.trim();
        match check_dialled(broker, 9092, allowed).await {
            Ok(()) => {}
            // Never echoed: a malformed broker may carry userinfo that redaction would not see.
            Err(DialCheck::NotPlain) => return Err(BrokerCheck::Refused("a Kafka broker is not a plain host:port".to_owned())),
            Err(DialCheck::Refused(reason)) => return Err(BrokerCheck::Refused(format!("the Kafka broker {broker} is refused: {reason}"))),
            Err(DialCheck::Unresolved(error)) => {
                return Err(BrokerCheck::Unresolved(format!("the Kafka broker {broker} did not resolve: {error}")))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(raw: &str) -> AllowedNetworks {
        raw.parse().unwrap()
    }

    #[test]
    fn only_allowed_addresses_are_kept() {
        let resolved: Vec<SocketAddr> =
            ["10.1.2.3:0", "8.8.8.8:0", "169.254.169.254:0", "[::1]:0"].iter().map(|a| a.parse().unwrap()).collect();
        let (kept, refused) = allowed_addresses(&resolved, &allowed("::1/128"));
        assert_eq!(kept, vec![resolved[1], resolved[3]]);
        let message = ResolvedRefused { host: "rebind.example".into(), refusals: refused }.to_string();
        assert_eq!(
            message, "rebind.example resolves only to refused addresses (private, link-local (instance metadata))",
            "the ranges are named, not the addresses"
        );
    }

    #[tokio::test]
    async fn a_broker_list_smuggled_into_one_host_is_refused() {
        let loopback = allowed("127.0.0.0/8");
        for broker in ["10.0.0.5,localhost:9092", "localhost 10.0.0.5:9092", "127.0.0.1;10.0.0.5:9092"] {
            let check = check_brokers(&[broker.to_owned()], &loopback).await;
            assert!(matches!(check, Err(BrokerCheck::Refused(_))), "{broker}: {check:?}");
        }
        assert_eq!(check_brokers(&["localhost:9092".to_owned()], &loopback).await, Ok(()));
    }

    #[tokio::test]
    async fn a_broker_refusal_shows_no_credentials_and_an_unresolved_name_is_not_final() {
        let none = AllowedNetworks::none();
        let check = check_brokers(&["svc:s3cret@10.0.0.1:9092".to_owned()], &none).await;
        assert!(matches!(&check, Err(BrokerCheck::Refused(message)) if !message.contains("s3cret")), "{check:?}");
        let check = check_brokers(&["no-such-broker.invalid:9092".to_owned()], &none).await;
        assert!(matches!(check, Err(BrokerCheck::Unresolved(_))), "{check:?}");
    }

    #[test]
    fn literals_are_checked_before_any_request() {
        let none = AllowedNetworks::none();
        for url in ["http://0xA9FEA9FE/x", "http://[::ffff:127.0.0.1]:9/", "https://localhost/"] {
            assert!(check_url(&Url::parse(url).unwrap(), &none).is_err(), "{url}");
        }
        assert!(check_url(&Url::parse("https://hooks.example/x").unwrap(), &none).is_ok(), "names go to the resolver");
    }

    #[tokio::test]
    async fn brokers_are_refused_on_any_refused_address() {
        let none = AllowedNetworks::none();
        assert!(check_brokers(&["8.8.8.8:9092".to_owned()], &none).await.is_ok());
        for brokers in [vec!["8.8.8.8:9092", "10.0.0.1:9092"], vec!["a@b:9092"], vec!["localhost:9092"]] {
            let brokers: Vec<String> = brokers.into_iter().map(str::to_owned).collect();
            assert!(check_brokers(&brokers, &none).await.is_err(), "{brokers:?}");
        }
        assert!(check_brokers(&["127.0.0.1:9092".to_owned(), "localhost:9093".to_owned()], &allowed("127.0.0.0/8")).await.is_ok());
    }
}
