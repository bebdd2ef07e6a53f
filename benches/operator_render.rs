//! Benchmark (not a test): the operator's pure render of N trunks, in the release profile.
//!
//!   cargo bench --bench operator_render                 10,000 trunks, 21 runs
//!   cargo bench --bench operator_render -- 1000 51      1,000 trunks, 51 runs
//!
//! Prints a human summary and one machine-readable line (`bench/operator.sh` parses it):
//!   RESULT trunks=… runs=… render_ms_median=… render_ms_min=… render_cpu_ms_median=…
//!          render_ms_max=…
//!          secret_ms_median=… yaml_bytes=… gz_bytes=… secret_key=… secret_bytes=…
//! `render` is `vsip::operator::render::render` (what the `vsip_operator_render_seconds`
//! histogram times); `secret` is the rest of a write: the YAML document and, when it is
//! large, its gzip (`wire::config_secret::encode`), i.e. the bytes the Secret carries.

use std::{sync::Arc, time::Instant};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use vsip::{
    config::{VirtualSipTrunk, VirtualSipTrunkSpec},
    operator::{
        OperatorArgs,
        fleet::FleetSettings,
        hash::fnv1a_128,
        render::{self, SecretLookup},
    },
    wire::config_secret,
};

/// A trunk shaped like the ones `bench/operator.sh` applies: distinct namespace/name/FQDN,
/// two numbers, a status with its SID, generation 1.
fn trunk(i: usize) -> Arc<VirtualSipTrunk> {
    let spec: VirtualSipTrunkSpec = serde_json::from_value(serde_json::json!({
        "fqdn": format!("t{i:05}.opbench.example"),
        "transport": "TCP",
        "port": 25080,
        "ipFamilies": ["IPv4"],
        "numbers": [format!("+9180{i:08}"), format!("+9181{i:08}")],
        "callsPerMinute": 200,
    }))
    .expect("spec");
    let mut t = VirtualSipTrunk::new(&format!("t{i:05}"), spec);
    t.metadata.namespace = Some(format!("opbench-{}", i % 10));
    t.metadata.uid = Some(format!("{:032x}", fnv1a_128(&i.to_le_bytes())));
    t.metadata.generation = Some(1);
    t.metadata.creation_timestamp = Some(Time(
        Timestamp::from_second(1_700_000_000 + i as i64).expect("timestamp"),
    ));
    Arc::new(t)
}

/// The fleet settings `bench/operator.sh` gives the operator, through its own flags (so this
/// keeps compiling when settings are added).
fn fleet() -> FleetSettings {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        operator: OperatorArgs,
    }
    <Cli as clap::Parser>::parse_from([
        "vsip-operator",
        "--proxy-image=ghcr.io/vsip/vsip:0.1.0",
        "--upstream=sip:127.0.0.1:25060;transport=tcp",
        "--signaling-domain=pstn.example.net",
        "--dns-nameserver=127.0.0.1:25353",
    ])
    .operator
    .fleet()
}

/// CPU time of this thread: what the render costs without the other processes of a shared
/// machine (wall time is what the target is about; both are printed).
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; positional numbers are ours.
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = nums.first().copied().unwrap_or(10_000);
    let runs = nums.get(1).copied().unwrap_or(21).max(1);

    let trunks: Vec<Arc<VirtualSipTrunk>> = (0..n).map(trunk).collect();
    let secrets = SecretLookup::new();
    let fleet = fleet();

    // One warm-up run (allocator, page faults), not counted.
    let warm = render::render(&trunks, &secrets, &fleet);
    assert_eq!(warm.config.trunks.len(), n, "every trunk rendered");

    let mut render_ms = Vec::with_capacity(runs);
    let mut render_cpu_ms = Vec::with_capacity(runs);
    let mut secret_ms = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let c0 = thread_cpu();
        let t0 = Instant::now();
        let r = render::render(&trunks, &secrets, &fleet);
        let t1 = Instant::now();
        render_cpu_ms.push((thread_cpu() - c0).as_secs_f64() * 1e3);
        let data = config_secret::encode(&r.config);
        let t2 = Instant::now();
        render_ms.push((t1 - t0).as_secs_f64() * 1e3);
        secret_ms.push((t2 - t1).as_secs_f64() * 1e3);
        last = Some((r, data));
    }
    let (r, data) = last.expect("at least one run");
    let yaml_bytes = r.config.to_yaml().len();
    let gz_bytes = config_secret::gzip(r.config.to_yaml().as_bytes()).len();
    let (secret_key, secret_bytes) = data
        .iter()
        .map(|(k, v)| (k.clone(), v.0.len()))
        .next()
        .expect("one key");
    // The Secret decodes back to the same configuration.
    let back = config_secret::decode(&data).expect("round trip");
    assert_eq!(
        back, r.config,
        "the Secret holds the rendered configuration"
    );

    let (min, max) = (
        render_ms.iter().copied().fold(f64::INFINITY, f64::min),
        render_ms.iter().copied().fold(0.0, f64::max),
    );
    let render_med = median(&mut render_ms);
    let render_cpu_med = median(&mut render_cpu_ms);
    let secret_med = median(&mut secret_ms);
    println!(
        "render of {n} trunks: median {render_med:.2} ms (min {min:.2}, max {max:.2}, {runs} runs; \
         CPU time median {render_cpu_med:.2} ms); \
         YAML {yaml_bytes} B, gzip {gz_bytes} B; Secret key {secret_key} = {secret_bytes} B \
         (serialize+compress median {secret_med:.2} ms)"
    );
    println!(
        "RESULT trunks={n} runs={runs} render_ms_median={render_med:.3} render_ms_min={min:.3} \
         render_cpu_ms_median={render_cpu_med:.3} \
         render_ms_max={max:.3} secret_ms_median={secret_med:.3} yaml_bytes={yaml_bytes} \
         gz_bytes={gz_bytes} secret_key={secret_key} secret_bytes={secret_bytes}"
    );
}
