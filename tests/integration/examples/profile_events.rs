//! One event stream, for profilers: `cargo run --release -p mode-integration --example
//! profile_events -- <libmode|rumqttc> <0|1> [events]`. Starts the in-process simulator,
//! sends the events (see `mode_integration::streams`), and prints the time until the simulator
//! has them all. Under `valgrind --tool=callgrind` the instruction count per event is the
//! figure that BENCHMARKS.md compares, because it does not depend on what else the machine is
//! doing.

use mode_core::proto::Qos;
use mode_integration::streams;
use mode_sim::{Sim, SimConfig};

#[tokio::main]
async fn main() {
    let usage = "usage: profile_events <libmode|rumqttc> <0|1> [events]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(which), Some(qos)) = (args.first(), args.get(1)) else {
        panic!("{usage}");
    };
    let qos = match qos.as_str() {
        "0" => Qos::AtMostOnce,
        "1" => Qos::AtLeastOnce,
        _ => panic!("{usage}"),
    };
    let events: usize = args.get(2).map_or(20_000, |n| n.parse().expect(usage));
    let sim = Sim::start(SimConfig::demo()).await.expect("simulator");
    let elapsed = match which.as_str() {
        "libmode" => streams::libmode(&sim, qos, events).await,
        "rumqttc" => streams::bare_rumqttc(&sim, qos, events).await,
        _ => panic!("{usage}"),
    };
    println!("{which}: {elapsed:?}");
    sim.shutdown().await;
}
