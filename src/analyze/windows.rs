//! Stage windows from `loadspec_stage_index`: each run of one index value in the (max over
//! shards) series is one stage's span on the wall clock. The resolution is the query step.

/// One stage of one scenario on the wall clock (unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub scenario: String,
    pub index: usize,
    pub start: f64,
    pub end: f64,
}

impl Window {
    /// The measured part: the settle period (at most half the stage) cut from its start, as
    /// the in-process observer does.
    pub fn measured(&self, settle: f64) -> (f64, f64) {
        let settle = settle.min((self.end - self.start) / 2.0).max(0.0);
        (self.start + settle, self.end)
    }
}

/// Split `points` ((t, stage index) at `step` seconds, absent while no stage runs) into
/// windows. A stage ends at its last point: before the next begins, or where the series stops
/// (the plan ended; later the shards may be gone, so nothing is evaluated past it). An index seen again later (a repeated plan) is ignored: the
/// analysis covers the first pass.
pub fn split(scenario: &str, points: &[(f64, f64)], step: f64) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let mut open: Option<Window> = None;
    let mut last_t = f64::NEG_INFINITY;
    for &(t, v) in points {
        if !v.is_finite() || v < 0.0 {
            continue;
        }
        let index = v.round() as usize;
        // A few missing samples inside a stage (a shard's scrape failed, or the shards did not
        // agree for a moment) do not end it; a long gap does.
        let short_gap = t - last_t <= 3.5 * step;
        match open.take() {
            Some(mut w) if w.index == index && short_gap => {
                w.end = t;
                open = Some(w);
            }
            Some(mut w) => {
                // The last sample of the stage, not the first of the next: a sample taken as the
                // stage changes already carries the next stage's VUs.
                w.end = last_t;
                out.push(w);
                open = Some(new_window(scenario, index, t));
            }
            None => open = Some(new_window(scenario, index, t)),
        }
        last_t = t;
    }
    out.extend(open);
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|w| seen.insert(w.index));
    out
}

fn new_window(scenario: &str, index: usize, t: f64) -> Window {
    Window {
        scenario: scenario.to_string(),
        index,
        start: t,
        end: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(spec: &[(f64, f64)]) -> Vec<(f64, f64)> {
        spec.to_vec()
    }

    #[test]
    fn each_index_run_is_a_window_ending_at_its_last_sample() {
        let p = pts(&[
            (10.0, 0.0),
            (11.0, 0.0),
            (12.0, 1.0),
            (13.0, 1.0),
            (14.0, 1.0),
            (15.0, 2.0),
        ]);
        let w = split("s", &p, 1.0);
        assert_eq!(w.len(), 3);
        assert_eq!((w[0].index, w[0].start, w[0].end), (0, 10.0, 11.0));
        assert_eq!((w[1].index, w[1].start, w[1].end), (1, 12.0, 14.0));
        // The last stage ends at its last sample.
        assert_eq!((w[2].index, w[2].start, w[2].end), (2, 15.0, 15.0));
    }

    #[test]
    fn a_gap_ends_the_stage_and_a_repeat_is_ignored() {
        // Two missing samples inside stage 0 do not split it.
        let w = split(
            "s",
            &pts(&[(0.0, 0.0), (1.0, 0.0), (4.0, 0.0), (5.0, 1.0)]),
            1.0,
        );
        assert_eq!((w[0].start, w[0].end), (0.0, 4.0));
        let p = pts(&[(0.0, 0.0), (1.0, 0.0), (5.0, 0.0), (6.0, 1.0)]);
        let w = split("s", &p, 1.0);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].start, w[0].end), (0.0, 1.0));
        assert_eq!((w[1].index, w[1].start), (1, 6.0));
    }

    #[test]
    fn settle_is_cut_from_the_start_but_never_more_than_half() {
        let w = Window {
            scenario: "s".into(),
            index: 0,
            start: 100.0,
            end: 110.0,
        };
        assert_eq!(w.measured(2.0), (102.0, 110.0));
        assert_eq!(w.measured(30.0), (105.0, 110.0));
    }
}
