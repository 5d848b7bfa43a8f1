//! Fuzz target `body_decoding`: see `moor::fuzzing::body_decoding` for what the input bytes mean.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moor::fuzzing::body_decoding(data));
