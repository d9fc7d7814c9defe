//! The engine alone, no_std, linked as a shared object to measure what a firmware would carry:
//! one C entry point that drives an engine through connect, subscribe, a send and its ack,
//! an incoming sync message and a command, so the linker keeps what a device uses.
#![no_std]
extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use mode_core::engine::{Engine, EngineConfig, Transmit};
use mode_core::proto::{Map, Qos};
use mode_core::time::Instant;

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
    fn abort() -> !;
}

struct Malloc;
unsafe impl GlobalAlloc for Malloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { malloc(layout.size().max(layout.align())) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _: Layout) {
        unsafe { free(ptr) }
    }
}

#[global_allocator]
static A: Malloc = Malloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    unsafe { abort() }
}

#[unsafe(no_mangle)]
pub extern "C" fn engine_cycle(
    device: u64,
    seed: u64,
    topic: *const u8,
    len: usize,
    payload: *const u8,
    plen: usize,
) -> u64 {
    let topic = unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(topic, len)) };
    let payload = unsafe { core::slice::from_raw_parts(payload, plen) };
    let mut now = Instant::from_millis(0);
    let mut engine = Engine::new(EngineConfig::new(device, seed), now);
    let _ = engine.send_event("boot", Map::new(), Qos::AtLeastOnce);
    let _ = engine.kv_set("k", mode_core::proto::Value::Bool(true));
    let _ = engine.bulk_request("ml", mode_core::proto::Value::Object(Map::new()), None, now);
    let mut n = 0;
    for _ in 0..8 {
        while let Some(t) = engine.poll_transmit() {
            n += 1;
            match t {
                Transmit::Connect => engine.connected(now),
                Transmit::Subscribe(_) => engine.subscribed(now),
                Transmit::Publish(p) => engine.delivered(p.id, now),
                _ => {}
            }
        }
        engine.handle_publish(topic, payload, now);
        while engine.poll_event().is_some() {
            n += 1;
        }
        if let Some(t) = engine.poll_timeout() {
            now = t;
            engine.handle_timeout(now);
        }
    }
    n
}
