//! The [addresses](crate::spec#addresses) rule: where a member can be dialled, in one
//! canonical form.

use std::net::SocketAddr;

use crate::wire::Hello;

/// Addresses are compared in canonical form (IPv4-mapped IPv6 → IPv4).
pub(crate) fn normalize(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Where a member that reached us from `remote` can be dialled: the IP it advertises
/// or the one we see, and the port it listens on (`None`: it does not listen).
pub(crate) fn advertised(hello: &Hello, remote: SocketAddr) -> Option<SocketAddr> {
    (hello.listen_port != 0).then(|| {
        normalize(SocketAddr::new(
            hello.advertise_ip.unwrap_or(remote.ip()),
            hello.listen_port,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_is_normalised() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:3000".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        assert_eq!(normalize(mapped), v4);
        let v6: SocketAddr = "[::1]:3000".parse().unwrap();
        assert_eq!(normalize(v6), v6);
    }
}
