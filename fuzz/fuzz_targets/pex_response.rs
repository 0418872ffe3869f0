#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerage::fuzz::pex_response(data));
