//! The host facts a worker reports about itself, from the worker runtime's
//! [`WorkerHost::this_host`](ptools_workerset::WorkerHost::this_host).

use std::net::IpAddr;

/// This host's name and the addresses of its interfaces. Runs inside a worker.
pub(crate) fn host_info(_: ()) -> (String, Vec<IpAddr>) {
    let h = ptools_workerset::WorkerHost::this_host();
    (h.hostname, h.addresses)
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
