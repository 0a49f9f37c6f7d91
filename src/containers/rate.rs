//! CPU rate from two of our own samples: cores = Δcpu seconds / Δwall seconds. One-shot Docker
//! stats do not carry a usable `precpu`, and /proc has no rate at all, so every source keeps its
//! previous reading here.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: f64,
    cpu_seconds: f64,
    rate: f64,
}

/// The previous reading of each tracked key.
#[derive(Debug, Default)]
pub struct CpuRates {
    prev: HashMap<String, Reading>,
}

impl CpuRates {
    /// Record `cpu_seconds` read at `at` (seconds on a clock that only moves forward) and return
    /// the cores used since the previous reading; 0 on the first reading. A repeated reading
    /// (same `at`, e.g. stats the engine had cached) keeps the previous rate. A counter that went
    /// backwards (the container restarted) counts from zero.
    pub fn update(&mut self, key: &str, at: f64, cpu_seconds: f64) -> f64 {
        let rate = match self.prev.get(key) {
            Some(p) if at <= p.at => return p.rate,
            Some(p) => {
                let used = if cpu_seconds >= p.cpu_seconds {
                    cpu_seconds - p.cpu_seconds
                } else {
                    cpu_seconds
                };
                used / (at - p.at)
            }
            None => 0.0,
        };
        self.prev.insert(
            key.to_string(),
            Reading {
                at,
                cpu_seconds,
                rate,
            },
        );
        rate
    }

    /// Forget keys that are no longer tracked, so memory stays bounded.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.prev.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_delta_cpu_over_delta_wall() {
        let mut r = CpuRates::default();
        assert_eq!(r.update("a", 10.0, 5.0), 0.0);
        assert!((r.update("a", 12.0, 6.0) - 0.5).abs() < 1e-12);
        // Same timestamp again: cached stats, keep the rate.
        assert!((r.update("a", 12.0, 6.0) - 0.5).abs() < 1e-12);
        // Restart: counter went back to 1.5 s over 1 s.
        assert!((r.update("a", 13.0, 1.5) - 1.5).abs() < 1e-12);
        r.retain(|k| k != "a");
        assert_eq!(r.update("a", 14.0, 2.0), 0.0);
    }
}
