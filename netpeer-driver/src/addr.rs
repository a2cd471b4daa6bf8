//! [`ToAddrs`]: the address forms `join` and `listen` accept, as the ecosystem passes
//! them (`SocketAddr`, `(host, port)`, `"host:port"`).

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
};

use crate::runtime::Runtime;

/// What a [`ToAddrs`] value names: addresses as they are, or a `host:port` to look up
/// through the runtime's resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addrs {
    /// Addresses, tried in order.
    Resolved(Vec<SocketAddr>),
    /// A host name and port (`"localhost:3000"`), resolved when used.
    Lookup(String),
}

impl Addrs {
    /// The addresses, resolved through `rt` if needed.
    pub async fn resolve<R: Runtime>(self, rt: &R) -> io::Result<Vec<SocketAddr>> {
        let (addrs, what) = match self {
            Addrs::Resolved(addrs) => (addrs, None),
            Addrs::Lookup(host_port) => (rt.resolve(&host_port).await?, Some(host_port)),
        };
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                match what {
                    Some(h) => format!("{h:?} resolved to no address"),
                    None => "no address given".to_owned(),
                },
            ));
        }
        Ok(addrs)
    }

    /// How to name it in an error.
    pub(crate) fn describe(&self) -> String {
        match self {
            Addrs::Resolved(addrs) => match &addrs[..] {
                [one] => one.to_string(),
                many => format!("{many:?}"),
            },
            Addrs::Lookup(h) => h.clone(),
        }
    }
}

/// A value that names where to dial or listen, like [`std::net::ToSocketAddrs`], but
/// resolved through the peer's runtime (never a blocking lookup on an async thread):
/// a [`SocketAddr`] (so `ben.join(ana.local_addr())` works), `(IpAddr, u16)`,
/// `(&str, u16)`, `"host:port"`, a `String`, or a slice of addresses (tried in order).
pub trait ToAddrs {
    /// The addresses, or the `host:port` to resolve.
    fn to_addrs(&self) -> Addrs;
}

impl<T: ToAddrs + ?Sized> ToAddrs for &T {
    fn to_addrs(&self) -> Addrs {
        (**self).to_addrs()
    }
}

impl ToAddrs for SocketAddr {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![*self])
    }
}

impl ToAddrs for SocketAddrV4 {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::V4(*self)])
    }
}

impl ToAddrs for SocketAddrV6 {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::V6(*self)])
    }
}

impl ToAddrs for (IpAddr, u16) {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::new(self.0, self.1)])
    }
}

impl ToAddrs for (Ipv4Addr, u16) {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::new(self.0.into(), self.1)])
    }
}

impl ToAddrs for (Ipv6Addr, u16) {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::new(self.0.into(), self.1)])
    }
}

impl ToAddrs for (&str, u16) {
    fn to_addrs(&self) -> Addrs {
        host_port(self.0, self.1)
    }
}

impl ToAddrs for (String, u16) {
    fn to_addrs(&self) -> Addrs {
        host_port(&self.0, self.1)
    }
}

impl ToAddrs for str {
    fn to_addrs(&self) -> Addrs {
        match self.parse() {
            Ok(addr) => Addrs::Resolved(vec![addr]),
            Err(_) => Addrs::Lookup(self.to_owned()),
        }
    }
}

impl ToAddrs for String {
    fn to_addrs(&self) -> Addrs {
        self.as_str().to_addrs()
    }
}

impl ToAddrs for [SocketAddr] {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(self.to_vec())
    }
}

impl ToAddrs for Vec<SocketAddr> {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(self.clone())
    }
}

fn host_port(host: &str, port: u16) -> Addrs {
    match host.parse::<IpAddr>() {
        Ok(ip) => Addrs::Resolved(vec![SocketAddr::new(ip, port)]),
        // `[::1]` as a host is an address too.
        Err(_) => match host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<Ipv6Addr>().ok())
        {
            Some(ip) => Addrs::Resolved(vec![SocketAddr::new(ip.into(), port)]),
            None => Addrs::Lookup(format!("{host}:{port}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_names_the_same_address() {
        let a: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let want = Addrs::Resolved(vec![a]);
        assert_eq!(a.to_addrs(), want);
        assert_eq!(ToAddrs::to_addrs(&&a), want);
        assert_eq!("127.0.0.1:3000".to_addrs(), want);
        assert_eq!(String::from("127.0.0.1:3000").to_addrs(), want);
        assert_eq!(("127.0.0.1", 3000).to_addrs(), want);
        assert_eq!((Ipv4Addr::LOCALHOST, 3000).to_addrs(), want);
        assert_eq!((IpAddr::from(Ipv4Addr::LOCALHOST), 3000).to_addrs(), want);
        assert_eq!([a][..].to_addrs(), want);
        let v6: SocketAddr = "[::1]:3000".parse().unwrap();
        assert_eq!(("[::1]", 3000).to_addrs(), Addrs::Resolved(vec![v6]));
        assert_eq!(("::1", 3000).to_addrs(), Addrs::Resolved(vec![v6]));
    }

    #[test]
    fn host_names_are_looked_up_later() {
        assert_eq!(
            ("localhost", 3000).to_addrs(),
            Addrs::Lookup("localhost:3000".into())
        );
        assert_eq!(
            "localhost:3000".to_addrs(),
            Addrs::Lookup("localhost:3000".into())
        );
        assert_eq!(Addrs::Resolved(vec![]).describe(), "[]");
    }
}
