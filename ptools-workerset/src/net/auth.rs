//! Mutual authentication of one TCP connection with the job's secret, before any frame.
//!
//! Three fixed-size messages, so that nothing read before the peer is proven decides a
//! length or an allocation:
//!
//! 1. master to worker, [`CHALLENGE_LEN`] bytes: [`AUTH_MAGIC`], then the master's fresh
//!    32-byte nonce `nm`;
//! 2. worker to master, [`RESPONSE_LEN`] bytes: the worker's fresh nonce `nw`, then
//!    `HMAC-SHA256(secret, "ptools/1 worker" || nm || nw)`;
//! 3. master to worker, [`PROOF_LEN`] bytes: `HMAC-SHA256(secret, "ptools/1 master" || nm ||
//!    nw)`.
//!
//! Each side proves the secret over a nonce the other just drew, so a recorded handshake
//! replayed on a new connection fails (the master's nonce is new), and the two labels keep
//! one side's proof from being reflected as the other's. Tags are compared in constant time
//! (`Mac::verify_slice`). The connection carries frames only after both proofs.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Bytes in the job's secret.
pub(crate) const SECRET_LEN: usize = 32;
/// Bytes in a nonce.
const NONCE_LEN: usize = 32;
/// Bytes in an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Opens the master's challenge (and names the version of this exchange).
pub(crate) const AUTH_MAGIC: [u8; 8] = *b"PTAUTH/1";
/// The master's first message: magic and nonce.
pub(crate) const CHALLENGE_LEN: usize = AUTH_MAGIC.len() + NONCE_LEN;
/// The worker's answer: its nonce and its tag.
pub(crate) const RESPONSE_LEN: usize = NONCE_LEN + TAG_LEN;
/// The master's proof: its tag.
pub(crate) const PROOF_LEN: usize = TAG_LEN;

const WORKER_LABEL: &[u8] = b"ptools/1 worker";
const MASTER_LABEL: &[u8] = b"ptools/1 master";

/// A job's secret: 32 random bytes, drawn by the master once per cluster.
///
/// Its `Debug` never shows the bytes, and they are overwritten on drop.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret([u8; SECRET_LEN]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Not a guarantee (copies may exist elsewhere), only no copy kept by us.
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

impl Secret {
    /// A fresh secret from the operating system's random source.
    pub(crate) fn random() -> io::Result<Secret> {
        let mut b = [0u8; SECRET_LEN];
        random(&mut b)?;
        Ok(Secret(b))
    }

    /// The secret as 64 lower-case hex digits (what a worker is given).
    pub(crate) fn to_hex(&self) -> String {
        let mut s = String::with_capacity(2 * SECRET_LEN);
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s
    }

    /// Reads a secret written by [`to_hex`](Self::to_hex); surrounding white space is
    /// ignored. `None` for anything else.
    pub(crate) fn from_hex(s: &str) -> Option<Secret> {
        let s = s.trim().as_bytes();
        if s.len() != 2 * SECRET_LEN {
            return None;
        }
        let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
        let mut b = [0u8; SECRET_LEN];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            b[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Secret(b))
    }

    fn tag(&self, label: &[u8], nm: &[u8], nw: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length; 32 bytes is never refused.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(label);
        mac.update(nm);
        mac.update(nw);
        mac
    }
}

/// Fills `buf` from the operating system's random source (`getrandom(2)`).
pub(crate) fn random(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(|e| io::Error::other(format!("no random bytes: {e}")))
}

/// The master's side of one exchange, driven by whoever reads the connection (the
/// listener's poll loop): [`challenge`](Self::challenge) to send, then the worker's
/// [`RESPONSE_LEN`] bytes to [`check`](Self::check).
#[derive(Debug)]
pub(crate) struct MasterSide {
    nonce: [u8; NONCE_LEN],
}

impl MasterSide {
    /// A new exchange with a fresh nonce.
    pub(crate) fn new() -> io::Result<MasterSide> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        Ok(MasterSide { nonce })
    }

    /// The challenge to send first.
    pub(crate) fn challenge(&self) -> [u8; CHALLENGE_LEN] {
        let mut c = [0u8; CHALLENGE_LEN];
        c[..AUTH_MAGIC.len()].copy_from_slice(&AUTH_MAGIC);
        c[AUTH_MAGIC.len()..].copy_from_slice(&self.nonce);
        c
    }

    /// Checks the worker's answer; on success, the proof to send back.
    pub(crate) fn check(
        &self,
        secret: &Secret,
        response: &[u8; RESPONSE_LEN],
    ) -> Option<[u8; PROOF_LEN]> {
        let (nw, tag) = response.split_at(NONCE_LEN);
        secret
            .tag(WORKER_LABEL, &self.nonce, nw)
            .verify_slice(tag)
            .ok()?;
        let mut proof = [0u8; PROOF_LEN];
        proof.copy_from_slice(
            &secret
                .tag(MASTER_LABEL, &self.nonce, nw)
                .finalize()
                .into_bytes(),
        );
        Some(proof)
    }
}

