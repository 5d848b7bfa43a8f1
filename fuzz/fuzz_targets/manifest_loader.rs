//! Fuzz target `manifest_loader`: see `moor::fuzzing::manifest_loader` for what the input bytes mean.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moor::fuzzing::manifest_loader(data));
