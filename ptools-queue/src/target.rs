//! Targets (which workers may run a task), what is known about each worker's host, and
//! the resolution of a target to worker ids. Pure: no system calls.

use std::net::IpAddr;

use crate::core::Bucket;
use crate::error::{Error, Result};

/// The workers a task may run on.
///
/// Host targets match a worker's host name, its short name (up to the first dot) or any of
/// its IP addresses, as learnt by [`prep_remotes`](crate::TaskQueue::prep_remotes); a
/// fully qualified name also matches by its short name, as in PTools.jl. Names compare
/// without regard to ASCII case.
///
/// ```
/// use ptools_queue::Target;
///
/// assert_eq!(Target::from(3), Target::Worker(3));
/// assert_eq!(Target::from(vec![2, 3]), Target::Workers(vec![2, 3]));
/// assert_eq!(Target::from("node7"), Target::Host("node7".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// Any one worker (PTools.jl `:wrkr_any`).
    Any,
    /// Every worker, once each (PTools.jl `:wrkr_all`): the workers prepared when the
    /// task is queued, each part reported to the callback on its own.
    All,
    /// This worker.
    Worker(usize),
    /// Any one of these workers.
    Workers(Vec<usize>),
    /// Any one worker on this host (name, short name or IP address).
    Host(String),
    /// Any one worker on one of these hosts.
    Hosts(Vec<String>),
}

impl From<usize> for Target {
    fn from(id: usize) -> Self {
        Target::Worker(id)
    }
}

impl From<Vec<usize>> for Target {
    fn from(ids: Vec<usize>) -> Self {
        Target::Workers(ids)
    }
}

impl From<&[usize]> for Target {
    fn from(ids: &[usize]) -> Self {
        Target::Workers(ids.to_vec())
    }
}

impl From<&str> for Target {
    fn from(h: &str) -> Self {
        Target::Host(h.to_owned())
    }
}

impl From<String> for Target {
    fn from(h: String) -> Self {
        Target::Host(h)
    }
}

impl From<IpAddr> for Target {
    fn from(ip: IpAddr) -> Self {
        Target::Host(ip.to_string())
    }
}

impl From<Vec<String>> for Target {
    fn from(hs: Vec<String>) -> Self {
        Target::Hosts(hs)
    }
}

impl From<Vec<&str>> for Target {
    fn from(hs: Vec<&str>) -> Self {
        Target::Hosts(hs.into_iter().map(str::to_owned).collect())
    }
}

/// A worker's host, as learnt by [`prep_remotes`](crate::TaskQueue::prep_remotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInfo {
    /// The worker id.
    pub id: usize,
    /// The worker's process id.
    pub pid: i32,
    /// Its host name (`gethostname`).
    pub hostname: String,
    /// The addresses of its host's interfaces (`getifaddrs`), loopback included.
    pub ips: Vec<IpAddr>,
}

impl RemoteInfo {
    /// The host name up to the first dot.
    pub fn short_name(&self) -> &str {
        short(&self.hostname)
    }

    /// True if `host` names this worker's host: its name, short name, or one of its IP
    /// addresses; a dotted name also matches by its own short name.
    pub fn on_host(&self, host: &str) -> bool {
        let host = host.trim();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.ips.contains(&ip);
        }
        host.eq_ignore_ascii_case(&self.hostname)
            || host.eq_ignore_ascii_case(self.short_name())
            || short(host).eq_ignore_ascii_case(self.short_name())
    }
}

fn short(h: &str) -> &str {
    h.split('.').next().unwrap_or(h)
}

/// A target resolved against the live workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// One entry, in this bucket.
    One(Bucket),
    /// One entry per worker, each pinned to it.
    All(Vec<usize>),
}

