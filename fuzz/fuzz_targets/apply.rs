//! Fuzz target `apply`: see `moor::fuzzing::apply` for what the input bytes mean.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moor::fuzzing::apply(data));
