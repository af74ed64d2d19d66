//! The SSRF guard's rules (SPEC §7): which addresses a user-supplied URL may lead the shuttle to.
//!
//! Every user-supplied URL — webhooks and legacy callbacks, Kafka brokers, sources (redirects
//! included) and docker registries — is held to the same rules:
//!
//! - link-local addresses (`169.254.0.0/16`, `fe80::/10`), where the instance metadata service
//!   lives, and AWS's IPv6 metadata address `fd00:ec2::254` are **always** refused;
//! - loopback, private (and IPv6 unique-local), shared address space (CGNAT), NAT64, 6to4,
//!   Teredo, unspecified, multicast, broadcast, documentation, benchmarking and other reserved
//!   addresses are refused unless `ALLOWED_PRIVATE_CIDRS` ([`AllowedNetworks`]) lists them.
//!
//! `ALLOWED_PRIVATE_CIDRS` opens a range for every kind of URL alike: SPEC §7 names callbacks and
//! brokers as the usual reason, but a deployer whose source server or registry is private has
//! the same need, and one rule is easier to reason about than one per kind. What it can never
//! open is link-local and the metadata service. The local run allows loopback, where its
//! receivers and source servers are.
//!
//! An IPv6 address that carries an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`, Teredo's client) is held to the
//! rules of that IPv4 address too, so none of them is a way round the guard.
//!
//! Hosts are read the way a connection would read them: the WHATWG URL parser turns the odd
//! spellings of IPv4 (`2852039166`, `0xA9FEA9FE`, `0251.0376.0251.0376`, `127.1`, a trailing dot)
//! into the address, for `http(s)` URLs and — through [`Host::parse`] — for `docker://` and Kafka
//! `host:port` too. A name is only known once resolved: the adapters resolve it, drop refused
//! addresses and connect to an address that was checked. Before any lookup, [`known_bad`] refuses
//! what needs none: an address literal in a refused range, or a `localhost` name (RFC 6761:
//! loopback by definition) while no loopback address is allowed.
//!
//! Where the rules are applied: v2 create answers `400` for a known-bad host
//! ([`crate::request::BuildSpec::refused_hosts`]); the poller fails a build with a known-bad host
//! (legacy builds, which get no `400` for this) with the reason in its log; the adapters refuse
//! at resolution (a source download fails the build, a webhook or Kafka target is given up).
//! Docker registries are reached by Jenkins, not by the shuttle: only the check before any lookup
//! applies to them (Jenkins' own lookups are out of the shuttle's reach).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::Url;

/// The range a refused address is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    Unspecified,
    /// `0.0.0.0/8` (other than `0.0.0.0`).
    ThisNetwork,
    Loopback,
    /// `169.254.0.0/16`, `fe80::/10`: where the instance metadata service answers. Always refused.
    LinkLocal,
    /// AWS's IPv6 instance metadata address, `fd00:ec2::254`. Always refused.
    InstanceMetadata,
    Private,
    /// IPv6 unique-local `fc00::/7`.
    UniqueLocal,
    /// IPv6 site-local `fec0::/10` (deprecated, still private).
    SiteLocal,
    /// `100.64.0.0/10`.
    SharedAddressSpace,
    Nat64,
    SixToFour,
    Teredo,
    /// `::a.b.c.d` (deprecated).
    Ipv4Compatible,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// IETF protocol assignments, future use, discard-only, and IPv6 outside global unicast.
    Reserved,
}

impl Range {
    /// Link-local and the instance metadata service: refused whatever `ALLOWED_PRIVATE_CIDRS` says.
    pub fn always_refused(self) -> bool {
        matches!(self, Self::LinkLocal | Self::InstanceMetadata)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified",
            Self::ThisNetwork => "\"this network\" (0.0.0.0/8)",
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local (instance metadata)",
            Self::InstanceMetadata => "the instance metadata service",
            Self::Private => "private",
            Self::UniqueLocal => "private (unique local)",
            Self::SiteLocal => "private (site-local)",
            Self::SharedAddressSpace => "shared address space (CGNAT)",
            Self::Nat64 => "NAT64",
            Self::SixToFour => "6to4",
            Self::Teredo => "Teredo",
            Self::Ipv4Compatible => "IPv4-compatible IPv6",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::Reserved => "reserved",
        })
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// The refused IPv4 ranges; the first that holds an address names it.
const IPV4_RANGES: [(Ipv4Net, Range); 17] = [
    (v4(0, 0, 0, 0, 32), Range::Unspecified),
    (v4(0, 0, 0, 0, 8), Range::ThisNetwork),
    (v4(10, 0, 0, 0, 8), Range::Private),
    (v4(100, 64, 0, 0, 10), Range::SharedAddressSpace),
    (v4(127, 0, 0, 0, 8), Range::Loopback),
    (v4(169, 254, 0, 0, 16), Range::LinkLocal),
    (v4(172, 16, 0, 0, 12), Range::Private),
    // IETF protocol assignments, among them the NAT64 discovery addresses 192.0.0.170/171.
    (v4(192, 0, 0, 0, 24), Range::Reserved),
    (v4(192, 0, 2, 0, 24), Range::Documentation),
    // The 6to4 relay anycast prefix.
    (v4(192, 88, 99, 0, 24), Range::SixToFour),
    (v4(192, 168, 0, 0, 16), Range::Private),
    (v4(198, 18, 0, 0, 15), Range::Benchmarking),
    (v4(198, 51, 100, 0, 24), Range::Documentation),
    (v4(203, 0, 113, 0, 24), Range::Documentation),
    (v4(224, 0, 0, 0, 4), Range::Multicast),
    (v4(255, 255, 255, 255, 32), Range::Broadcast),
    (v4(240, 0, 0, 0, 4), Range::Reserved),
];