/// The worker's answer to `challenge` and the state to check the master's proof with;
/// `None` when the challenge is not one.
pub(crate) fn respond(
    secret: &Secret,
    challenge: &[u8; CHALLENGE_LEN],
) -> io::Result<Option<([u8; RESPONSE_LEN], WorkerSide)>> {
    let (magic, nm) = challenge.split_at(AUTH_MAGIC.len());
    if magic != AUTH_MAGIC {
        return Ok(None);
    }
    let mut nw = [0u8; NONCE_LEN];
    random(&mut nw)?;
    let mut r = [0u8; RESPONSE_LEN];
    r[..NONCE_LEN].copy_from_slice(&nw);
    r[NONCE_LEN..].copy_from_slice(&secret.tag(WORKER_LABEL, nm, &nw).finalize().into_bytes());
    let mut m = [0u8; NONCE_LEN];
    m.copy_from_slice(nm);
    Ok(Some((r, WorkerSide { nm: m, nw })))
}

/// What a worker keeps to check the master's proof.
#[derive(Debug)]
pub(crate) struct WorkerSide {
    nm: [u8; NONCE_LEN],
    nw: [u8; NONCE_LEN],
}

impl WorkerSide {
    /// True when `proof` shows that the master holds the secret.
    pub(crate) fn verify(&self, secret: &Secret, proof: &[u8; PROOF_LEN]) -> bool {
        secret
            .tag(MASTER_LABEL, &self.nm, &self.nw)
            .verify_slice(proof)
            .is_ok()
    }
}

/// The worker's whole exchange on a blocking stream, every read before `deadline`.
///
/// # Errors
///
/// `PermissionDenied` when the peer is not a master of this job (a wrong challenge or a
/// wrong proof), `TimedOut` past the deadline, and the stream's own errors.
pub(crate) fn authenticate_to_master(
    s: &mut TcpStream,
    secret: &Secret,
    deadline: Instant,
) -> io::Result<()> {
    let mut challenge = [0u8; CHALLENGE_LEN];
    read_exact_before(s, &mut challenge, deadline)?;
    let Some((response, side)) = respond(secret, &challenge)? else {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the master's challenge is not a ptools challenge",
        ));
    };
    s.write_all(&response)?;
    let mut proof = [0u8; PROOF_LEN];
    read_exact_before(s, &mut proof, deadline)?;
    if !side.verify(secret, &proof) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the master could not prove the job's secret",
        ));
    }
    Ok(())
}

/// `read_exact` where every read waits at most until `deadline`.
pub(crate) fn read_exact_before(
    s: &mut TcpStream,
    mut buf: &mut [u8],
    deadline: Instant,
) -> io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "peer too slow"));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "peer too slow"));
            }
            Err(e) => return Err(e),
        }
    }
    s.set_read_timeout(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(master: &Secret, worker: &Secret) -> (bool, bool) {
        let m = MasterSide::new().unwrap();
        let (resp, side) = respond(worker, &m.challenge()).unwrap().unwrap();
        match m.check(master, &resp) {
            None => (false, false),
            Some(proof) => (true, side.verify(worker, &proof)),
        }
    }

    #[test]
    fn same_secret_both_proven() {
        let s = Secret::random().unwrap();
        assert_eq!(exchange(&s, &s.clone()), (true, true));
    }

    #[test]
    fn wrong_secret_refused_by_master() {
        let a = Secret::random().unwrap();
        let b = Secret::random().unwrap();
        assert_eq!(exchange(&a, &b), (false, false));
    }

    /// A worker's recorded answer is worthless on a new connection: the nonce changed.
    #[test]
    fn replayed_response_refused() {
        let s = Secret::random().unwrap();
        let first = MasterSide::new().unwrap();
        let (recorded, _) = respond(&s, &first.challenge()).unwrap().unwrap();
        assert!(first.check(&s, &recorded).is_some());
        let second = MasterSide::new().unwrap();
        assert!(second.check(&s, &recorded).is_none());
    }

    /// The master's proof is not the worker's tag: reflecting the worker's own tag back
    /// fails, and a master without the secret cannot prove it.
    #[test]
    fn reflected_or_forged_proof_refused() {
        let s = Secret::random().unwrap();
        let m = MasterSide::new().unwrap();
        let (resp, side) = respond(&s, &m.challenge()).unwrap().unwrap();
        let mut reflected = [0u8; PROOF_LEN];
        reflected.copy_from_slice(&resp[NONCE_LEN..]);
        assert!(!side.verify(&s, &reflected));
        let other = Secret::random().unwrap();
        let forged = m.check(&other, &respond(&other, &m.challenge()).unwrap().unwrap().0);
        assert!(!side.verify(&s, &forged.unwrap()));
    }

    #[test]
    fn not_a_challenge() {
        let s = Secret::random().unwrap();
        assert!(respond(&s, &[0u8; CHALLENGE_LEN]).unwrap().is_none());
    }

    #[test]
    fn hex_round_trip_and_refusals() {
        let s = Secret::random().unwrap();
        assert_eq!(
            Secret::from_hex(&format!(" {}\n", s.to_hex())),
            Some(s.clone())
        );
        assert!(Secret::from_hex(&s.to_hex()[1..]).is_none());
        assert!(Secret::from_hex(&"g".repeat(64)).is_none());
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }
}
