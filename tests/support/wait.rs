//! Bounded waiting for integration tests: poll until a condition holds and fail with the
//! last state seen — never a bare sleep standing in for an assertion.

/// Poll `$check` (a `Result`) every 20 ms until it is `Ok`, whose value the macro yields;
/// after 20 s (or `within` the given duration) fail, naming `$what` and showing the last
/// `Err`.
#[allow(unused_macros)]
macro_rules! eventually_ok {
    ($what:expr, $check:expr) => {
        eventually_ok!($what, within std::time::Duration::from_secs(20), $check)
    };
    ($what:expr, within $patience:expr, $check:expr) => {{
        let deadline = std::time::Instant::now() + $patience;
        loop {
            match $check {
                Ok(value) => break value,
                Err(last) if std::time::Instant::now() > deadline => {
                    panic!("timed out waiting for {}; last seen: {:?}", $what, last)
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }};
}

/// [`eventually_ok!`] for an `Option`.
#[allow(unused_macros)]
macro_rules! eventually_some {
    ($what:expr, $check:expr) => {
        eventually_ok!($what, $check.ok_or(()))
    };
}
