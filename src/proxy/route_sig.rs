//! Signed Record-Route entries.
//!
//! An in-dialog request is relayed to whatever its Request-URI names, so a
//! Route entry carrying our marker must be one this proxy (or its fleet) put
//! there: otherwise anyone could use the proxy as an open relay towards any
//! host. Each entry carries `vs=<HMAC-SHA256(key, side|trunk|Call-ID)>`,
//! truncated to 64 bits; a request whose entry does not verify gets 403.

use ring::hmac;

/// Route parameter holding the signature.
pub const RR_SIG: &str = "vs";

pub struct RouteKey {
    key: hmac::Key,
}

impl RouteKey {
    /// A key shared by every proxy that must accept the others' routes (and by
    /// a proxy across restarts): any secret bytes, hashed into the HMAC key.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// A key of this process only: routes do not survive a restart.
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self::from_secret(&bytes)
    }

    pub fn sign(&self, side: &str, trunk_sid: &str, call_id: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [side, trunk_sid, call_id] {
            ctx.update(part.as_bytes());
            ctx.update(&[0]);
        }
        let tag = ctx.sign();
        tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn verify(&self, side: &str, trunk_sid: &str, call_id: &str, sig: &str) -> bool {
        let want = self.sign(side, trunk_sid, call_id);
        // Constant time: the comparison must not tell an attacker how close a guess is.
        want.len() == sig.len()
            && want
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_side_trunk_and_call() {
        let k = RouteKey::from_secret(b"fleet secret");
        let s = k.sign("tr", "TS1", "call-1@host");
        assert_eq!(s.len(), 16);
        assert!(k.verify("tr", "TS1", "call-1@host", &s));
        assert!(k.verify("tr", "TS1", "call-1@host", &s.to_ascii_uppercase()));
        assert!(!k.verify("up", "TS1", "call-1@host", &s));
        assert!(!k.verify("tr", "TS2", "call-1@host", &s));
        assert!(!k.verify("tr", "TS1", "call-2@host", &s));
        assert!(!k.verify("tr", "TS1", "call-1@host", &s[..15]));
        assert!(!k.verify("tr", "TS1", "call-1@host", ""));
        // Field boundaries are unambiguous.
        assert_ne!(k.sign("tr", "TS1a", "b"), k.sign("tr", "TS1", "ab"));
    }

    #[test]
    fn same_secret_same_signature_other_secret_not() {
        let a = RouteKey::from_secret(b"s");
        let b = RouteKey::from_secret(b"s");
        let c = RouteKey::random();
        let sig = a.sign("up", "TS", "c");
        assert!(b.verify("up", "TS", "c", &sig));
        assert!(!c.verify("up", "TS", "c", &sig));
    }
}
