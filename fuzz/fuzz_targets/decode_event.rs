//! Arbitrary bytes as a stored event (type picked by the first byte, schema
//! version by the second, the rest the payload) into the shop's codec,
//! upcasters included: it must answer `Ok` or `Err`, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shop_events::fuzzing::decode_bytes(data);
});