/// Resolves `t` against `live` (the prepared, live workers). `dead` tells whether an id
/// is a worker that existed and died, with the error to report.
pub(crate) fn resolve(
    t: &Target,
    live: &[RemoteInfo],
    dead: impl Fn(usize) -> Option<Error>,
) -> Result<Resolved> {
    let known = |id: usize| -> Result<usize> {
        if live.iter().any(|r| r.id == id) {
            Ok(id)
        } else {
            Err(dead(id).unwrap_or(Error::UnknownWorker(id)))
        }
    };
    let on_host = |h: &str| -> Result<Vec<usize>> {
        let ids: Vec<usize> = live.iter().filter(|r| r.on_host(h)).map(|r| r.id).collect();
        if ids.is_empty() {
            Err(Error::UnknownHost(h.to_owned()))
        } else {
            Ok(ids)
        }
    };
    let empty = |what: &str| Error::InvalidArgument(format!("empty list of {what}"));
    Ok(match t {
        Target::Any => {
            if live.is_empty() {
                return Err(Error::NoWorkers);
            }
            Resolved::One(Bucket::Any)
        }
        Target::All => {
            if live.is_empty() {
                return Err(Error::NoWorkers);
            }
            Resolved::All(live.iter().map(|r| r.id).collect())
        }
        Target::Worker(id) => Resolved::One(Bucket::ids(vec![known(*id)?])),
        Target::Workers(ids) => {
            if ids.is_empty() {
                return Err(empty("workers"));
            }
            // Every id must exist: a typo is an error, not a silent narrowing.
            let ids = ids.iter().map(|&i| known(i)).collect::<Result<Vec<_>>>()?;
            Resolved::One(Bucket::ids(ids))
        }
        Target::Host(h) => Resolved::One(Bucket::ids(on_host(h)?)),
        Target::Hosts(hs) => {
            if hs.is_empty() {
                return Err(empty("hosts"));
            }
            let mut ids = Vec::new();
            for h in hs {
                ids.extend(on_host(h)?);
            }
            Resolved::One(Bucket::ids(ids))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infos() -> Vec<RemoteInfo> {
        vec![
            RemoteInfo {
                id: 2,
                pid: 100,
                hostname: "alpha.example.org".into(),
                ips: vec!["127.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
            },
            RemoteInfo {
                id: 3,
                pid: 101,
                hostname: "beta".into(),
                ips: vec!["10.0.0.3".parse().unwrap(), "::1".parse().unwrap()],
            },
        ]
    }

    fn ids(r: Result<Resolved>) -> Vec<usize> {
        match r.unwrap() {
            Resolved::One(Bucket::Ids(v)) => v.to_vec(),
            other => panic!("expected ids, got {other:?}"),
        }
    }

    #[test]
    fn hosts_by_name_short_name_fqdn_and_ip() {
        let l = infos();
        let none = |_| None;
        assert_eq!(ids(resolve(&"alpha.example.org".into(), &l, none)), [2]);
        assert_eq!(ids(resolve(&"ALPHA".into(), &l, none)), [2]);
        assert_eq!(ids(resolve(&"beta.other.net".into(), &l, none)), [3]);
        assert_eq!(ids(resolve(&"10.0.0.3".into(), &l, none)), [3]);
        assert_eq!(ids(resolve(&"::1".into(), &l, none)), [3]);
        assert_eq!(
            ids(resolve(&vec!["beta", "127.0.0.1"].into(), &l, none)),
            [2, 3]
        );
        assert!(matches!(
            resolve(&"gamma".into(), &l, none),
            Err(Error::UnknownHost(h)) if h == "gamma"
        ));
        assert!(matches!(
            resolve(&"10.9.9.9".into(), &l, none),
            Err(Error::UnknownHost(_))
        ));
    }

    #[test]
    fn ids_any_all_and_errors() {
        let l = infos();
        let none = |_| None;
        assert_eq!(ids(resolve(&3.into(), &l, none)), [3]);
        assert_eq!(ids(resolve(&vec![3, 2, 3].into(), &l, none)), [2, 3]);
        assert_eq!(
            resolve(&Target::Any, &l, none).unwrap(),
            Resolved::One(Bucket::Any)
        );
        assert_eq!(
            resolve(&Target::All, &l, none).unwrap(),
            Resolved::All(vec![2, 3])
        );
        assert!(matches!(
            resolve(&9.into(), &l, none),
            Err(Error::UnknownWorker(9))
        ));
        assert!(matches!(
            resolve(&vec![2, 9].into(), &l, |_| Some(Error::NoWorkers)),
            Err(Error::NoWorkers)
        ));
        assert!(matches!(
            resolve(&Target::Workers(vec![]), &l, none),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            resolve(&Target::Any, &[], none),
            Err(Error::NoWorkers)
        ));
    }
}
