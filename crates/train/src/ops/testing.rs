//! Helpers for the ops' tests: deterministic inputs and a central finite-difference check.

/// Values in [-1, 1) from a fixed sequence (no RNG crate needed, the same on every machine).
pub fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = crate::rng::SplitMix64::new(seed);
    (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

/// Compares an analytic gradient with central differences of `loss` (evaluated in f64 over
/// f32 inputs), element by element, relative to the gradient's scale. Richardson
/// extrapolation over two step sizes cancels the h^2 term, so curvature does not pass for error.
pub fn check_gradient(what: &str, at: &[f32], grad: &[f32], loss: impl Fn(&[f32]) -> f64) {
    assert_eq!(at.len(), grad.len(), "{what}: gradient length");
    let h = 1e-2f32;
    let scale = grad.iter().fold(1e-3f32, |m, g| m.max(g.abs()));
    let mut probe = at.to_vec();
    for i in 0..at.len() {
        let mut central = |h: f32| {
            probe[i] = at[i] + h;
            let up = loss(&probe);
            probe[i] = at[i] - h;
            let down = loss(&probe);
            probe[i] = at[i];
            (up - down) / (2.0 * h as f64)
        };
        let (coarse, fine) = (central(h), central(h / 2.0));
        let numeric = ((4.0 * fine - coarse) / 3.0) as f32;
        let err = (numeric - grad[i]).abs() / scale;
        assert!(err < 2e-2, "{what}[{i}]: analytic {} vs numeric {numeric} (relative error {err})", grad[i]);
    }
}