/// The refused IPv6 ranges; the first that holds an address names it. IPv4-mapped addresses are
/// read as their IPv4 address before, and anything outside global unicast `2000::/3` after.
const IPV6_RANGES: [(Ipv6Net, Range); 17] = [
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), Range::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Range::Loopback),
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 96), Range::Ipv4Compatible),
    (v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), Range::Nat64),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), Range::Nat64),
    // Discard-only.
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), Range::Reserved),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), Range::Teredo),
    (v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), Range::Benchmarking),
    // The rest of the IETF protocol assignments.
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), Range::Reserved),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), Range::Documentation),
    (v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), Range::SixToFour),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), Range::Documentation),
    (v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128), Range::InstanceMetadata),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), Range::UniqueLocal),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), Range::LinkLocal),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), Range::SiteLocal),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), Range::Multicast),
];

const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// The range `address` is in, when it is one the guard refuses (before `ALLOWED_PRIVATE_CIDRS`).
pub fn range_of(address: IpAddr) -> Option<Range> {
    match canonical(address) {
        IpAddr::V4(address) => IPV4_RANGES.iter().find(|(net, _)| net.contains(&address)).map(|(_, range)| *range),
        IpAddr::V6(address) => IPV6_RANGES
            .iter()
            .find(|(net, _)| net.contains(&address))
            .map(|(_, range)| *range)
            .or_else(|| (!GLOBAL_UNICAST.contains(&address)).then_some(Range::Reserved)),
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address: a dual-stack socket connects to that.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address an IPv6 address of `range` leads to, where it carries one.
fn embedded_ipv4(address: Ipv6Addr, range: Range) -> Option<Ipv4Addr> {
    let bits = u128::from(address);
    let word = |shift: u32| Ipv4Addr::from((bits >> shift) as u32);
    match range {
        // The last 32 bits.
        Range::Ipv4Compatible => Some(word(0)),
        Range::Nat64 if address.segments()[2] == 0 => Some(word(0)),
        // 2002:AABB:CCDD::/48.
        Range::SixToFour => Some(word(80)),
        // The client's address, inverted, in the last 32 bits.
        Range::Teredo => Some(Ipv4Addr::from(!(bits as u32))),
        _ => None,
    }
}

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The address as given.
    pub address: IpAddr,
    /// The range it (or the IPv4 address it carries) is in.
    pub range: Range,
    /// The IPv4 address an IPv6 address carries, when that is what is refused.
    pub embedded: Option<Ipv4Addr>,
}

impl Refusal {
    /// Whether no `ALLOWED_PRIVATE_CIDRS` could open it.
    pub fn always(&self) -> bool {
        self.range.always_refused()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some(inner) => write!(f, "{} carries {inner}, which is {}", self.address, self.range),
            None => write!(f, "{} is {}", self.address, self.range),
        }
    }
}

impl std::error::Error for Refusal {}

/// Whether the shuttle may connect to `address`: `Err` names the range that refuses it.
pub fn check(address: IpAddr, allowed: &AllowedNetworks) -> Result<(), Refusal> {
    let canonical = canonical(address);
    let Some(range) = range_of(canonical) else { return Ok(()) };
    if let IpAddr::V6(v6) = canonical {
        // What the address carries is held to its own rules, whatever is allowed of the wrapper.
        if let Some(inner) = embedded_ipv4(v6, range) {
            if let Err(refused) = check(IpAddr::V4(inner), allowed) {
                return Err(Refusal { address, range: refused.range, embedded: Some(inner) });
            }
        }
    }
    if range.always_refused() || !(allowed.contains(address) || allowed.contains(canonical)) {
        return Err(Refusal { address, range, embedded: None });
    }
    Ok(())
}

/// `ALLOWED_PRIVATE_CIDRS`: the refused ranges a deployer opens (callbacks and brokers are usually
/// private). Link-local and the metadata service stay refused even inside them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedNetworks(Vec<IpNet>);

