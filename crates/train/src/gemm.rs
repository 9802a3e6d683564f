//! Dense f32 matrix products over row-major slices, the only place the trainer calls the
//! `gemm` crate (whose entry point is `unsafe` because it takes raw strided pointers).
//! Every size is checked against the slices before the call, so the wrapper is safe.
#![allow(unsafe_code)]

/// How an operand is stored: `N` as written (`[rows, cols]` row-major), `T` transposed
/// (the slice holds `[cols, rows]` row-major and is read as its transpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    N,
    T,
}

/// Products below this many multiply-adds run on the calling thread: splitting them costs
/// more than it saves, and the attention kernel already runs one head per thread.
const PARALLEL_FROM: usize = 1 << 18;

/// `c[m, n] = beta_c * c + op(a)[m, k] * op(b)[k, n] * scale`, with `beta_c` 0 (overwrite)
/// or 1 (accumulate).
pub fn matmul(
    c: &mut [f32],
    accumulate: bool,
    a: &[f32],
    a_op: Op,
    b: &[f32],
    b_op: Op,
    (m, n, k): (usize, usize, usize),
    scale: f32,
) {
    assert!(c.len() >= m * n, "matmul: c holds {} values, needs {m}x{n}", c.len());
    assert!(a.len() >= m * k, "matmul: a holds {} values, needs {m}x{k}", a.len());
    assert!(b.len() >= k * n, "matmul: b holds {} values, needs {k}x{n}", b.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // Element (i, p) of op(a) and (p, j) of op(b) as (row stride, column stride).
    let (a_rs, a_cs) = match a_op {
        Op::N => (k as isize, 1),
        Op::T => (1, m as isize),
    };
    let (b_rs, b_cs) = match b_op {
        Op::N => (n as isize, 1),
        Op::T => (1, k as isize),
    };
    let parallelism = if m * n * k >= PARALLEL_FROM && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above guarantee every (i, p), (p, j), (i, j) addressed through
    // these strides lies inside its slice; `c` is borrowed mutably and does not alias.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], a_op: Op, b: &[f32], b_op: Op, m: usize, n: usize, k: usize) -> Vec<f32> {
        let at = |i: usize, p: usize| if a_op == Op::N { a[i * k + p] } else { a[p * m + i] };
        let bt = |p: usize, j: usize| if b_op == Op::N { b[p * n + j] } else { b[j * k + p] };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn every_layout_matches_the_naive_product() {
        let (m, n, k) = (7, 5, 9);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        for a_op in [Op::N, Op::T] {
            for b_op in [Op::N, Op::T] {
                let want = naive(&a, a_op, &b, b_op, m, n, k);
                let mut c = vec![1.0; m * n];
                matmul(&mut c, true, &a, a_op, &b, b_op, (m, n, k), 2.0);
                for (got, w) in c.iter().zip(&want) {
                    assert!((got - (1.0 + 2.0 * w)).abs() < 1e-4, "{a_op:?}{b_op:?}: {got} vs {w}");
                }
                matmul(&mut c, false, &a, a_op, &b, b_op, (m, n, k), 1.0);
                for (got, w) in c.iter().zip(&want) {
                    assert!((got - w).abs() < 1e-4, "{a_op:?}{b_op:?} overwrite: {got} vs {w}");
                }
            }
        }
    }

    #[test]
    fn large_products_split_across_threads_agree() {
        let (m, n, k) = (96, 80, 64);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
        let want = naive(&a, Op::N, &b, Op::T, m, n, k);
        let mut c = vec![0.0; m * n];
        matmul(&mut c, false, &a, Op::N, &b, Op::T, (m, n, k), 1.0);
        let worst = c.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-3, "worst difference {worst}");
    }
}
