//! Straight-line fits `y = base + slope × x` by ordinary least squares, with R² and the
//! residual of every point, so a report can show how well a resource model explains the
//! measurements. Non-finite points are dropped, never propagated.

use serde::{Deserialize, Serialize};

/// How a line was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitMethod {
    /// Least squares with an intercept (two or more distinct x).
    LeastSquares,
    /// Least squares through the origin (`base` = 0): used when there is only one distinct x,
    /// or where 0 → 0 is physics (TPS at 0 VUs).
    ThroughOrigin,
}

impl std::fmt::Display for FitMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FitMethod::LeastSquares => "least squares",
            FitMethod::ThroughOrigin => "least squares through 0",
        })
    }
}

/// Fewest points for which R² is reported.
pub const MIN_R2_POINTS: usize = 3;

/// One measured point and how far the line misses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitPoint {
    pub x: f64,
    pub y: f64,
    /// y − fitted y.
    pub residual: f64,
}

/// A fitted line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearFit {
    pub base: f64,
    pub slope: f64,
    /// Coefficient of determination, 1 − SS_res / SS_tot. 1 when y does not vary and the line
    /// hits every point; can be negative for a through-origin line that fits worse than the
    /// mean. `None` (shown as "–") with fewer than [`MIN_R2_POINTS`] points: a line through one
    /// or two points always "explains" them, so an R² there says nothing.
    pub r2: Option<f64>,
    pub method: FitMethod,
    pub points: Vec<FitPoint>,
}

impl LinearFit {
    pub fn predict(&self, x: f64) -> f64 {
        self.base + self.slope * x
    }

    /// Root-mean-square residual, in y's unit.
    pub fn rmse(&self) -> f64 {
        if self.points.is_empty() {
            return 0.0;
        }
        let ss: f64 = self.points.iter().map(|p| p.residual * p.residual).sum();
        (ss / self.points.len() as f64).sqrt()
    }
}

fn finite_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

fn finish(pts: &[(f64, f64)], base: f64, slope: f64, method: FitMethod) -> LinearFit {
    let n = pts.len() as f64;
    let mean_y = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let points: Vec<FitPoint> = pts
        .iter()
        .map(|&(x, y)| FitPoint {
            x,
            y,
            residual: y - (base + slope * x),
        })
        .collect();
    let ss_res: f64 = points.iter().map(|p| p.residual * p.residual).sum();
    let ss_tot: f64 = pts.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res <= 1e-12 * (1.0 + mean_y * mean_y) {
        1.0
    } else {
        0.0
    };
    LinearFit {
        base,
        slope,
        r2: (points.len() >= MIN_R2_POINTS).then_some(r2),
        method,
        points,
    }
}

/// Least squares with an intercept. Falls back to [`fit_through_origin`] when fewer than two
/// distinct x remain; `None` when no finite point remains.
pub fn fit_linear(points: &[(f64, f64)]) -> Option<LinearFit> {
    let pts = finite_points(points);
    if pts.is_empty() {
        return None;
    }
    let n = pts.len() as f64;
    let mean_x = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if sxx <= 1e-12 * (1.0 + mean_x * mean_x) {
        return fit_through_origin(&pts);
    }
    let slope = sxy / sxx;
    let base = mean_y - slope * mean_x;
    Some(finish(&pts, base, slope, FitMethod::LeastSquares))
}

/// Least squares through the origin: slope = Σxy / Σx². `None` when no finite point with
/// x ≠ 0 remains.
pub fn fit_through_origin(points: &[(f64, f64)]) -> Option<LinearFit> {
    let pts = finite_points(points);
    let sxx: f64 = pts.iter().map(|p| p.0 * p.0).sum();
    if pts.is_empty() || sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| p.0 * p.1).sum();
    Some(finish(&pts, 0.0, sxy / sxx, FitMethod::ThroughOrigin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_line_is_recovered() {
        let f = fit_linear(&[(1.0, 3.0), (2.0, 5.0), (3.0, 7.0)]).unwrap();
        assert!((f.base - 1.0).abs() < 1e-9 && (f.slope - 2.0).abs() < 1e-9);
        assert!((f.r2.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(f.method, FitMethod::LeastSquares);
        assert!(f.points.iter().all(|p| p.residual.abs() < 1e-9));
    }

    #[test]
    fn residuals_and_r2_of_a_noisy_line() {
        let f = fit_linear(&[(0.0, 0.0), (1.0, 2.0), (2.0, 2.0)]).unwrap();
        // By hand: Sxy = 2, Sxx = 2 → slope 1, base 4/3 − 1 = 1/3; residuals −1/3, 2/3, −1/3.
        assert!((f.slope - 1.0).abs() < 1e-9);
        assert!((f.base - 1.0 / 3.0).abs() < 1e-9);
        let res: Vec<f64> = f.points.iter().map(|p| p.residual).collect();
        for (r, want) in res.iter().zip([-1.0 / 3.0, 2.0 / 3.0, -1.0 / 3.0]) {
            assert!((r - want).abs() < 1e-9, "{res:?}");
        }
        // SS_tot = 8/3, SS_res = 2/3 → R² = 0.75
        assert!((f.r2.unwrap() - 0.75).abs() < 1e-9);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(fit_linear(&[]).is_none());
        assert!(fit_linear(&[(f64::NAN, 1.0)]).is_none());
        let one = fit_linear(&[(2.0, 1.0)]).unwrap();
        assert_eq!(one.method, FitMethod::ThroughOrigin);
        assert!((one.slope - 0.5).abs() < 1e-12);
        assert!(fit_linear(&[(0.0, 1.0), (0.0, 2.0)]).is_none());
        let same = fit_linear(&[(1.0, 2.0), (2.0, 2.0), (f64::INFINITY, 3.0)]).unwrap();
        assert_eq!(same.points.len(), 2);
        assert!(same.slope.abs() < 1e-12);
        // Two points: any line through them fits, so no R² is claimed.
        assert_eq!(same.r2, None);
        assert_eq!(one.r2, None);
    }
}
