//! Fuzz target `strategic_merge`: see `moor::fuzzing::strategic_merge` for what the input bytes mean.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moor::fuzzing::strategic_merge(data));
