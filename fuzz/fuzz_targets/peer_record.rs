#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peerage_core::fuzz::peer_record(data, std::time::Instant::now());
});
