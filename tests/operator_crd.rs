//! The committed CRD (`crds/vsip.io_virtualsiptrunks.yaml`) must be exactly what `vsip crdgen`
//! prints from the Rust types. Regenerate with:
//!
//! ```sh
//! VSIP_UPDATE_CRDS=1 cargo test --test operator_crd
//! ```

use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/vsip.io_virtualsiptrunks.yaml")
}

#[test]
fn committed_crd_matches_the_types() {
    let generated = vsip::operator::crdgen::yaml().expect("CRD renders");
    let path = committed_path();
    if std::env::var_os("VSIP_UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated).expect("write CRD");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with src/config/trunk.rs; regenerate it with \
         `VSIP_UPDATE_CRDS=1 cargo test --test operator_crd` (or `vsip crdgen > {}`)",
        path.display(),
        path.display()
    );
}
