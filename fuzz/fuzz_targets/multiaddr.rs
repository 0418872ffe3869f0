#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerage_core::fuzz::multiaddr(data));
