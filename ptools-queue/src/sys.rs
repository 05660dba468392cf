//! The host facts a worker reports about itself: `gethostname` and `getifaddrs`, both
//! through nix (which frees the interface list itself); no raw libc is left here.

use std::net::IpAddr;

/// This host's name and the addresses of its interfaces. Runs inside a worker.
pub(crate) fn host_info(_: ()) -> (String, Vec<IpAddr>) {
    (hostname(), addresses())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn addresses() -> Vec<IpAddr> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = list
        .filter_map(|ifa| {
            let addr = ifa.address?;
            if let Some(sin) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(sin.ip()))
            } else {
                addr.as_sockaddr_in6().map(|sin6| IpAddr::V6(sin6.ip()))
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_host_has_a_name_and_loopback() {
        let (name, ips) = super::host_info(());
        assert!(!name.is_empty());
        assert!(ips.contains(&"127.0.0.1".parse().unwrap()), "{ips:?}");
    }
}
