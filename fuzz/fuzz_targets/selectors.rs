//! Fuzz target `selectors`: see `moor::fuzzing::selectors` for what the input bytes mean.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moor::fuzzing::selectors(data));
