#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerage_node::fuzz::admin_request(data));
