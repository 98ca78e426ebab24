//! Mean and 95 % confidence interval over repeats (Student's t).
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    /// Half-width of the 95 % confidence interval; absent with fewer than 2 samples.
    pub ci95: Option<f64>,
    pub n: usize,
    pub min: f64,
    pub max: f64,
}

/// Two-sided 97.5 % quantile of Student's t with `df` degrees of freedom.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => T[df - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

pub fn estimate(samples: &[f64]) -> Option<Estimate> {
    let xs: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let ci95 = (n >= 2).then(|| {
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        t975(n - 1) * (var / n as f64).sqrt()
    });
    Some(Estimate {
        mean,
        ci95,
        n,
        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_ci_match_hand_computation() {
        // mean 2, sample sd 1, n 3: ci = 4.303 * 1/sqrt(3) = 2.4843
        let e = estimate(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(e.mean, 2.0);
        assert!((e.ci95.unwrap() - 2.48434).abs() < 1e-4, "{e:?}");
        assert_eq!((e.min, e.max, e.n), (1.0, 3.0, 3));
        let one = estimate(&[5.0]).unwrap();
        assert_eq!(one.ci95, None);
        assert!(estimate(&[]).is_none());
        assert!(estimate(&[f64::NAN]).is_none());
    }
}
