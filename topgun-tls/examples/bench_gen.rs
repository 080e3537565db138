//! Times the generation of a CA plus 10 leaf certificates, in process.
//!
//! `cargo run --release -p topgun-tls --example bench_gen -- [ITERATIONS]`
//! prints one JSON line: `{"iterations":N,"median_ms":..,"p90_ms":..,"min_ms":..}`.
//! `cargo xtask bench tls` runs it.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use topgun_tls::{CaParams, CertUsage, CertificateAuthority, LeafParams, parse_san_list};

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ITERATIONS is a number"))
        .unwrap_or(100);
    let sans = parse_san_list("k3d-demo-server-0,localhost,127.0.0.1,::1,192.168.1.28")
        .expect("valid SANs");
    let usages = [CertUsage::Server, CertUsage::Peer, CertUsage::Client];
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let ca = CertificateAuthority::generate(&CaParams::new("bench-ca")).expect("CA");
        for i in 0..10 {
            let params =
                LeafParams::new(format!("leaf-{i}"), usages[i % 3]).with_sans(sans.clone());
            let leaf = ca.issue(&params).expect("leaf");
            std::hint::black_box(leaf);
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{{\"iterations\":{iterations},\"median_ms\":{:.3},\"p90_ms\":{:.3},\"min_ms\":{:.3}}}",
        pick(0.5),
        pick(0.9),
        times[0]
    );
}
