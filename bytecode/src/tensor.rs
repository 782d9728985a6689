//! Row-major tensors and the layout operations the VM performs on shares and public values
//! alike. Moving, copying and padding elements is local in every linear secret-sharing
//! scheme, so these functions are generic over the element.

/// A row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    pub dims: Vec<usize>,
    pub data: Vec<T>,
}

impl<T: Clone> Tensor<T> {
    pub fn new(dims: Vec<usize>, data: Vec<T>) -> Self {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        Tensor { dims, data }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Row-major strides of `dims`.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Numpy broadcast of two shapes, or `None` if they are incompatible.
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// The elements of `t` expanded to `dims` by numpy broadcasting (caller checked shapes).
pub fn broadcast_to<T: Clone>(t: &Tensor<T>, dims: &[usize]) -> Vec<T> {
    if t.dims == dims {
        return t.data.clone();
    }
    let n = dims.len();
    let offset = n - t.dims.len();
    let src_strides = strides(&t.dims);
    let mut eff = vec![0; n];
    for i in 0..t.dims.len() {
        eff[i + offset] = if t.dims[i] == 1 { 0 } else { src_strides[i] };
    }
    let total: usize = dims.iter().product();
    // The trailing axes form one run per outer position: either all repeat one element
    // (a per-channel parameter over H·W) or all read on contiguously (the source's own
    // trailing axes), so the run is a fill or a slice copy.
    let mut tail = n;
    let repeat = n > 0 && eff[n - 1] == 0;
    let mut run = 1usize;
    while tail > 0 {
        let d = tail - 1;
        let fits = if repeat { eff[d] == 0 } else { eff[d] == run };
        if !fits {
            break;
        }
        run *= dims[d];
        tail = d;
    }
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let mut idx = vec![0usize; tail];
    for _ in 0..total / run.max(1) {
        let src: usize = idx.iter().zip(&eff).map(|(i, s)| i * s).sum();
        if repeat {
            out.extend(std::iter::repeat_n(t.data[src].clone(), run));
        } else {
            out.extend_from_slice(&t.data[src..src + run]);
        }
        for d in (0..tail).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// Permute the axes of `t`: output axis `i` is input axis `perm[i]`.
pub fn transpose<T: Clone>(t: &Tensor<T>, perm: &[usize]) -> Tensor<T> {
    let in_strides = strides(&t.dims);
    let dims: Vec<usize> = perm.iter().map(|&p| t.dims[p]).collect();
    let eff: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let total = t.data.len();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..total {
        let src: usize = idx.iter().zip(&eff).map(|(i, s)| i * s).sum();
        out.push(t.data[src].clone());
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Tensor { dims, data: out }
}

/// Pad with `fill`: `pads` holds the begin pads of every axis, then the end pads (ONNX order).
pub fn pad<T: Clone>(t: &Tensor<T>, pads: &[usize], fill: T) -> Tensor<T> {
    let n = t.dims.len();
    let dims: Vec<usize> = (0..n).map(|i| t.dims[i] + pads[i] + pads[i + n]).collect();
    let total: usize = dims.iter().product();
    let mut out = vec![fill; total];
    let out_strides = strides(&dims);
    let mut idx = vec![0usize; n];
    for v in &t.data {
        let dst: usize = (0..n).map(|d| (idx[d] + pads[d]) * out_strides[d]).sum();
        out[dst] = v.clone();
        for d in (0..n).rev() {
            idx[d] += 1;
            if idx[d] < t.dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Tensor { dims, data: out }
}

/// Concatenate tensors along `axis` (caller checked that other axes agree).
/// `t` repeated `times` along its first axis.
pub fn repeat_rows<T: Clone>(t: &Tensor<T>, times: usize) -> Tensor<T> {
    let mut dims = t.dims.clone();
    if let Some(d) = dims.first_mut() {
        *d *= times;
    }
    let data = (0..times).flat_map(|_| t.data.iter().cloned()).collect();
    Tensor::new(dims, data)
}

pub fn concat<T: Clone>(parts: &[&Tensor<T>], axis: usize) -> Tensor<T> {
    let mut dims = parts[0].dims.clone();
    dims[axis] = parts.iter().map(|p| p.dims[axis]).sum();
    let outer: usize = dims[..axis].iter().product();
    let mut data = Vec::with_capacity(dims.iter().product());
    for o in 0..outer {
        for p in parts {
            let chunk: usize = p.dims[axis..].iter().product();
            data.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
        }
    }
    Tensor { dims, data }
}

/// Element `i` of the result along each axis is element `starts + i·steps` of `x`, for a
/// result of shape `dims` (checked by `shapes::slice`).
pub fn slice<T: Clone>(
    x: &Tensor<T>,
    starts: &[usize],
    steps: &[usize],
    dims: &[usize],
) -> Tensor<T> {
    let r = dims.len();
    let mut xs = vec![1usize; r];
    for a in (0..r.saturating_sub(1)).rev() {
        xs[a] = xs[a + 1] * x.dims[a + 1];
    }
    let n: usize = dims.iter().product();
    let data = (0..n)
        .map(|mut o| {
            let mut at = 0;
            for a in (0..r).rev() {
                at += (starts[a] + (o % dims[a]) * steps[a]) * xs[a];
                o /= dims[a];
            }
            x.data[at].clone()
        })
        .collect();
    Tensor {
        dims: dims.to_vec(),
        data,
    }
}

/// Geometry of a 2-D sliding window over `[N, C, H, W]` (1-D ops use `H = 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
}

impl Window {
    /// Output spatial size for an input of `h x w` (floor mode; ceil mode is expressed by
    /// the compiler as extra end padding).
    pub fn out_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let ext = |i: usize| (self.kernel[i] - 1) * self.dilations[i] + 1;
        let ph = h + self.pads[0] + self.pads[2];
        let pw = w + self.pads[1] + self.pads[3];
        if ph < ext(0) || pw < ext(1) || self.strides[0] == 0 || self.strides[1] == 0 {
            return None;
        }
        Some((
            (ph - ext(0)) / self.strides[0] + 1,
            (pw - ext(1)) / self.strides[1] + 1,
        ))
    }

    /// For every output position and kernel offset, the input index it reads (`None` = padding).
    /// Layout: `[oh*ow][kh*kw]`, indices into one `h x w` plane.
    pub fn gather_plan(&self, h: usize, w: usize) -> Option<(usize, usize, Vec<Option<usize>>)> {
        let (oh, ow) = self.out_hw(h, w)?;
        let kk = self.kernel[0] * self.kernel[1];
        let mut plan = Vec::with_capacity(oh * ow * kk);
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..self.kernel[0] {
                    for kx in 0..self.kernel[1] {
                        let y = (oy * self.strides[0] + ky * self.dilations[0]) as isize
                            - self.pads[0] as isize;
                        let x = (ox * self.strides[1] + kx * self.dilations[1]) as isize
                            - self.pads[1] as isize;
                        plan.push(
                            if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                                Some(y as usize * w + x as usize)
                            } else {
                                None
                            },
                        );
                    }
                }
            }
        }
        Some((oh, ow, plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The run-wise broadcast equals numpy's definition element by element: every
        /// output index reads the source at that index with broadcast axes at 0.
        #[test]
        fn broadcast_reads_every_element_by_numpy_rules(
            out in proptest::collection::vec(0usize..4, 0..5),
            keep in proptest::collection::vec(any::<bool>(), 5),
            drop_lead in 0usize..3,
        ) {
            let lead = drop_lead.min(out.len());
            let src_dims: Vec<usize> = out[lead..]
                .iter()
                .zip(&keep)
                .map(|(&d, &k)| if k { d } else { 1 })
                .collect();
            let len: usize = src_dims.iter().product();
            let t = Tensor::new(src_dims.clone(), (0..len as i64).collect());
            let got = broadcast_to(&t, &out);
            let total: usize = out.iter().product();
            prop_assert_eq!(got.len(), total);
            let ss = strides(&src_dims);
            let os = strides(&out);
            for (flat, &v) in got.iter().enumerate() {
                let mut src = 0;
                for (i, (&dd, &st)) in src_dims.iter().zip(&ss).enumerate() {
                    let axis = lead + i;
                    let at = flat / os[axis] % out[axis];
                    src += if dd == 1 { 0 } else { at * st };
                }
                prop_assert_eq!(v, src as i64);
            }
        }
    }

    #[test]
    fn broadcast_and_transpose() {
        assert_eq!(broadcast_dims(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
        assert_eq!(broadcast_dims(&[2, 3], &[4]), None);
        let t = Tensor::new(vec![2, 1], vec![1, 2]);
        assert_eq!(broadcast_to(&t, &[2, 3]), vec![1, 1, 1, 2, 2, 2]);
        let m = Tensor::new(vec![2, 3], vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(transpose(&m, &[1, 0]).data, vec![1, 4, 2, 5, 3, 6]);
    }

    #[test]
    fn pad_and_concat() {
        let t = Tensor::new(vec![1, 2], vec![1, 2]);
        let p = pad(&t, &[0, 1, 1, 0], 0);
        assert_eq!(p.dims, vec![2, 3]);
        assert_eq!(p.data, vec![0, 1, 2, 0, 0, 0]);
        let c = concat(&[&t, &t], 1);
        assert_eq!(c.data, vec![1, 2, 1, 2]);
    }

    #[test]
    fn window_geometry() {
        let w = Window {
            kernel: [2, 2],
            strides: [2, 2],
            pads: [0; 4],
            dilations: [1, 1],
        };
        assert_eq!(w.out_hw(4, 4), Some((2, 2)));
        let (_, _, plan) = w.gather_plan(4, 4).unwrap();
        assert_eq!(&plan[..4], &[Some(0), Some(1), Some(4), Some(5)]);
    }
}
