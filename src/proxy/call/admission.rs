//! Admission: the gates a new call passes before any DNS or delivery work, in
//! order, cheapest first; a refusal costs no quota. Overload control (a bound
//! on INVITEs in flight, a per-source rate) and the concurrent-call limit of
//! the issue "Carrier-grade routing" slot in before the quota, the last and
//! only gate that may wait (on the quota owner).

use super::context::CallContext;
use crate::proxy::{
    drain::{DRAIN_RETRY_AFTER, Drain},
    outcome::Refusal,
    routes::Trunk,
};
use crate::sip::sdp;

/// Runs every gate for a new call of `trunk` offering `body`.
pub async fn admit(ctx: &CallContext, trunk: &Trunk, body: &[u8]) -> Result<(), Refusal> {
    draining(&ctx.drain)?;
    suspended(trunk)?;
    codecs(trunk, body)?;
    quota(ctx, trunk).await
}

/// A draining proxy takes no new call.
pub fn draining(drain: &Drain) -> Result<(), Refusal> {
    if drain.is_draining() {
        return Err(Refusal::Draining {
            retry_after: DRAIN_RETRY_AFTER,
        });
    }
    Ok(())
}

pub fn suspended(trunk: &Trunk) -> Result<(), Refusal> {
    if trunk.cfg.spec.suspended {
        return Err(Refusal::Suspended);
    }
    Ok(())
}

/// An offer must name one of the trunk's codecs; an empty body (late offer) passes.
pub fn codecs(trunk: &Trunk, body: &[u8]) -> Result<(), Refusal> {
    let allowed = &trunk.cfg.spec.codecs;
    if !body.is_empty() && !sdp::offers_any(body, allowed) {
        return Err(Refusal::NoCodec {
            allowed: allowed.clone(),
        });
    }
    Ok(())
}

/// The trunk's calls-per-minute quota, shared with the fleet.
async fn quota(ctx: &CallContext, trunk: &Trunk) -> Result<(), Refusal> {
    ctx.quota.admit(trunk).await.map_err(|retry_after| {
        ctx.metrics
            .cpm_throttled
            .with_label_values(&[trunk.name()])
            .inc();
        Refusal::Quota { retry_after }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{config::ProxyConfig, proxy::routes::Routes, sip::Codec};

    fn trunk(extra: &str) -> Arc<Trunk> {
        let yaml = format!(
            "listen: {{ tcp: 127.0.0.1:0 }}\nsignalingDomain: pstn.example.net\ntrunks:\n  \
             - {{ name: acme/a, trunkSid: TSA, fqdn: sip.a.example, numbers: [\"+911111111111\"]{extra} }}\n"
        );
        let routes = Routes::compile(
            ProxyConfig::from_yaml(&yaml).expect("config"),
            &Routes::empty(),
        )
        .expect("routes");
        routes.trunks[0].clone()
    }

    const PCMU_ONLY: &[u8] = b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
    const G729_ONLY: &[u8] = b"v=0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";

    #[test]
    fn gates_refuse_for_their_own_reason_only() {
        let t = trunk("");
        assert_eq!(suspended(&t), Ok(()));
        assert_eq!(codecs(&t, PCMU_ONLY), Ok(()));
        assert_eq!(codecs(&t, b""), Ok(()), "a late offer passes");
        assert_eq!(
            codecs(&t, G729_ONLY),
            Err(Refusal::NoCodec {
                allowed: vec![Codec::PCMA, Codec::PCMU]
            })
        );
        let off = trunk(", suspended: true");
        assert_eq!(suspended(&off), Err(Refusal::Suspended));
        let pcma = trunk(", codecs: [PCMA]");
        assert!(codecs(&pcma, PCMU_ONLY).is_err());
    }

    #[test]
    fn a_draining_proxy_refuses_with_a_retry_after() {
        let drain = Drain::default();
        assert_eq!(draining(&drain), Ok(()));
        drain.start();
        assert_eq!(
            draining(&drain),
            Err(Refusal::Draining {
                retry_after: DRAIN_RETRY_AFTER
            })
        );
    }
}
