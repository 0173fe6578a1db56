//! Issues N SPIFFE workload certificates in one process through the library
//! (no file writes), for `bench/issue_1000.sh`. Usage: `issue_many <CA_DIR> [N]`.

use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: issue_many <CA_DIR> [N]"))?;
    let n: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let ca = certgen::Ca::load_dir(std::path::Path::new(&dir))?;
    let start = Instant::now();
    for i in 0..n {
        let id = format!("spiffe://cluster.local/ns/bench/sa/sa-{i}");
        let leaf = ca.issue_workload(
            &id,
            certgen::KeyAlgorithm::EcdsaP256,
            Duration::from_secs(24 * 3600),
        )?;
        std::hint::black_box(leaf);
    }
    let t = start.elapsed();
    println!(
        "library: {n} certs in {:.3} s ({:.1} µs/cert)",
        t.as_secs_f64(),
        t.as_secs_f64() * 1e6 / f64::from(n)
    );
    Ok(())
}
