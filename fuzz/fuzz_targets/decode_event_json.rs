//! Every event type at every schema version the code knows (and one past
//! it), with the input as the payload: the upcasters and the current-version
//! decoders all see the same bytes. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shop_events::fuzzing::{decode, EVENT_TYPES};

fuzz_target!(|payload: &str| {
    for event_type in EVENT_TYPES {
        for version in 0..=3 {
            let _ = decode(event_type, version, payload);
        }
    }
});