impl AllowedNetworks {
    /// Nothing allowed: every refused range stays refused.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// Whether some loopback address is allowed (so a `localhost` name may lead somewhere allowed).
    pub fn allow_loopback(&self) -> bool {
        let loopback = IpNet::V4(v4(127, 0, 0, 0, 8));
        self.0.iter().any(|net| {
            net.contains(&loopback.network()) || loopback.contains(&net.network()) || net.contains(&IpAddr::V6(Ipv6Addr::LOCALHOST))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for AllowedNetworks {
    type Err = String;

    /// Comma-separated CIDRs (`10.0.0.0/8, fd12::/16`); a lone address is a network of one.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("'{item}' is not a CIDR such as 10.0.0.0/8 or fd00::/8"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for AllowedNetworks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&nets.join(","))
    }
}

/// A host as a connection would read it: an address, or a name to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Address(IpAddr),
    /// Lowercase, IDNA-encoded.
    Name(String),
}

impl Host {
    /// The host of `url`. The `url` crate reads IPv4 spellings the WHATWG way only for special
    /// schemes (`http`, `https`, …); any other (`docker://`, `kafka://`) is read as `http` would be.
    pub fn of_url(url: &Url) -> Option<Self> {
        match url.host()? {
            url::Host::Ipv4(address) => Some(Self::Address(IpAddr::V4(address))),
            url::Host::Ipv6(address) => Some(Self::Address(IpAddr::V6(address))),
            url::Host::Domain(name) if url.is_special() => Some(Self::Name(name.to_owned())),
            url::Host::Domain(name) => Self::parse(name),
        }
    }

    /// Whether this is an address, or a name of letters, digits, `.`, `-` and `_` only: what a
    /// list-splitting client (librdkafka splits on `,` and spaces) reads as one host.
    pub fn is_plain(&self) -> bool {
        match self {
            Self::Address(_) => true,
            Self::Name(name) => !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
        }
    }

    /// `host` or `host:port` (a Kafka broker, a docker registry), read as an `http` URL's host.
    pub fn parse(authority: &str) -> Option<Self> {
        let authority = authority.trim();
        if authority.is_empty() || authority.contains(['/', '\\', '?', '#', '@']) {
            return None;
        }
        let url = Url::parse(&format!("http://{authority}/")).ok()?;
        Self::of_url(&url)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(address) => address.fmt(f),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// A Kafka broker `host:port` as it is dialled and compared: the host read as an `http` URL's
/// (lowercase, IDNA, IPv4 spellings and percent-escapes resolved, IPv6 in brackets) and a port
/// other than 0. `None` for anything else (a list, userinfo, a path, no port).
pub fn broker_address(authority: &str) -> Option<String> {
    let authority = authority.trim();
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|port| *port != 0)?;
    let host = Host::parse(host).filter(Host::is_plain)?;
    Some(match host {
        Host::Address(IpAddr::V6(address)) => format!("[{address}]:{port}"),
        host => format!("{host}:{port}"),
    })
}

/// `KAFKA_ALLOWED_BROKERS`: the only Kafka brokers dialled, the bootstrap brokers a target names
/// and those the cluster advertises alike (`host:port,…`). Unset, any broker the SSRF guard
/// allows is dialled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedBrokers(Option<std::collections::BTreeSet<String>>);

impl AllowedBrokers {
    /// No list: every broker the SSRF guard allows.
    pub const fn any() -> Self {
        Self(None)
    }

    pub const fn is_restricted(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `broker` (`host:port`, any spelling of it) may be dialled.
    pub fn allows(&self, broker: &str) -> bool {
        match &self.0 {
            None => true,
            Some(list) => broker_address(broker).is_some_and(|broker| list.contains(&broker)),
        }
    }
}

impl FromStr for AllowedBrokers {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        let brokers = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| broker_address(entry).ok_or_else(|| format!("'{entry}' is not a Kafka broker host:port")))
            .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
        if brokers.is_empty() {
            return Err("lists no broker; leave it unset to allow any broker the SSRF guard allows".to_owned());
        }
        Ok(Self(Some(brokers)))
    }
}

/// Why a host is refused before any lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostRefusal {
    /// An address literal in a refused range.
    Address(Refusal),
    /// `localhost` or a name under it, while no loopback address is allowed.
    Localhost(String),
}

impl fmt::Display for HostRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(refusal) => refusal.fmt(f),
            Self::Localhost(name) => write!(f, "{name} names the loopback host"),
        }
    }
}

/// Whether `host` is refused before any lookup: an address in a refused range, or a `localhost`
/// name while no loopback address is allowed. Any other name is judged once resolved.
pub fn known_bad(host: &Host, allowed: &AllowedNetworks) -> Option<HostRefusal> {
    match host {
        Host::Address(address) => check(*address, allowed).err().map(HostRefusal::Address),
        Host::Name(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let localhost = name == "localhost" || name.ends_with(".localhost");
            (localhost && !allowed.allow_loopback()).then(|| HostRefusal::Localhost(host.to_string()))
        }
    }
}

/// [`known_bad`] for the host of a URL. A URL without a host has nothing to refuse here.
pub fn known_bad_url(url: &Url, allowed: &AllowedNetworks) -> Option<HostRefusal> {
    known_bad(&Host::of_url(url)?, allowed)
}

#[cfg(test)]
mod tests;
